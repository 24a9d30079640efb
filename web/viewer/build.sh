#!/usr/bin/env bash
# Build the Cornerstone3D viewer into OUTDIR from package-lock.json (npm registry only).
# Called by web/build.sh as: web/viewer/build.sh OUTDIR
set -euo pipefail
out="$(realpath -m "${1:?usage: build.sh OUTDIR}")"
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
npx --no-install vite build --outDir "$out" --emptyOutDir --logLevel error
# Pre-compressed copies for clients that accept gzip (viewer.py serves them as is).
find "$out" -type f \( -name '*.js' -o -name '*.css' -o -name '*.wasm' -o -name '*.html' \
  -o -name '*.json' -o -name '*.svg' \) -size +1k -exec gzip -9 -k -f -n {} +
echo "viewer built in $out ($(du -sh "$out" | cut -f1))"
