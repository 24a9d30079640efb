"""STOW-RS (PS3.18 §10.5): POST /studies and /studies/{study}.

The body is streamed into staging files part by part; nothing is acknowledged
until every stored instance is fsynced, indexed and published (the group commit of
services/archive/ingest.py, shared with concurrent requests). Each part
succeeds or fails alone; the response is a DICOM JSON dataset with
ReferencedSOPSequence and FailedSOPSequence (PS3.18 Table 10.5.3-2). Who may store
what is `services.admission.UploadAdmission`'s call: a patient's instances go only
into their own folder; a refused one fails alone (0124H) with the reason. An AI service's
account stores only its results for series sent to it (`services.ai.admission`).

The event loop only collects body chunks: about a megabyte at a time is handed to a
worker thread that splits parts, writes and hashes them (both release the GIL), while
the loop reads the next megabyte; a finished part is fsynced and parsed in a pool.
At most two such buffers per request are held, so memory stays flat however large
the body.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.authn import client_ip, principal
from cloudfilm.api.media import parse_media_type
from cloudfilm.api.responses import DICOM_JSON
from cloudfilm.api.urls import dicomweb_base, instance_url, study_url
from cloudfilm.services.ai.admission import stow_admission
from cloudfilm.services.archive.ingest import Admission, IngestOutcome, PreparedInstance
from cloudfilm.services.archive.multipart_stream import (
    MalformedMultipart,
    ReceivedPart,
    StagingReceiver,
    boundary_problem,
)
from cloudfilm.services.context import Archive
from cloudfilm.storage.staging import durability_event

log = logging.getLogger(__name__)
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
    if reason := boundary_problem(boundary):
        raise HTTPException(400, reason)
    return boundary, part_type


# Parts are fsynced and parsed here while the rest of the body is still arriving:
# fsync releases the GIL, so concurrent fsyncs of a batch overlap (and share journal commits).
_PREPARE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="stow-prepare")


def _prepare(archive: Archive, part: ReceivedPart, study: str | None) -> PreparedInstance:
    """Seal and parse one part; an unexpected error fails this part alone (and drops its bytes)."""
    staged = part.staged
    try:
        return archive.ingest.prepare(archive.blobs.seal(staged), study)
    except Exception:
        log.exception("STOW could not read a part")
        return PreparedInstance(staged, outcome=IngestOutcome(
            "failed", reason="this instance could not be read", code=CANNOT_UNDERSTAND))


class _Preparing:
    """One future per received part, in order; refused parts carry their outcome directly."""

    def __init__(self, archive: Archive, study: str | None, admission: Admission) -> None:
        self.archive, self.study, self.admission = archive, study, admission
        self.slots: list[Future[PreparedInstance] | IngestOutcome] = []

    def __call__(self, part: ReceivedPart) -> None:
        if part.path is None:
            self.slots.append(IngestOutcome("failed", reason=part.error, code=CANNOT_UNDERSTAND))
        else:
            self.slots.append(_PREPARE.submit(_prepare, self.archive, part, self.study))

    def settle(self) -> None:
        wait([s for s in self.slots if isinstance(s, Future)])

    def store(self) -> list[IngestOutcome]:
        """Index and publish every prepared part (runs in a worker thread)."""
        prepared = [s.result() for s in self.slots if isinstance(s, Future)]
        stored = iter(self.archive.ingest.index_and_publish(prepared, self.admission))
        return [s if isinstance(s, IngestOutcome) else next(stored) for s in self.slots]


FEED_BYTES = 1 << 20  # body bytes collected on the event loop before a thread takes them
# Splitting, writing and hashing parts, off the event loop; one job per request at a time.
_RECEIVING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="stow-receive")


def _feed(receiver: StagingReceiver, chunks: list[bytes]) -> None:
    for chunk in chunks:
        receiver.feed(chunk)


async def _receive(request: Request, archive: Archive, preparing: _Preparing) -> None:
    boundary, part_type = _boundary(request)
    receiver = StagingReceiver(boundary, part_type, {DICOM}, archive.blobs,
                               what="multipart body", on_part=preparing)
    loop = asyncio.get_running_loop()
    feeding: asyncio.Future[None] | None = None
    held: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            held.append(chunk)
            size += len(chunk)
            if size >= FEED_BYTES:
                if feeding is not None:
                    await feeding
                feeding = loop.run_in_executor(_RECEIVING, _feed, receiver, held)
                held, size = [], 0
        if feeding is not None:
            await feeding
        await loop.run_in_executor(_RECEIVING, _finish, receiver, held)
    except BaseException as exc:
        if feeding is not None:
            await asyncio.wait([feeding])  # the thread must be done with the files it writes
        await run_in_threadpool(preparing.settle)
        receiver.abort()
        if isinstance(exc, MalformedMultipart):
            raise HTTPException(400, str(exc)) from exc
        raise


def _finish(receiver: StagingReceiver, chunks: list[bytes]) -> None:
    _feed(receiver, chunks)
    receiver.finish()


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
    preparing = _Preparing(archive, study, stow_admission(archive, principal(request),
                                                          source=client_ip(request)))
    await _receive(request, archive, preparing)
    if not preparing.slots:
        raise HTTPException(400, "the request holds no parts")
    outcomes = await run_in_threadpool(preparing.store)
    durability_event("ack", *(o.sop_instance_uid for o in outcomes if o.ok))
    body = _response_body(outcomes, dicomweb_base(request), study)
    return Response(orjson.dumps(body), status_code=_status(outcomes), media_type=DICOM_JSON)


routes = [
    Route("/studies", store_instances, methods=["POST"]),
    Route("/studies/{study}", store_instances, methods=["POST"]),
]
