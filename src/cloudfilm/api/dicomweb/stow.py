"""STOW-RS (PS3.18 §10.5): POST /studies and /studies/{study}.

The body is streamed into staging files part by part; nothing is acknowledged
until every stored instance is fsynced, indexed and published. Each part
succeeds or fails alone; the response is a DICOM JSON dataset with
ReferencedSOPSequence and FailedSOPSequence (PS3.18 Table 10.5.3-2).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.media import parse_media_type
from cloudfilm.api.multipart import MalformedBody, MultipartReceiver, ReceivedPart
from cloudfilm.api.responses import DICOM_JSON
from cloudfilm.api.urls import dicomweb_base, instance_url, study_url
from cloudfilm.services.archive import Archive
from cloudfilm.services.ingest import IngestOutcome
from cloudfilm.storage.blobs import StagedBlob

DICOM = "application/dicom"
CANNOT_UNDERSTAND = 0xC000
REASON_CREATOR = {"00F10010": {"vr": "LO", "Value": ["CLOUDFILM"]}}


def _boundary(request: Request) -> tuple[str, str]:
    header = request.headers.get("content-type", "")
    media = parse_media_type(header)
    if media.type != "multipart/related":
        raise HTTPException(415, f"unsupported media type {media.type or '(none)'}: "
                                 "STOW-RS takes multipart/related; type=\"application/dicom\"")
    part_type = media.params.get("type", DICOM).lower()
    if part_type != DICOM:
        raise HTTPException(415, f"unsupported multipart type {part_type!r}: only "
                                 "application/dicom instances are accepted")
    boundary = media.params.get("boundary")
    if not boundary:
        raise HTTPException(400, "malformed multipart body: the boundary parameter is missing")
    return boundary, part_type


async def _receive(request: Request, archive: Archive) -> list[ReceivedPart]:
    boundary, part_type = _boundary(request)
    receiver = MultipartReceiver(boundary, part_type, {DICOM}, archive.blobs)
    try:
        async for chunk in request.stream():
            receiver.feed(chunk)
        return receiver.finish()
    except MalformedBody as exc:
        receiver.abort()
        raise HTTPException(400, str(exc)) from exc
    except BaseException:
        receiver.abort()
        raise


def _store(archive: Archive, parts: list[ReceivedPart], study: str | None) -> list[IngestOutcome]:
    """fsync, parse, index and publish (runs in a worker thread)."""
    staged: list[StagedBlob] = []
    slots: list[int] = []
    outcomes: list[IngestOutcome | None] = []
    for part in parts:
        if part.path is None:
            outcomes.append(IngestOutcome("failed", reason=part.error, code=CANNOT_UNDERSTAND))
            continue
        slots.append(len(outcomes))
        outcomes.append(None)
        staged.append(archive.blobs.seal(part.path, part.size, part.sha256))
    for slot, outcome in zip(slots, archive.ingest.ingest_staged(staged, study)):
        outcomes[slot] = outcome
    return [o for o in outcomes if o is not None]


def _uid(value: str) -> dict[str, Any]:
    return {"vr": "UI", "Value": [value]} if value else {"vr": "UI"}


def _response_body(outcomes: list[IngestOutcome], base: str, study: str | None) -> dict[str, Any]:
    referenced, failed = [], []
    for outcome in outcomes:
        item = {"00081150": _uid(outcome.sop_class_uid), "00081155": _uid(outcome.sop_instance_uid)}
        if outcome.ok:
            url = instance_url(base, outcome.study_uid, outcome.series_uid, outcome.sop_instance_uid)
            referenced.append(item | {"00081190": {"vr": "UR", "Value": [url]}})
        else:
            reason = {"00F11001": {"vr": "LT", "Value": [outcome.reason]}}
            failed.append(item | {"00081197": {"vr": "US", "Value": [outcome.code or 0x0110]}}
                          | REASON_CREATOR | reason)
    body: dict[str, Any] = {}
    studies = {o.study_uid for o in outcomes if o.ok}
    target = study or (studies.pop() if len(studies) == 1 else None)
    if target:
        body["00081190"] = {"vr": "UR", "Value": [study_url(base, target)]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": failed}
    if referenced:
        body["00081199"] = {"vr": "SQ", "Value": referenced}
    return body


def _status(outcomes: list[IngestOutcome]) -> int:
    """200 all stored, 202 some failed, 409 none stored (PS3.18 §10.5.3)."""
    stored = sum(o.ok for o in outcomes)
    if stored == len(outcomes):
        return 200
    return 202 if stored else 409


async def store_instances(request: Request) -> Response:
    archive: Archive = request.app.state.archive
    study = request.path_params.get("study")
    parts = await _receive(request, archive)
    if not parts:
        raise HTTPException(400, "the request holds no parts")
    outcomes = await run_in_threadpool(_store, archive, parts, study)
    body = _response_body(outcomes, dicomweb_base(request), study)
    return Response(orjson.dumps(body), status_code=_status(outcomes), media_type=DICOM_JSON)


routes = [
    Route("/studies", store_instances, methods=["POST"]),
    Route("/studies/{study}", store_instances, methods=["POST"]),
]
