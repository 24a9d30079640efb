"""WADO-URI (PS3.18 §9): ``/wado?requestType=WADO&studyUID=&seriesUID=&objectUID=``.

``contentType`` application/dicom returns the file (``transferSyntax`` as in
WADO-RS; default as stored, which is what XDS-I consumers expect); image/jpeg
(the default for images) and image/png render one frame with ``frameNumber``,
``windowCenter``/``windowWidth``, ``rows``/``columns`` and ``imageQuality``.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from cloudfilm.api.access import view_study
from cloudfilm.api.errors import BadParameter, NotFound
from cloudfilm.domain.transfer_syntax import EXPLICIT_LE
from cloudfilm.services import pixels
from cloudfilm.services.archive import Archive
from cloudfilm.services.rendering import RenderOptions, render_frame
from cloudfilm.services.retrieve import NotStored, StoredInstance

REQUIRED = ("studyUID", "seriesUID", "objectUID")


def _number(request: Request, name: str, default: float | None = None) -> float | None:
    value = request.query_params.get(name)
    if value is None:
        return default
    try:
        return float(value)
    except ValueError:
        raise BadParameter(name, f"{value!r} is not a number")


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


async def _find(request: Request) -> StoredInstance:
    archive: Archive = request.app.state.archive
    q = request.query_params
    await view_study(request, q["studyUID"], q["seriesUID"], q["objectUID"])
    try:
        items = await run_in_threadpool(archive.retrieve.instances, q["studyUID"], q["seriesUID"],
                                        q["objectUID"])
    except NotStored as exc:
        raise NotFound(str(exc)) from exc
    return items[0]


async def wado(request: Request) -> Response:
    q = request.query_params
    if q.get("requestType") != "WADO":
        raise BadParameter("requestType", "must be WADO")
    for name in REQUIRED:
        if not q.get(name):
            raise BadParameter(name, "is required")
    archive: Archive = request.app.state.archive
    item = await _find(request)
    content_types = [c.strip().split(";")[0] for c in q.get("contentType", "").split(",") if c.strip()]
    wanted = content_types[0] if content_types else ("image/jpeg" if item.number_of_frames else
                                                    "application/dicom")
    if wanted == "application/dicom":
        ts = q.get("transferSyntax", "*")
        if ts in ("*", item.transfer_syntax_uid):
            return StreamingResponse(archive.retrieve.file_chunks(item), media_type="application/dicom")
        if ts != EXPLICIT_LE:
            raise HTTPException(406, f"transcoding to {ts} is not supported")
        data = await run_in_threadpool(pixels.to_explicit_little_endian, archive.retrieve.path(item))
        return Response(data, media_type="application/dicom")
    if wanted not in ("image/jpeg", "image/png", "image/gif"):
        raise BadParameter("contentType", f"{wanted!r} is not offered (application/dicom, image/jpeg, image/png)")
    if not item.number_of_frames:
        raise HTTPException(406, f"instance {item.sop_uid} has no pixel data to render")
    frame = int(_number(request, "frameNumber", 1) or 1)
    if not 1 <= frame <= item.number_of_frames:
        raise BadParameter("frameNumber", f"must be between 1 and {item.number_of_frames}")
    data = await run_in_threadpool(render_frame, archive.retrieve.path(item), frame,
                                   _render_options(request, wanted))
    return Response(data, media_type=wanted)
