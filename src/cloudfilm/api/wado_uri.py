"""WADO-URI (PS3.18 §9): ``/wado?requestType=WADO&studyUID=&seriesUID=&objectUID=``.

``contentType`` application/dicom returns the file (``transferSyntax`` as in
WADO-RS; default as stored, which is what XDS-I consumers expect); image/jpeg
(the default for images) and image/png render one frame with ``frameNumber``,
``windowCenter``/``windowWidth``, ``rows``/``columns`` and ``imageQuality``. The file
needs the download permission, a rendered frame the view permission.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cloudfilm.api.access import audit, audit_view, download_study, require_study
from cloudfilm.api.errors import BadParameter, NotFound
from cloudfilm.domain.access import Permission
from cloudfilm.domain.transfer_syntax import EXPLICIT_LE
from cloudfilm.services.archive.retrieve import NotStored, StoredInstance
from cloudfilm.services.context import Archive
from cloudfilm.services.imaging import pixels
from cloudfilm.services.imaging.rendering import RenderOptions, render_frame

REQUIRED = ("studyUID", "seriesUID", "objectUID")
DICOM = "application/dicom"
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif")


def _number(request: Request, name: str, default: float | None = None) -> float | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a number") from None


def _render_options(request: Request, media_type: str) -> RenderOptions:
    center, width = _number(request, "windowCenter"), _number(request, "windowWidth")
    if (center is None) != (width is None):
        raise BadParameter("windowWidth" if width is None else "windowCenter",
                           "windowCenter and windowWidth go together")
    rows, columns = _number(request, "rows"), _number(request, "columns")
    viewport = None
    if rows or columns:
        viewport = (int(columns or rows or 0), int(rows or columns or 0))
    quality = _number(request, "imageQuality")
    return RenderOptions(media_type=media_type,
                         window=(center, width, "LINEAR") if center is not None and width is not None else None,
                         viewport=viewport, quality=int(quality) if quality else None)


def _content_type(request: Request) -> str | None:
    """The first ``contentType`` asked for, or None when the caller left it to us."""
    asked = [c.split(";")[0].strip() for c in request.query_params.get("contentType", "").split(",")]
    return next((c for c in asked if c), None)


async def _find(request: Request, asked: str | None) -> tuple[StoredInstance, str]:
    """The instance and what it is sent as, once the caller may have it.

    The file itself (application/dicom) needs DOWNLOAD and is audited as a download; a
    rendered frame needs VIEW. Without a ``contentType`` an image is rendered and any other
    object (a report, a document) is the file, so the permission follows the instance.
    """
    archive: Archive = request.app.state.archive
    q = request.query_params
    study, series, sop = q["studyUID"], q["seriesUID"], q["objectUID"]
    checked = Permission.DOWNLOAD if asked == DICOM else Permission.VIEW
    decision = await require_study(request, checked, study, series, sop)
    try:
        items = await run_in_threadpool(archive.retrieve.instances, study, series, sop)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    wanted = asked or ("image/jpeg" if items[0].number_of_frames else DICOM)
    if wanted != DICOM:
        if wanted in IMAGE_TYPES:
            await audit_view(request, decision, study)
    elif checked is Permission.DOWNLOAD:
        await audit(request, "download", decision, study)
    else:
        await download_study(request, study, series, sop)
    return items[0], wanted


def _explicit_little_endian(archive: Archive, item: StoredInstance) -> bytes:
    with archive.retrieve.open(item) as stream:
        return pixels.to_explicit_little_endian(stream)


def _render(archive: Archive, item: StoredInstance, frame: int, options: RenderOptions) -> bytes:
    with archive.retrieve.open(item) as stream:
        return render_frame(stream, frame, options)


async def wado(request: Request) -> Response:
    q = request.query_params
    if q.get("requestType") != "WADO":
        raise BadParameter("requestType", "must be WADO")
    for name in REQUIRED:
        if not q.get(name):
            raise BadParameter(name, "is required")
    archive: Archive = request.app.state.archive
    item, wanted = await _find(request, _content_type(request))
    if wanted == DICOM:
        ts = q.get("transferSyntax", "*")
        if ts in ("*", item.transfer_syntax_uid):
            return StreamingResponse(archive.retrieve.file_chunks(item), media_type=DICOM)
        if ts != EXPLICIT_LE:
            raise HTTPException(406, f"transcoding to {ts} is not supported")
        data = await run_in_threadpool(_explicit_little_endian, archive, item)
        return Response(data, media_type=DICOM)
    if wanted not in IMAGE_TYPES:
        raise BadParameter("contentType", f"{wanted!r} is not offered (application/dicom, image/jpeg, image/png)")
    if not item.number_of_frames:
        raise HTTPException(406, f"instance {item.sop_uid} has no pixel data to render")
    frame = int(_number(request, "frameNumber", 1) or 1)
    if not 1 <= frame <= item.number_of_frames:
        raise BadParameter("frameNumber", f"must be between 1 and {item.number_of_frames}")
    data = await run_in_threadpool(_render, archive, item, frame, _render_options(request, wanted))
    return Response(data, media_type=wanted)
