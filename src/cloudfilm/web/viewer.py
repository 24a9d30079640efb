"""The Cornerstone3D patient/clinic viewer: its page, its built assets, the prior lookup.

Why the server is thin here: the viewer is a static app (frontend/viewer, built by
``make web``) that reads the archive's own DICOMweb with the session cookie. The
server only decides who may open which study (a hidden study gets the same 404 as a
missing one) and asks services/access/portal.py for the prior CT (across every hospital
record of the person), the same answer as the study page's "compare" link.
"""

from __future__ import annotations

import html
import mimetypes
import os
import re
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from cloudfilm.api.access import archive_of, require_study
from cloudfilm.api.authn import principal
from cloudfilm.domain.access import Permission
from cloudfilm.i18n import HTML_LANG, chosen_language
from cloudfilm.services.access.portal import prior_study
from cloudfilm.web.nodule_views import may_write

BUILD_DIR = Path(__file__).resolve().parent / "static" / "build" / "viewer"
UID = re.compile(r"^[0-9]+(?:\.[0-9]+)*$")
HASHED = re.compile(r"-[A-Za-z0-9_-]{8}\.[a-z0-9]+$")  # Vite's name-<hash>.ext
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8", ".wasm": "application/wasm",
    ".html": "text/html; charset=utf-8", ".json": "application/json",
    ".svg": "image/svg+xml", ".png": "image/png", ".woff2": "font/woff2",
}
COMPRESSIBLE = frozenset({".js", ".mjs", ".css", ".wasm", ".html", ".json", ".svg"})
# The app is same-origin only: scripts and workers from here, WASM compiled from here.
CSP = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
       "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'")
PAGE_HEADERS = {"Cache-Control": "no-store", "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
                "X-Frame-Options": "SAMEORIGIN"}
MESSAGES = {
    "en": {"title": "Study not found",
           "body": "This study does not exist, or you may not view it. If someone shared it "
                   "with you, the share may have ended.",
           "back": "Back to my studies",
           "unavailable": "The viewer is not available",
           "unbuilt": "The viewer has not been built on this server (run make web)."},
    "zh-Hans": {"title": "找不到检查",
                "body": "此检查不存在，或您无权查看。如果是别人分享给您的，分享可能已经结束。",
                "back": "返回我的检查",
                "unavailable": "查看器暂不可用",
                "unbuilt": "此服务器尚未构建查看器（请运行 make web）。"},
}


def _message_page(request: Request, status: int, title_key: str, body_key: str) -> HTMLResponse:
    """A small self-contained page (no scripts) in the viewer's language."""
    lang = HTML_LANG[chosen_language(request)]  # the portal's rule: ?lang=, cookie, browser
    text = MESSAGES[lang]
    title = html.escape(text[title_key])
    document = (
        f'<!doctype html>\n<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title} · cloudfilm</title><style>"
        "body{font:1.1rem/1.5 system-ui,sans-serif;max-width:34rem;margin:2rem auto;padding:0 1rem}"
        "a{display:inline-block;padding:.6rem 1rem;border:1px solid #0b5394;border-radius:6px;"
        "color:#0b5394;text-decoration:none;min-height:44px}</style></head><body><main>"
        f'<h1>{title}</h1><p role="alert">{html.escape(text[body_key])}</p>'
        f'<p><a href="/">{html.escape(text["back"])}</a></p></main></body></html>')
    return HTMLResponse(document, status_code=status, headers={
        "Cache-Control": "no-store", "Content-Language": lang, "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                                   "frame-ancestors 'self'"})


def _uid(request: Request, name: str) -> str:
    value = request.path_params[name]
    if len(value) > 64 or not UID.match(value):
        raise HTTPException(404, f"study {value[:80]} not found")
    return str(value)


async def _viewer_page(request: Request, studies: list[str]) -> Response:
    """index.html once every named study is visible to the caller (else the 404 page)."""
    try:
        for study in studies:
            await require_study(request, Permission.VIEW, study)
    except HTTPException as exc:
        if exc.status_code != 404:
            raise
        return _message_page(request, 404, "title", "body")
    index = BUILD_DIR / "index.html"
    try:
        content = await run_in_threadpool(index.read_bytes)
    except FileNotFoundError:
        return _message_page(request, 503, "unavailable", "unbuilt")
    return HTMLResponse(content, headers=PAGE_HEADERS)


async def view(request: Request) -> Response:
    try:
        study = _uid(request, "study")
    except HTTPException:
        return _message_page(request, 404, "title", "body")
    return await _viewer_page(request, [study])


async def view_compare(request: Request) -> Response:
    try:
        study, prior = _uid(request, "study"), _uid(request, "prior")
    except HTTPException:
        return _message_page(request, 404, "title", "body")
    return await _viewer_page(request, [study, prior])


# --- built assets ----------------------------------------------------------------------------

@dataclass(frozen=True)
class _Asset:
    path: Path
    media_type: str
    encoding: str | None  # "br" or "gzip" when a pre-compressed twin is sent
    etag: str


ENCODINGS = (("br", ".br"), ("gzip", ".gz"))  # smallest first (build.sh makes both)


def _accepted_encodings(header: str) -> set[str]:
    """Content codings the client accepts (RFC 9110 §12.5.3), without q=0 ones."""
    accepted = set()
    for item in header.lower().split(","):
        name, _, params = item.partition(";")
        if params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000"):
            accepted.add(name.strip())
    return accepted


def _find_asset(relative: str, accepted: set[str]) -> _Asset | None:
    """The file under BUILD_DIR (never outside it), or its .br/.gz twin when accepted."""
    root = BUILD_DIR.resolve()
    target = (root / relative).resolve()
    if not target.is_relative_to(root) or target.suffix in (".gz", ".br") or not target.is_file():
        return None
    media = MEDIA_TYPES.get(target.suffix) or mimetypes.guess_type(target.name)[0] \
        or "application/octet-stream"
    chosen, encoding = target, None
    if target.suffix in COMPRESSIBLE:
        for name, suffix in ENCODINGS:
            twin = target.with_name(target.name + suffix)
            if name in accepted and twin.is_file():
                chosen, encoding = twin, name
                break
    stat = os.stat(chosen)
    etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}{"-" + encoding if encoding else ""}"'
    return _Asset(chosen, media, encoding, etag)


async def asset(request: Request) -> Response:
    """Hashed files are immutable (cached a year); anything else is revalidated."""
    relative = str(request.path_params["path"])
    accepted = _accepted_encodings(request.headers.get("accept-encoding", ""))
    found = await run_in_threadpool(_find_asset, relative, accepted)
    if found is None:
        return JSONResponse({"status": 404, "error": f"asset {relative[:200]} not found"}, 404)
    headers = {
        "Cache-Control": "public, max-age=31536000, immutable" if HASHED.search(relative)
        else "no-cache",
        "ETag": found.etag, "Vary": "Accept-Encoding", "X-Content-Type-Options": "nosniff",
    }
    if found.encoding:
        headers["Content-Encoding"] = found.encoding
    if request.headers.get("if-none-match") == found.etag:
        return Response(status_code=304, headers=headers)
    return FileResponse(found.path, media_type=found.media_type, headers=headers)


# --- the prior study and the tools ----------------------------------------------------------

async def prior(request: Request) -> Response:
    """``{"prior": UID | null}`` for the viewer's "Compare with prior" button."""
    study = _uid(request, "study")
    await require_study(request, Permission.VIEW, study)
    found = await run_in_threadpool(prior_study, archive_of(request), principal(request),
                                    study)
    return JSONResponse({"study": study, "prior": found}, headers={"Cache-Control": "no-store"})


async def tools(request: Request) -> Response:
    """``{"measure_nodule": bool}``: the viewer offers (and ``?tool=nodule`` opens) the nodule
    tool only to a clinician whose grant on this study allows writing, as the measure API
    demands; a view-only grant would only meet its 403."""
    study = _uid(request, "study")
    visible = await require_study(request, Permission.VIEW, study)
    allowed = await run_in_threadpool(may_write, archive_of(request), principal(request), study,
                                      visible.person_id)
    return JSONResponse({"study": study, "measure_nodule": allowed},
                        headers={"Cache-Control": "no-store"})


# Mounted under /api by cloudfilm/app.py (a root-level /api/... route is shadowed by that mount).
api_routes: list[BaseRoute] = [
    Route("/studies/{study}/prior", prior, methods=["GET"]),
    Route("/studies/{study}/tools", tools, methods=["GET"]),
]

routes: list[BaseRoute] = [
    Route("/view/{study}", view, methods=["GET"]),
    Route("/view/{study}/compare/{prior}", view_compare, methods=["GET"]),
    Route("/static/build/viewer/{path:path}", asset, methods=["GET", "HEAD"]),
]
