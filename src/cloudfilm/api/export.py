"""Download studies as an IHE PDI zip (services/exchange/export.py), streamed as it is written.

``GET /api/studies/{study}/export.zip`` and ``GET /api/patients/{patient_id}/export.zip``
(every study of that PatientID; ``?issuer=`` picks the IssuerOfPatientID, and is
needed when the ID exists under several issuers: 409 otherwise). The plan (and so
any 404) is settled before the first byte is sent.

``GET /api/studies/{study}/originals.zip`` holds only the stored Part-10 files, and
``GET /api/persons/{id}/export.zip`` / ``originals.zip`` every study of one person's
folder that the caller may download (the portal's "Download" buttons). Every route needs
``Permission.DOWNLOAD``: a view-only link or grant gets the 404 of a missing study, and
each study handed out is audited as a download.
"""

from __future__ import annotations

import re

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cloudfilm.api.access import audit, require_study
from cloudfilm.api.authn import principal
from cloudfilm.api.multipart import in_thread_batches
from cloudfilm.domain.access import Permission
from cloudfilm.services.access.people import PeopleService
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.export import (
    AmbiguousPatient,
    ExportPlan,
    UnknownPatient,
    UnknownStudies,
    stream_export,
    stream_originals,
    studies_for,
)


def _zip_response(archive: Archive, plan: ExportPlan, name: str, *,
                  originals: bool = False) -> Response:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100]
    chunks = (stream_originals if originals else stream_export)(plan, archive.blobs)
    return StreamingResponse(
        in_thread_batches(chunks), media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="{safe}.zip"',
                 "Cache-Control": "private, no-store"})


async def _plan(archive: Archive, studies: list[str], patient: str | None,
                issuer: str | None) -> ExportPlan:
    try:
        return await run_in_threadpool(studies_for, archive, studies, patient, issuer)
    except (UnknownStudies, UnknownPatient) as exc:
        raise HTTPException(404, str(exc)) from exc
    except AmbiguousPatient as exc:
        raise HTTPException(409, str(exc)) from exc


async def export_study(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    study = request.path_params["study"]
    originals = request.url.path.endswith("/originals.zip")
    decision = await require_study(request, Permission.DOWNLOAD, study)
    plan = await _plan(archive, [study], None, None)
    await audit(request, "download", decision, study,
                detail={"format": "originals" if originals else "pdi"})
    return _zip_response(archive, plan, f"study-{study}", originals=originals)


async def export_person(request: Request) -> Response:
    """Every study in one person's folder that the caller may download, as one zip; 404
    (like an unknown person) when that is none, so nothing about the folder leaks."""
    archive: Archive = request.app.state.archive
    who = principal(request)
    try:
        person_id = int(request.path_params["id"])
    except ValueError as exc:
        raise HTTPException(404, "person not found") from exc
    studies = await run_in_threadpool(PeopleService(archive).studies_for, who, person_id,
                                      Permission.DOWNLOAD)
    decisions = await run_in_threadpool(Policy(archive).check_many, who, Permission.DOWNLOAD,
                                        [s.study_uid for s in studies])
    allowed = {uid: d for uid, d in decisions.items() if d.allowed}
    if not allowed:
        raise HTTPException(404, "person not found")
    originals = request.url.path.endswith("/originals.zip")
    plan = await _plan(archive, list(allowed), None, None)
    for uid, decision in allowed.items():
        await audit(request, "download", decision, uid,
                    detail={"format": "originals" if originals else "pdi"})
    return _zip_response(archive, plan, f"person-{person_id}", originals=originals)


async def export_patient(request: Request) -> Response:
    """Every study of the PatientID that the caller may download: policy first, so a caller
    who may download none gets the 404 of an unknown patient, never a 409 that names the
    hospitals holding that PatientID."""
    archive: Archive = request.app.state.archive
    patient_id = request.path_params["patient_id"]
    issuer = request.query_params.get("issuer")
    by_issuer = await run_in_threadpool(Policy(archive).check_patient, principal(request),
                                        Permission.DOWNLOAD, patient_id, issuer)
    allowed = {held: {uid: d for uid, d in decisions.items() if d.allowed}
               for held, decisions in by_issuer.items()}
    allowed = {held: decisions for held, decisions in allowed.items() if decisions}
    if not allowed:
        raise HTTPException(404, str(UnknownPatient(patient_id, issuer)))
    if len(allowed) > 1:
        raise HTTPException(409, str(AmbiguousPatient(patient_id, sorted(allowed))))
    decisions = next(iter(allowed.values()))
    plan = await _plan(archive, list(decisions), None, None)
    for uid, decision in decisions.items():
        await audit(request, "download", decision, uid, detail={"format": "pdi"})
    return _zip_response(archive, plan, f"patient-{patient_id}")


routes = [
    Route("/studies/{study}/export.zip", export_study, methods=["GET"]),
    Route("/studies/{study}/originals.zip", export_study, methods=["GET"]),
    Route("/persons/{id}/export.zip", export_person, methods=["GET"]),
    Route("/persons/{id}/originals.zip", export_person, methods=["GET"]),
    Route("/patients/{patient_id}/export.zip", export_patient, methods=["GET"]),
]
