"""De-identified research exports (issue 15): ``/api/research/exports``.

``POST /api/research/exports`` with the cohort and options of ``cloudfilm research
export`` as JSON (``{"all": true}``, ``{"studies": [...]}``, ``{"persons": [...]}`` and/or
filters ``from``, ``until``, ``modality``, ``hospital``, ``nodule_type``, ``min_size_mm``,
``max_size_mm``, ``growth``, ``category``, ``guideline``; ``options`` with
``retain_longitudinal_modified_dates``, ``retain_patient_characteristics``,
``clean_descriptors``, ``retain_safe_private``) runs the export and answers 201 with its
status and manifest. ``GET /api/research/exports`` lists the caller's exports,
``GET /api/research/exports/{id}`` one of them, ``GET .../{id}/archive`` streams its zip
(the de-identified files, ``nodules.csv`` and ``manifest.json``). For researchers and
admins; a researcher reads only their own exports (others: 404).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cloudfilm.api.authn import client_ip, require_user
from cloudfilm.api.multipart import in_thread_batches
from cloudfilm.api.people import archive_of, call, int_param, json_body, respond
from cloudfilm.domain.access import Role
from cloudfilm.services.research.exports import ResearchExports

RESEARCH = (Role.RESEARCHER, Role.ADMIN)


async def create_export(request: Request) -> Response:
    who = require_user(request, RESEARCH)
    body = await json_body(request)
    made = await call(ResearchExports(archive_of(request)).create, who, body, client_ip(request))
    return respond(made, 201)


async def list_exports(request: Request) -> Response:
    who = require_user(request, RESEARCH)
    return respond(await call(ResearchExports(archive_of(request)).list, who))


async def get_export(request: Request) -> Response:
    who = require_user(request, RESEARCH)
    export_id = int_param(request.path_params["id"], "export id")
    return respond(await call(ResearchExports(archive_of(request)).get, who, export_id,
                              client_ip(request)))


async def export_archive(request: Request) -> Response:
    who = require_user(request, RESEARCH)
    export_id = int_param(request.path_params["id"], "export id")
    archive = archive_of(request)
    key, size = await call(ResearchExports(archive).archive_blob, who, export_id,
                           client_ip(request))
    return StreamingResponse(
        in_thread_batches(archive.blobs.iter_bytes(key)), media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="research-export-{export_id}.zip"',
                 "Content-Length": str(size), "Cache-Control": "private, no-store"})


routes = [
    Route("/research/exports", create_export, methods=["POST"]),
    Route("/research/exports", list_exports, methods=["GET"]),
    Route("/research/exports/{id}", get_export, methods=["GET"]),
    Route("/research/exports/{id}/archive", export_archive, methods=["GET"]),
]
