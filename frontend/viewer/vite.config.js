// Built by frontend/viewer/build.sh into src/cloudfilm/web/static/build/viewer/ and served by
// src/cloudfilm/web/viewer.py under /static/build/viewer/ (index.html for /view/...).
//
// Chunks, in the order a patient's browser needs them (issue 14): index-*.js (main.ts: the
// frame and the server-rendered preview), quickstart-*.js and the chunk it shares with the
// app (the first viewer: previews, windowing, OpenJPH's glue) with openjphjs-*.wasm, then
// app-*.js (Cornerstone). Only app.ts may import Cornerstone; tests/test_browser_viewer.py
// checks that the first two carry none of it.
//
// package.json notes (JSON has no comments):
// - `@cornerstonejs/codec-openjph` is Cornerstone's own HTJ2K codec (the same locked version
//   the image loader uses), named directly because the first viewer (pixels.ts) decodes
//   previews with it before Cornerstone has loaded.
// - `events` (the browser EventEmitter) is bundled because vtk.js pulls in xmlbuilder2,
//   which extends Node's EventEmitter at load time; without it the app fails to start.
// - `overrides.rollup` pins a rollup release whose platform binaries were all on the
//   registry when this was locked (newer ones were incomplete), so package-lock.json lists
//   every platform's binary and `npm ci` accepts the lock file on any machine.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/static/build/viewer/',
  // The loader's worker and codec WASM must stay separate files (not pre-bundled).
  optimizeDeps: { exclude: ['@cornerstonejs/dicom-image-loader'], include: ['dicom-parser'] },
  worker: { format: 'es' },
  build: {
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 6000,
    assetsInlineLimit: 0,
  },
  server: {
    // `npm run dev` against a local `cloudfilm serve` (the session cookie is same-origin there).
    proxy: Object.fromEntries(['/dicomweb', '/api', '/login', '/logout'].map((p) => [
      p, { target: process.env.CLOUDFILM_URL ?? 'http://127.0.0.1:8080', changeOrigin: false },
    ])),
  },
});
