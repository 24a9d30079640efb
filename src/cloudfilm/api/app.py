"""The ASGI application: DICOMweb under /dicomweb, JSON API under /api, WADO-URI at /wado."""

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
    admin, audit, documents, export, links, login, nodules, notifications, people, shares, uploads,
    wado_uri,
)
from cloudfilm.api.authn import AuthenticationMiddleware
from cloudfilm.api.dicomweb import delete, qido, rendered, stow, wado
from cloudfilm.api.errors import http_exception_handler
from cloudfilm.api.security_headers import SecurityHeadersMiddleware
from cloudfilm.services.context import Archive
from cloudfilm.web import nodule_pages, ohif, pages, viewer
from cloudfilm.api import signup  # issue 12: keep it for life
from cloudfilm.web import signup_pages
from cloudfilm.api import films  # issue 12: the hospital issues cloud films
from cloudfilm.web import films as film_pages

DICOMWEB_ROUTERS = [stow, qido, wado, rendered, delete]
API_ROUTERS = [admin, uploads, documents, export, login, audit, notifications, people, shares,
               nodules, signup, films]
# Pages at the root; OHIF last, since its SPA fallback answers unknown viewer routes.
WEB_ROUTERS = [pages, signup_pages, film_pages, nodule_pages, viewer, ohif]


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def favicon(request: Request) -> Response:
    """Browsers ask on every page, the login page included: nothing, and no error."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})


@asynccontextmanager
async def anchored_at_shutdown(app: Starlette) -> AsyncIterator[None]:
    """A clean shutdown checkpoints the audit log here: uvicorn re-raises SIGTERM once it
    has stopped, so code after ``Server.run()`` may never run."""
    yield
    await run_in_threadpool(app.state.archive.audit.anchor_pending)


def create_app(archive: Archive) -> Starlette:
    """Build the app around an opened archive (the caller owns its lifetime)."""
    dicomweb: list[BaseRoute] = [r for module in DICOMWEB_ROUTERS for r in module.routes]
    api: list[BaseRoute] = [r for module in API_ROUTERS for r in module.routes] + viewer.api_routes
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/favicon.ico", favicon),
            Route("/wado", wado_uri.wado, methods=["GET"]),
            Mount("/dicomweb", routes=dicomweb),
            Mount("/api", routes=api),
            *login.page_routes,
            *films.page_routes,  # /s/: the code on a film's slip, before /s/{secret}
            *links.page_routes,
            *[r for module in WEB_ROUTERS for r in module.routes],
        ],
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=anchored_at_shutdown,
        middleware=[Middleware(SecurityHeadersMiddleware), Middleware(AuthenticationMiddleware)],
    )
    app.state.archive = archive
    return app
