"""DELETE of a study, series or instance: index rows and blobs (as dcm4chee and Orthanc do).

Only operators and admins may delete, and only what retention allows: a study under
its source's minimum years, a legal hold or an active grant is refused with 409 and
the reason (services/archive/retention.py). Every deletion, and every refusal, is audited.
"""

from __future__ import annotations

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.access import archive_of, audit, describe, require_study
from cloudfilm.api.authn import require_user
from cloudfilm.api.errors import NotFound
from cloudfilm.domain.access import Permission, Role
from cloudfilm.services.archive.retention import Retention
from cloudfilm.services.archive.retrieve import NotStored

DELETERS = (Role.OPERATOR, Role.ADMIN)


async def delete_resource(request: Request) -> Response:
    require_user(request, DELETERS)
    archive = archive_of(request)
    p = request.path_params
    study, series, sop = p["study"], p.get("series"), p.get("instance")
    decision = await require_study(request, Permission.VIEW, study, series, sop)
    allowed, why = await run_in_threadpool(Retention(archive.index).may_delete, study)
    what = describe(study, series, sop)
    if not allowed:
        await audit(request, "delete", decision, study, outcome="failure",
                    detail={"target": what, "reason": why})
        raise HTTPException(409, f"{what} may not be deleted: {why}")
    try:
        count = await run_in_threadpool(archive.deletion.delete, study, series, sop)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    await audit(request, "delete", decision, study,
                detail={"target": what, "instances": count, "retention": why})
    return Response(orjson.dumps({"deleted_instances": count}), media_type="application/json")


routes = [
    Route("/studies/{study}", delete_resource, methods=["DELETE"]),
    Route("/studies/{study}/series/{series}", delete_resource, methods=["DELETE"]),
    Route("/studies/{study}/series/{series}/instances/{instance}", delete_resource,
          methods=["DELETE"]),
]
