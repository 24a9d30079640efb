#!/usr/bin/env bash
# Copy the prebuilt OHIF Viewer v3 (npm package @ohif/app, exact version in package-lock.json)
# into OUTDIR, which cloudfilm serves at the site root (src/cloudfilm/web/ohif.py).
#
#   frontend/ohif/build.sh OUTDIR      (called by frontend/build.sh, which `make web` runs)
#
# - npm ci from the lock file. Only dist/ is used and it bundles everything, so the
#   package's runtime dependencies are replaced by an empty local package (package.json
#   "overrides"; --install-links copies it instead of linking). Nothing runs at install.
# - ort/ (136 MB of AI models) and dicom-microscopy-viewer/ (20 MB) are left out: both load
#   only on demand, for tools and modes cloudfilm does not offer.
# - cloudfilm's app-config.js replaces the shipped one.
# - Big text and WASM files get a gzipped copy beside them (X.gz), served when accepted.
# - index.html: the service-worker loader (it pulls workbox from a third-party CDN and
#   registers a sw.js that the package does not ship) and the PWA manifest link (browsers
#   fetch manifests without cookies, so behind the login it could only fail) are removed.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$1"
out="$(cd "$1" && pwd)"
cd "$here"
npm ci --ignore-scripts --install-links --no-audit --no-fund --loglevel=error
dist="$here/node_modules/@ohif/app/dist"
test -f "$dist/index.html" || { echo "no $dist/index.html: @ohif/app without dist/?" >&2; exit 1; }

# A fresh copy each time, so files of an older version never linger.
staging="$out.tmp.$$"
rm -rf "$staging"
mkdir -p "$staging"
trap 'rm -rf "$staging"' EXIT
tar -C "$dist" --exclude=./ort --exclude=./dicom-microscopy-viewer -cf - . | tar -C "$staging" -xf -
cp "$here/app-config.js" "$staging/app-config.js"
# Not part of this deployment: the service-worker loader, other hosts' configs (Netlify,
# `serve`) and a sample app config for Google Cloud.
rm -f "$staging/init-service-worker.js" "$staging/sw.js" "$staging/_headers" \
      "$staging/_redirects" "$staging/serve.json" "$staging/google.js"
node - "$staging/index.html" <<'JS'
const fs = require('fs');
const file = process.argv[2];
let html = fs.readFileSync(file, 'utf8');
const before = html;
html = html.replace(/<script[^>]*src="\/init-service-worker\.js"[^>]*><\/script>/, '');
html = html.replace(/<link rel="manifest"[^>]*>/, '');
if (html === before || html.includes('init-service-worker') || html.includes('rel="manifest"')) {
  console.error('index.html: expected service-worker and manifest tags not found; check the OHIF version');
  process.exit(1);
}
fs.writeFileSync(file, html);
JS
grep -q 'src="/app-config.js"' "$staging/index.html" || { echo "index.html does not load /app-config.js" >&2; exit 1; }
# Pre-compressed copies (X.gz beside X) for clients that accept gzip: the main bundle alone
# is 17 MB, about 4 MB gzipped. app-config.js stays as it is (it is edited in place).
find "$staging" -type f \( -name '*.js' -o -name '*.css' -o -name '*.wasm' -o -name '*.json' \
     -o -name '*.svg' -o -name '*.map' \) ! -name app-config.js -size +1k -print0 \
  | xargs -0 -r -P 2 -n 8 gzip -6 -k -n
rm -rf "$out"
mv "$staging" "$out"
trap - EXIT
echo "OHIF $(node -p "require('$here/node_modules/@ohif/app/package.json').version") in $out ($(du -sh "$out" | cut -f1))"
