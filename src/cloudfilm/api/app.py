"""The ASGI application: DICOMweb under /dicomweb, WADO-URI at /wado, health at /healthz."""

from __future__ import annotations

from contextlib import asynccontextmanager
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from cloudfilm.api.dicomweb import delete, qido, rendered, stow, wado
from cloudfilm.api import wado_uri
from cloudfilm.api.errors import http_exception_handler
from cloudfilm.services.archive import Archive


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def create_app(archive: Archive) -> Starlette:
    """Build the app around an opened archive (the caller owns its lifetime)."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield

    dicomweb = stow.routes + qido.routes + wado.routes + rendered.routes + delete.routes
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/wado", wado_uri.wado, methods=["GET"]),
            Mount("/dicomweb", routes=dicomweb),
        ],
        exception_handlers={HTTPException: http_exception_handler},
        lifespan=lifespan,
    )
    app.state.archive = archive
    return app
