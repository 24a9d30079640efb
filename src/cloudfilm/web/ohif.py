"""The prebuilt OHIF Viewer v3 for clinicians, served from ``static/build/ohif/``.

Why at root paths: OHIF's prebuilt bundles load their chunks, workers, WASM codecs and
``/app-config.js`` from the site root (``window.PUBLIC_URL`` and the bundler's public path
are both ``/``, compiled in). So its files are served where it asks for them, at root
paths that none of ours use (``/app.bundle.<hash>.js``, ``/<n>.bundle.<hash>.js``,
``/<hash>.wasm``, ``/assets/...``, ``/app-config.js`` ...), while its pages live under
:data:`BASENAME` (the React router's basename): the study list at ``/ohif/`` and the
viewer at ``/ohif/viewer?StudyInstanceUIDs=...``. Every such page answers OHIF's
``index.html`` (the single-page-app fallback).

The OHIF route matches only a path naming a file of the build (or a page under /ohif), so
it never shadows another route, and it is mounted last. The login middleware guards it
like everything else: anonymous page requests go to /login, asset requests get a 401.
The same-origin HttpOnly session cookie then authenticates OHIF's DICOMweb calls to
``/dicomweb`` (see frontend/ohif/app-config.js); no token is ever put in a URL. Its pages
carry a Content-Security-Policy made for the build (:func:`page_csp`).

``frontend/ohif/build.sh`` (``make web``) fills the build directory and gzips the big text and
WASM files beside themselves (``X.gz``), which are sent to clients that accept gzip.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import anyio
from starlette.datastructures import URL, Headers
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

__all__ = ["BASENAME", "BUILD_DIR", "ohif_url", "page_csp", "routes"]

BUILD_DIR = Path(__file__).resolve().parent / "static" / "build" / "ohif"
BASENAME = "/ohif"                     # routerBasename in frontend/ohif/app-config.js
# Current study left, prior right. Opened from a URL, OHIF 3.13 starts this protocol at its
# first stage, a 2x2 grid (each study's second series below; empty for one-series studies):
# its stages have no ids, so the URL's stageId cannot pick the 2x1 one.
COMPARE_PROTOCOL = "@ohif/hpCompare"

# Root names OHIF must never answer for, even if a future OHIF build ships such a file:
# cloudfilm's own paths (those routes come first anyway; this keeps it explicit).
RESERVED = frozenset({
    "", "api", "dicomweb", "wado", "login", "logout", "s", "shared", "oidc", "healthz",
    "view", "viewer", "static", "timeline", "folder", "studies", "share", "shares",
    "caregivers", "upload", "uploads", "patients", "IHEInvokeImageDisplay", "ohif",
    "index.html",
})
# Content-hashed file names never change content: cache them for good.
_HASHED = re.compile(r"(^|\.)[0-9a-f]{16}\.(js|wasm|css)$|\.woff2?$")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin"}
_MEDIA_TYPES = {".wasm": "application/wasm", ".js": "text/javascript; charset=utf-8",
                ".mjs": "text/javascript; charset=utf-8", ".json": "application/json",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml",
                ".html": "text/html; charset=utf-8", ".woff2": "font/woff2",
                ".woff": "font/woff", ".ico": "image/x-icon", ".png": "image/png",
                ".xml": "application/xml"}


def ohif_url(study_uid: str, prior_uid: str | None = None) -> str:
    """The OHIF viewer's address for a study, side by side with a prior when given."""
    for uid in (study_uid, prior_uid):
        if uid is not None and (not _UID.match(uid) or len(uid) > 64):
            raise ValueError(f"not a DICOM UID: {uid!r}")
    params = {"StudyInstanceUIDs": study_uid if prior_uid is None else f"{study_uid},{prior_uid}"}
    if prior_uid is not None:
        params["hangingProtocolId"] = COMPARE_PROTOCOL
    return f"{BASENAME}/viewer?{urlencode(params, safe=',@/')}"


@dataclass(frozen=True)
class _Found:
    path: Path
    size: int
    mtime: float


def _regular_file(path: Path) -> _Found | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _Found(path, st.st_size, st.st_mtime) if stat.S_ISREG(st.st_mode) else None


def _build_file(url_path: str, build_dir: Path) -> _Found | None:
    """The build's file for a root URL path, or None (not OHIF's, or outside the build)."""
    parts = url_path.lstrip("/").split("/")
    if not parts or parts[0] in RESERVED or any(p in ("", ".", "..") or "\\" in p or "\0" in p
                                                 for p in parts):
        return None
    found = _regular_file(build_dir.joinpath(*parts))
    if found is None:
        return None
    try:  # symlinks may not lead out of the build
        found.path.resolve().relative_to(build_dir.resolve())
    except ValueError:
        return None
    return found


def _etag(found: _Found) -> str:
    return f'"{int(found.mtime * 1000):x}-{found.size:x}"'


def _not_modified(headers: Headers, etag: str) -> bool:
    tags = headers.get("if-none-match")
    return tags is not None and etag in [t.strip().removeprefix("W/") for t in tags.split(",")]


def _file_response(request_headers: Headers, found: _Found, cache_control: str,
                   *, gzip_ok: bool = True) -> Response:
    path = found.path
    media_type = _MEDIA_TYPES.get(path.suffix.lower())
    etag = _etag(found)
    headers = {"Cache-Control": cache_control, "ETag": etag,
               "Last-Modified": formatdate(found.mtime, usegmt=True), **_SECURITY_HEADERS}
    compressed = _regular_file(path.with_name(path.name + ".gz")) if gzip_ok else None
    if compressed is not None:
        headers["Vary"] = "Accept-Encoding"
    if _not_modified(request_headers, etag):
        return Response(status_code=304, headers=headers)
    if compressed is not None and "gzip" in request_headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return FileResponse(compressed.path, media_type=media_type, headers=headers,
                            stat_result=os.stat(compressed.path))
    return FileResponse(path, media_type=media_type, headers=headers)


def _missing_build() -> Response:
    return PlainTextResponse(
        "The OHIF viewer is not built on this server: run `make web` (frontend/ohif/build.sh).",
        status_code=503, headers={"Cache-Control": "no-store"})


class _OhifFiles(BaseRoute):
    """GET/HEAD of a file of the OHIF build at its root path; matches nothing else."""

    def __init__(self, build_dir: Path = BUILD_DIR) -> None:
        self.build_dir = build_dir

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and _build_file(scope["path"], self.build_dir) is not None:
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: object) -> URL:  # type: ignore[override]
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        if scope["method"] not in ("GET", "HEAD"):
            response: Response = PlainTextResponse("Method Not Allowed", status_code=405,
                                                   headers={"Allow": "GET, HEAD"})
        else:
            found = await anyio.to_thread.run_sync(_build_file, scope["path"], self.build_dir)
            if found is None:
                response = PlainTextResponse("Not Found", status_code=404)
            elif found.path.name == "app-config.js":
                # The deployment's configuration: always revalidated.
                response = _file_response(headers, found, "no-cache", gzip_ok=False)
            elif _HASHED.search(found.path.name):
                response = _file_response(headers, found, "private, max-age=31536000, immutable")
            else:
                response = _file_response(headers, found, "private, no-cache")
        await response(scope, receive, send)


class _InlineScripts(HTMLParser):
    """The text of each ``<script>`` without ``src``: what a CSP hash-source is taken over
    (CSP Level 3 §6.7.3.3, the element's text as UTF-8)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.texts: list[str] = []
        self._inside = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self._inside = not any(name == "src" for name, _ in attrs)
            if self._inside:
                self.texts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._inside = False

    def handle_data(self, data: str) -> None:
        if self._inside:
            self.texts[-1] += data


@lru_cache(maxsize=4)
def page_csp(index_html: bytes) -> str:
    """The Content-Security-Policy of OHIF's pages: what its prebuilt bundles need and no more.

    - its two small inline scripts (``window.PUBLIC_URL``...) by hash, never 'unsafe-inline';
    - 'wasm-unsafe-eval' for its WASM codecs, and 'unsafe-eval': OHIF 3.13's codecs and
      tools are Emscripten builds whose Embind glue makes functions with ``new Function``
      at start-up (cornerstonejs/codecs#85 removes that in later codec builds);
    - workers from its files or from blob: URLs it builds (fflate, onnxruntime), images and
      PDFs from data:/blob: URLs, React's inline styles;
    - everything else from this origin only: no third-party script, frame or connection.
    """
    parser = _InlineScripts()
    parser.feed(index_html.decode("utf-8", errors="replace"))
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()}'"
        for text in parser.texts)
    return ("default-src 'self'; "
            f"script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval' {hashes}; "
            "worker-src 'self' blob:; connect-src 'self' blob: data:; "
            "img-src 'self' data: blob:; font-src 'self' data:; media-src 'self' blob:; "
            "style-src 'self' 'unsafe-inline'; object-src 'self' blob:; frame-src 'self' blob:; "
            "base-uri 'self'; form-action 'self'; frame-ancestors 'self'")


async def _index(request: Request) -> Response:
    """OHIF's index.html for every page under /ohif (its router takes it from there)."""
    index = BUILD_DIR / "index.html"
    try:
        content = await anyio.to_thread.run_sync(index.read_bytes)
    except OSError:
        return _missing_build()
    return Response(content, media_type="text/html; charset=utf-8", headers={
        "Cache-Control": "no-cache", "X-Frame-Options": "SAMEORIGIN",
        "Content-Security-Policy": page_csp(content), **_SECURITY_HEADERS})


async def _viewer_redirect(request: Request) -> Response:
    """OHIF's usual /viewer?StudyInstanceUIDs=... address, moved under /ohif."""
    query = request.url.query
    return RedirectResponse(f"{BASENAME}/viewer" + (f"?{query}" if query else ""), 307)


routes: list[BaseRoute] = [
    Route(BASENAME, _index, methods=["GET"]),
    Route(BASENAME + "/{page:path}", _index, methods=["GET"]),
    Route("/viewer", _viewer_redirect, methods=["GET"]),
    _OhifFiles(),
]
