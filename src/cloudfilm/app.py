"""The ASGI application: DICOMweb under /dicomweb, JSON API under /api, WADO-URI at /wado,
and the pages at the root.

Why outside api/ and web/: this is where the two meet. The pages (web/) build on the
API's HTTP plumbing (authentication, access checks, URLs); the API never imports a page.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from cloudfilm.api import (
    admin,
    ai_candidates,
    audit,
    documents,
    export,
    films,
    me,
    nodules,
    notifications,
    people,
    research,
    shares,
    signup,
    uploads,
    wado_uri,
)
from cloudfilm.api.authn import AuthenticationMiddleware
from cloudfilm.api.dicomweb import delete, qido, rendered, stow, wado
from cloudfilm.api.errors import http_exception_handler
from cloudfilm.api.security_headers import SecurityHeadersMiddleware
from cloudfilm.services.access.read_access import read_access_of
from cloudfilm.services.context import Archive
from cloudfilm.web import (
    card_words,
    login_pages,
    nodule_pages,
    ohif,
    pages,
    share_links,
    signup_pages,
    viewer,
)
from cloudfilm.web import (
    films as film_pages,
)

DICOMWEB_ROUTERS = [stow, qido, wado, rendered, delete]
API_ROUTERS = [admin, uploads, documents, export, me, audit, notifications, people, shares,
               nodules, signup, films, research, ai_candidates]
# Pages that answer under /api too: what they render needs the pages' words or assets.
WEB_API_ROUTES: list[BaseRoute] = [*film_pages.api_routes, *card_words.api_routes,
                                   *viewer.api_routes]
# Pages at the root; OHIF last, since its SPA fallback answers unknown viewer routes.
WEB_ROUTERS = [login_pages, film_pages, share_links, pages, signup_pages, nodule_pages, viewer,
               ohif]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def favicon(request: Request) -> Response:
    """Browsers ask on every page, the login page included: nothing, and no error."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


@asynccontextmanager
async def anchored_at_shutdown(app: Starlette) -> AsyncIterator[None]:
    """A clean shutdown checkpoints the audit log here: uvicorn re-raises SIGTERM once it
    has stopped, so code after ``Server.run()`` may never run. At start, one epoch read
    through the thread pool loads anyio's thread backend and the read path's checks, which
    the first request would otherwise wait for (~50-100 ms, issue 14)."""
    await run_in_threadpool(read_access_of(app.state.archive).epoch.current)
    yield
    await run_in_threadpool(app.state.archive.audit.anchor_pending)


def create_app(archive: Archive) -> Starlette:
    """Build the app around an opened archive (the caller owns its lifetime)."""
    dicomweb: list[BaseRoute] = [r for module in DICOMWEB_ROUTERS for r in module.routes]
    api: list[BaseRoute] = [r for module in API_ROUTERS for r in module.routes] + WEB_API_ROUTES
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/favicon.ico", favicon),
            Route("/wado", wado_uri.wado, methods=["GET"]),
            Mount("/dicomweb", routes=dicomweb),
            Mount("/api", routes=api),
            *[r for module in WEB_ROUTERS for r in module.routes],
        ],
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=anchored_at_shutdown,
        middleware=[Middleware(SecurityHeadersMiddleware), Middleware(AuthenticationMiddleware)],
    )
    app.state.archive = archive
    return app
