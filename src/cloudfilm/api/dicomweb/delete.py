"""DELETE of a study, series or instance: index rows and blobs (as dcm4chee and Orthanc do)."""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.errors import NotFound
from cloudfilm.services.archive import Archive
from cloudfilm.services.retrieve import NotStored


async def delete_resource(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    p = request.path_params
    try:
        count = await run_in_threadpool(archive.deletion.delete, p["study"], p.get("series"),
                                        p.get("instance"))
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    return Response(orjson.dumps({"deleted_instances": count}), media_type="application/json")


routes = [
    Route("/studies/{study}", delete_resource, methods=["DELETE"]),
    Route("/studies/{study}/series/{series}", delete_resource, methods=["DELETE"]),
    Route("/studies/{study}/series/{series}/instances/{instance}", delete_resource,
          methods=["DELETE"]),
]
