"""Attach a PDF report or a photo to a study: ``POST /api/studies/{study}/documents``.

multipart/form-data with one ``file`` field (and an optional ``title`` field); the
file becomes an Encapsulated PDF (PS3.3 A.45.1) or a Secondary Capture image (A.8.1)
in a new series of the study (services/exchange/documents.py). ``POST
/api/patients/{patient_id}/documents`` (``?issuer=``) starts a new study instead.
201 with the new UIDs; 404 unknown (or not visible) study or patient; 403 a study the
caller may see but not add to; 415 not a PDF, JPEG or PNG; 413 too large.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.access import archive_of, audit, require_upload
from cloudfilm.api.authn import principal
from cloudfilm.api.uploads import FormPart, Placer, form_boundary, receive_form, scratch_dir
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange import documents

FORM_OVERHEAD = 1 << 20  # headers and the title field around the document


def _placer(folder: Path) -> Placer:
    """The one ``file`` field goes to a fixed name: the client's name is only a label."""
    def place(field_name: str, filename: str) -> Path | str:
        if field_name != "file":
            return f"field {field_name!r} is not read"
        target = folder / "document"
        return "only one 'file' field is accepted" if target.exists() else target
    return place


def _document(parts: list[FormPart]) -> tuple[FormPart, str | None]:
    files = [p for p in parts if p.name == "file" and p.path is not None]
    if not files:
        raise HTTPException(400, "the request holds no 'file' field")
    if any(p.name == "file" and p.error for p in parts):
        raise HTTPException(400, "send exactly one 'file' field")
    titles = [p.value.strip() for p in parts if p.name == "title" and p.filename is None]
    return files[0], (titles[0] if titles and titles[0] else None)


def _attach(archive: Archive, part: FormPart, title: str | None,
            target: dict[str, str | None]) -> documents.AttachedDocument:
    assert part.path is not None
    try:
        return documents.attach(archive, part.path, part.filename or "document", title=title,
                                **target)
    except documents.UnknownTarget as exc:
        raise HTTPException(404, str(exc)) from exc
    except documents.UnsupportedDocument as exc:
        raise HTTPException(exc.status, str(exc)) from exc
    except documents.DocumentNotStored as exc:
        raise HTTPException(409, f"the archive refused the document: {exc}") from exc


async def _receive_and_attach(request: Request,
                              target: dict[str, str | None]) -> documents.AttachedDocument:
    archive: Archive = request.app.state.archive
    form_boundary(request)
    folder = scratch_dir(archive, "document")
    try:
        limit = documents.MAX_DOCUMENT_BYTES + FORM_OVERHEAD
        part, title = _document(await receive_form(request, _placer(folder), limit))
        attached = await run_in_threadpool(_attach, archive, part, title, target)
    finally:
        await run_in_threadpool(shutil.rmtree, folder, True)
    return attached


async def study_document(request: Request) -> Response:
    study = request.path_params["study"]
    decision = await require_upload(request, study)
    attached = await _receive_and_attach(request, {"study_uid": study})
    await audit(request, "upload", decision, study, detail={"document": attached.media_type})
    return JSONResponse(attached.as_dict(), status_code=201)


async def patient_document(request: Request) -> Response:
    patient_id = request.path_params["patient_id"]
    issuer = request.query_params.get("issuer")
    decision = await run_in_threadpool(Policy(archive_of(request)).check_new_study,
                                       principal(request), patient_id, issuer or "")
    if not decision.allowed:
        raise HTTPException(404, f"patient {patient_id} not found")
    target = {"patient_id": patient_id, "issuer": issuer}
    attached = await _receive_and_attach(request, target)
    await audit(request, "upload", decision, attached.study_uid,
                detail={"document": attached.media_type})
    return JSONResponse(attached.as_dict(), status_code=201)


routes = [
    Route("/studies/{study}/documents", study_document, methods=["POST"]),
    Route("/patients/{patient_id}/documents", patient_document, methods=["POST"]),
]
