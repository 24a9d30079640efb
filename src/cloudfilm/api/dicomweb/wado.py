"""WADO-RS (PS3.18 §10.4): instances, metadata, frames, pixel data and bulk data.

Everything streams: instances part by part from disk, frames by byte range. Frames can
also be asked for as HTJ2K (services/imaging/transcode.py), one by one or a whole series at once.
"""

from __future__ import annotations

import functools
import gzip
import logging
from collections.abc import AsyncIterator, Iterator, Sequence

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from cloudfilm.api.access import describe, download_study, view_study
from cloudfilm.api.dicomweb.negotiation import (
    AS_STORED,
    FrameChoice,
    frame_choices,
    instance_transfer_syntax,
    wants_json,
)
from cloudfilm.api.errors import BadParameter, NotFound
from cloudfilm.api.multipart import (
    FilePart,
    FilePartsResponse,
    can_send_files,
    closing,
    in_thread_batches,
    multipart_content_type,
    new_boundary,
    part_header,
    stream_parts,
)
from cloudfilm.api.responses import DICOM_JSON, GZIP_MIN
from cloudfilm.api.urls import dicomweb_base, instance_url
from cloudfilm.domain.transfer_syntax import EXPLICIT_LE, FRAME_MEDIA_TYPES, is_native
from cloudfilm.services.archive.retrieve import NotStored, RetrieveService, StoredInstance
from cloudfilm.services.archive.series_metadata import MetadataBody, join_metadata
from cloudfilm.services.context import Archive
from cloudfilm.services.imaging import pixels, transcode

LOG = logging.getLogger(__name__)


def _service(request: Request) -> RetrieveService:
    archive: Archive = request.app.state.archive
    return archive.retrieve


def _uids(request: Request) -> tuple[str, str | None, str | None]:
    p = request.path_params
    return p["study"], p.get("series"), p.get("instance")


def _instance_uids(request: Request) -> tuple[str, str, str]:
    """Study, series and instance of a route that names all three (frames, bulk data)."""
    p = request.path_params
    return p["study"], p["series"], p["instance"]


async def _lookup(request: Request) -> list[StoredInstance]:
    """The instances in scope. Original Part-10 objects are a download at every level, one
    instance included: a view-only grant shows the images but never hands out the files."""
    study, series, sop = _uids(request)
    await download_study(request, study, series, sop)
    try:
        return await run_in_threadpool(_service(request).instances, *_uids(request))
    except NotStored as exc:
        raise NotFound(str(exc)) from exc


def _instance_part(service: RetrieveService, item: StoredInstance,
                   wanted: str) -> tuple[str, Iterator[bytes]]:
    if wanted in (AS_STORED, item.transfer_syntax_uid):
        return (f"application/dicom; transfer-syntax={item.transfer_syntax_uid}",
                service.file_chunks(item))
    return (f"application/dicom; transfer-syntax={EXPLICIT_LE}",
            iter([_explicit_little_endian(service, item)]))


def _explicit_little_endian(service: RetrieveService, item: StoredInstance) -> bytes:
    with service.open(item) as stream:
        return pixels.to_explicit_little_endian(stream)


async def retrieve_instances(request: Request) -> Response:
    """Study, series or instance as multipart/related; type="application/dicom"."""
    wanted = instance_transfer_syntax(request.headers.get("accept"))
    items = await _lookup(request)
    if wanted not in (AS_STORED, EXPLICIT_LE):
        unable = [i.sop_uid for i in items if i.transfer_syntax_uid != wanted]
        if unable:
            raise HTTPException(406, f"transcoding to transfer syntax {wanted} is not supported; "
                                     "ask for transfer-syntax=* (as stored) or "
                                     f"{EXPLICIT_LE} (uncompressed)")
    service, boundary = _service(request), new_boundary()
    as_stored = all(wanted in (AS_STORED, item.transfer_syntax_uid) for item in items)
    if as_stored and can_send_files(request.scope) and \
            await run_in_threadpool(_has_local_files, service, items):
        return FilePartsResponse(boundary, "application/dicom", [
            FilePart(f"application/dicom; transfer-syntax={item.transfer_syntax_uid}", item.size,
                     functools.partial(service.local_file, item)) for item in items])
    if as_stored:  # an object store: fetch the next objects while one is sent
        parts: Iterator[tuple[str, Iterator[bytes]]] = (
            (f"application/dicom; transfer-syntax={item.transfer_syntax_uid}", chunks)
            for item, chunks in service.files_read_ahead(items))
    else:
        parts = (_instance_part(service, item, wanted) for item in items)
    return StreamingResponse(in_thread_batches(stream_parts(boundary, parts)),
                             media_type=multipart_content_type("application/dicom", boundary))


def _has_local_files(service: RetrieveService, items: list[StoredInstance]) -> bool:
    """Whether the blob store keeps these files on this node (it does all or none). A blob
    that cannot be opened takes the streaming path, which reports it as it always has."""
    try:
        probe = service.local_file(items[0]) if items else None
    except OSError:
        return False
    if probe is None:
        return False
    probe.close()
    return True


def _metadata_body(service: RetrieveService, study: str, series: str | None, sop: str | None,
                   base: str, gzip_accepted: bool) -> tuple[MetadataBody, bool]:
    """A series' stored body when there is one; else joined from the instances, and
    whether it should be stored (a whole series not stored yet)."""
    whole_series = series is not None and sop is None
    if whole_series:
        stored = service.series_metadata.stored(study, str(series), base)
        if stored is not None:
            return stored, False
    identity = join_metadata(service.metadata(study, series, sop), base)
    packed = gzip.compress(identity, compresslevel=1) \
        if gzip_accepted and len(identity) >= GZIP_MIN else b""
    return MetadataBody(identity, packed), whole_series


async def retrieve_metadata(request: Request) -> Response:
    """DICOM JSON for every instance in scope, precomputed at ingest (PS3.18 §10.4.1.1.2);
    a series' answer is sent as stored, gzip or identity, never re-encoded."""
    wants_json(request.headers.get("accept"))
    study, series, sop = _uids(request)
    await view_study(request, study, series, sop)
    gzip_accepted = "gzip" in request.headers.get("accept-encoding", "")
    service, base = _service(request), dicomweb_base(request)
    try:
        body, store = await run_in_threadpool(_metadata_body, service, study, series, sop, base,
                                              gzip_accepted)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    # stored once this answer is sent, so building it never slows the answer down
    later = BackgroundTask(service.series_metadata.build_later, study, str(series), base) \
        if store else None
    headers = {"Vary": "Accept-Encoding"}
    if gzip_accepted and body.gzip and len(body.identity) >= GZIP_MIN:
        headers["Content-Encoding"] = "gzip"
        return Response(body.gzip, media_type=DICOM_JSON, headers=headers, background=later)
    return Response(body.identity, media_type=DICOM_JSON, headers=headers, background=later)


@functools.lru_cache(maxsize=64)
def _frame_choices(accept: str | None) -> tuple[FrameChoice, ...]:
    """``frame_choices`` remembered per Accept header: a viewer sends the same one with
    every frame, and parsing it costs more than finding the frame (issue 14)."""
    return tuple(frame_choices(accept))


def parse_frame_list(value: str) -> list[int]:
    try:
        numbers = [int(n) for n in value.split(",") if n.strip()]
    except ValueError:
        raise BadParameter("frames", f"{value!r} is not a comma-separated list of frame numbers") from None
    if not numbers or any(n < 1 for n in numbers):
        raise BadParameter("frames", "frame numbers start at 1")
    return numbers


class _CannotProduce(Exception):
    """One Accept choice cannot be met for a frame; the next one is tried."""


def _frame_as(service: RetrieveService, item: StoredInstance, number: int,
              choice: FrameChoice) -> tuple[str, bytes]:
    stored_ts = item.transfer_syntax_uid
    stored = service.stored_frame(item, number)
    as_stored = choice.transfer_syntax in (AS_STORED, stored_ts)
    if as_stored and stored is not None:
        media = "application/octet-stream" if choice.media_type == "application/octet-stream" \
            else FRAME_MEDIA_TYPES.get(stored_ts, "application/octet-stream")
        return f"{media}; transfer-syntax={stored_ts}", stored
    if choice.transfer_syntax in (AS_STORED, EXPLICIT_LE) and choice.media_type == "application/octet-stream":
        if stored is not None and stored_ts in (EXPLICIT_LE, "1.2.840.10008.1.2"):
            return f"application/octet-stream; transfer-syntax={EXPLICIT_LE}", stored
        data = service.decoded_frame(item, number)
        return f"application/octet-stream; transfer-syntax={EXPLICIT_LE}", data
    if choice.media_type == "image/jphc" and choice.transfer_syntax in transcode.TARGETS:
        try:
            data = transcode.htj2k_frame(service, item, number, choice.transfer_syntax)
        except transcode.NotTranscodable as exc:
            raise _CannotProduce(str(exc)) from exc
        return f"image/jphc; transfer-syntax={choice.transfer_syntax}", data
    raise _CannotProduce(f"frame of instance {item.sop_uid} is stored as {stored_ts}; "
                         f"transcoding to {choice.transfer_syntax} is not supported")


def frame_bytes(service: RetrieveService, item: StoredInstance, number: int,
                choices: Sequence[FrameChoice]) -> tuple[str, bytes]:
    """One frame in the first form the client accepts that we can make, else 406."""
    reasons = []
    for choice in choices:
        try:
            return _frame_as(service, item, number, choice)
        except _CannotProduce as exc:
            reasons.append(str(exc))
    raise HTTPException(406, "; ".join(dict.fromkeys(reasons)))


def _frames(service: RetrieveService, study: str, series: str, sop: str, numbers: list[int],
            choices: Sequence[FrameChoice]) -> list[tuple[str, bytes]]:
    item = service.instance(study, series, sop)
    if item.number_of_frames == 0:
        raise NotStored(f"frames of instance {sop} (it has no pixel data)")
    return [frame_bytes(service, item, n, choices) for n in numbers]


async def retrieve_frames(request: Request) -> Response:
    """Frames as multipart/related; type="application/octet-stream" (PS3.18 §10.4.1.1.3)."""
    numbers = parse_frame_list(request.path_params["frames"])
    choices = _frame_choices(request.headers.get("accept"))
    study, series, sop = _instance_uids(request)
    await view_study(request, study, series, sop)
    try:
        parts = await run_in_threadpool(_frames, _service(request), study, series, sop, numbers,
                                        choices)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    return _multipart(parts)


# HTJ2K pixels for cloudfilm's viewer are not kept in browser caches: not on shared
# devices, and a series' worth of frames (tens of MB) would push the viewer's own bundle out
# of a small cache. Other frame requests keep the default, ``private`` (no shared caches;
# api/security_headers.py): OHIF 3.13 aborts its own frame requests when told not to store
# them (every frame then reads as a failed request).
PIXEL_HEADERS = {"Cache-Control": "no-store"}
UNCACHED_PART_TYPES = frozenset({"image/jphc"})


def _multipart(parts: list[tuple[str, bytes]]) -> Response:
    """The parts as multipart/related, typed by what was produced (a client's first choice
    may have fallen back to a later one)."""
    part_type = parts[0][0].split(";")[0].strip() if parts else "application/octet-stream"
    boundary = new_boundary()
    body = b"".join(stream_parts(boundary, ((ct, [data]) for ct, data in parts)))
    return Response(body, media_type=multipart_content_type(part_type, boundary),
                    headers=PIXEL_HEADERS if part_type in UNCACHED_PART_TYPES else None)


# Small batches: a transcoded series should start flowing after a few frames, not 8 MB.
PIXELDATA_BATCH = 64 << 10


def _pixeldata_parts(service: RetrieveService, items: list[StoredInstance],
                     choices: Sequence[FrameChoice], base: str,
                     boundary: str) -> Iterator[bytes]:
    """Each frame of each instance as a part named by its frame URL (Content-Location).

    The first frame decides the status (406 if none of the client's choices fits it); the
    status line is sent before later frames are made, so a later frame that fits none is
    left out (and logged), and the client can ask for it alone.
    """
    first = True
    for listed in items:
        if listed.number_of_frames == 0:
            continue
        item = service.instance(listed.study_uid, listed.series_uid, listed.sop_uid)
        for number in range(1, item.number_of_frames + 1):
            try:
                content_type, data = frame_bytes(service, item, number, choices)
            except HTTPException as exc:
                if first:
                    raise
                LOG.warning("pixeldata: frame %d of %s left out: %s", number, item.sop_uid,
                            exc.detail)
                continue
            location = f"{instance_url(base, item.study_uid, item.series_uid, item.sop_uid)}" \
                       f"/frames/{number}"
            yield part_header(boundary, content_type, first, f"Content-Location: {location}\r\n")
            yield data
            first = False
    yield closing(boundary) if not first else f"--{boundary}--\r\n".encode("latin-1")


def _first_part(parts: Iterator[bytes]) -> list[bytes]:
    """The first frame's header and bytes: made before the status is sent, so a first
    frame that cannot be produced is still a proper 406."""
    return [next(parts), next(parts, b"")]


async def retrieve_pixeldata(request: Request) -> Response:
    """Every frame of a study, series or instance in one response (PS3.18 §10.4.1.1.6):
    one request instead of hundreds, which is what a viewer needs on a high-latency link."""
    choices = _frame_choices(request.headers.get("accept"))
    study, series, sop = _uids(request)
    await view_study(request, study, series, sop)
    service, boundary = _service(request), new_boundary()
    try:
        items = await run_in_threadpool(service.instances, study, series, sop)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    if not any(item.number_of_frames for item in items):
        raise NotFound(f"pixel data of {describe(study, series, sop)} (it has no images)")
    parts = _pixeldata_parts(service, items, choices, dicomweb_base(request), boundary)
    head = await run_in_threadpool(_first_part, parts)
    return StreamingResponse(_chain(head, in_thread_batches(parts, PIXELDATA_BATCH)),
                             media_type=multipart_content_type(choices[0].media_type, boundary),
                             headers=PIXEL_HEADERS)


async def _chain(head: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in head:
        yield chunk
    async for chunk in rest:
        yield chunk


def _bulk(service: RetrieveService, study: str, series: str, sop: str, path: list[str],
          choices: Sequence[FrameChoice]) -> list[tuple[str, bytes]]:
    item = service.instance(study, series, sop)
    if path == ["7FE00010"] and item.number_of_frames:
        if is_native(item.transfer_syntax_uid) and item.frames:
            ranges = [r for frame in item.frames for r in frame]
            data = b"".join(service.blobs.read_range(item.blob_key, o, n) for o, n in ranges)
            return [(f"application/octet-stream; transfer-syntax={item.transfer_syntax_uid}", data)]
        return [frame_bytes(service, item, n, choices) for n in range(1, item.number_of_frames + 1)]
    return [("application/octet-stream", service.bulk_value(item, path))]


async def retrieve_bulkdata(request: Request) -> Response:
    """The value behind a BulkDataURI from our metadata (PS3.18 §10.4.1.1.5)."""
    path = [p.upper() for p in request.path_params["path"].strip("/").split("/")]
    choices = _frame_choices(request.headers.get("accept"))
    study, series, sop = _instance_uids(request)
    await view_study(request, study, series, sop)
    try:
        parts = await run_in_threadpool(_bulk, _service(request), study, series, sop, path, choices)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    return _multipart(parts)


INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"
routes = [
    Route("/studies/{study}", retrieve_instances, methods=["GET"]),
    Route("/studies/{study}/series/{series}", retrieve_instances, methods=["GET"]),
    Route(INSTANCE, retrieve_instances, methods=["GET"]),
    Route("/studies/{study}/metadata", retrieve_metadata, methods=["GET"]),
    Route("/studies/{study}/series/{series}/metadata", retrieve_metadata, methods=["GET"]),
    Route(INSTANCE + "/metadata", retrieve_metadata, methods=["GET"]),
    Route(INSTANCE + "/frames/{frames}", retrieve_frames, methods=["GET"]),
    Route("/studies/{study}/pixeldata", retrieve_pixeldata, methods=["GET"]),
    Route("/studies/{study}/series/{series}/pixeldata", retrieve_pixeldata, methods=["GET"]),
    Route(INSTANCE + "/pixeldata", retrieve_pixeldata, methods=["GET"]),
    Route(INSTANCE + "/bulkdata/{path:path}", retrieve_bulkdata, methods=["GET"]),
]
