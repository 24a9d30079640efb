#!/usr/bin/env bash
# Build the front-end assets into src/cloudfilm/web/static/build/ from the npm lock files.
# Each part has its own build script; a part that is not there yet is skipped.
set -euo pipefail
cd "$(dirname "$0")"
out=../src/cloudfilm/web/static/build
mkdir -p "$out"
for part in viewer ohif; do
  if [ -x "$part/build.sh" ]; then
    echo "building frontend/$part"
    "$part/build.sh" "$out/$part"
  fi
done
