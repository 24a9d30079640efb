"""Rendered and thumbnail resources (PS3.18 §10.4.1.1.4 and §10.4.1.2.4/5).

``window``, ``viewport`` and ``quality`` follow PS3.18 §8.3.5.1; JPEG, PNG and GIF
are offered. A study or series thumbnail shows the middle image of its first
series; ``rendered`` at study or series level is a multipart of every instance's
first frame.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.access import view_study
from cloudfilm.api.errors import BadParameter, NotFound
from cloudfilm.api.media import parse_accept
from cloudfilm.api.multipart import multipart_content_type, new_boundary, stream_parts
from cloudfilm.services.archive.retrieve import NotStored, RetrieveService, StoredInstance
from cloudfilm.services.context import Archive
from cloudfilm.services.imaging.rendering import RenderOptions, parse_viewport, parse_window, render_frame

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif")
THUMBNAIL_VIEWPORT = (128, 128)


def _media_type(request: Request) -> str:
    for media in parse_accept(request.headers.get("accept")):
        if media.type in ("*/*", "image/*"):
            return "image/jpeg"
        if media.type in IMAGE_TYPES:
            return media.type
        if media.type == "multipart/related" and media.params.get("type") in IMAGE_TYPES:
            return media.params["type"]
    raise HTTPException(406, "rendered resources are available as image/jpeg, image/png or image/gif")


def _options(request: Request, thumbnail: bool) -> RenderOptions:
    params = request.query_params
    try:
        window = parse_window(params["window"]) if "window" in params else None
    except ValueError as exc:
        raise BadParameter("window", str(exc)) from exc
    try:
        viewport = parse_viewport(params["viewport"]) if "viewport" in params else None
    except ValueError as exc:
        raise BadParameter("viewport", str(exc)) from exc
    quality = None
    if "quality" in params:
        if not params["quality"].isdigit() or not 1 <= int(params["quality"]) <= 100:
            raise BadParameter("quality", "must be an integer from 1 to 100")
        quality = int(params["quality"])
    if thumbnail and viewport is None:
        viewport = THUMBNAIL_VIEWPORT
    return RenderOptions(media_type=_media_type(request), window=window, viewport=viewport,
                         quality=quality)


def _images(service: RetrieveService, path_params: dict[str, str]) -> list[StoredInstance]:
    study, series, sop = path_params["study"], path_params.get("series"), path_params.get("instance")
    # an instance (the viewer's previews) is one indexed read; a study or series lists its images
    items = [service.instance(study, series, sop)] if series and sop else service.instances(study, series)
    images = [i for i in items if i.number_of_frames > 0]
    if not images:
        raise NotStored("renderable image (no instance in scope has pixel data)")
    return images


def _representative(items: list[StoredInstance]) -> StoredInstance:
    first_series = [i for i in items if i.series_uid == items[0].series_uid]
    return first_series[len(first_series) // 2]


def _frame_numbers(request: Request, item: StoredInstance) -> list[int]:
    raw = request.path_params.get("frames")
    if raw is None:
        return [1]
    try:
        numbers = [int(n) for n in raw.split(",")]
    except ValueError:
        raise BadParameter("frames", f"{raw!r} is not a comma-separated list of frame numbers") from None
    if any(not 1 <= n <= item.number_of_frames for n in numbers):
        raise NotFound(f"frame {raw} of instance {item.sop_uid}")
    return numbers


def _render_frame(archive: Archive, item: StoredInstance, number: int,
                  options: RenderOptions) -> bytes:
    with archive.retrieve.open(item) as stream:
        return render_frame(stream, number, options)


def _render(request: Request, thumbnail: bool) -> Response:
    archive: Archive = request.app.state.archive
    options = _options(request, thumbnail)
    items = _images(archive.retrieve, dict(request.path_params))
    single_instance = "instance" in request.path_params
    if thumbnail or single_instance:
        item = _representative(items) if not single_instance else items[0]
        numbers = _frame_numbers(request, item)
        if len(numbers) == 1:
            return Response(_render_frame(archive, item, numbers[0], options),
                            media_type=options.media_type)
        rendered = [_render_frame(archive, item, n, options) for n in numbers]
    else:
        rendered = [_render_frame(archive, i, 1, options) for i in items]
    boundary = new_boundary()
    body = b"".join(stream_parts(boundary, ((options.media_type, [r]) for r in rendered)))
    return Response(body, media_type=multipart_content_type(options.media_type, boundary))


async def _view(request: Request) -> None:
    p = request.path_params
    await view_study(request, p["study"], p.get("series"), p.get("instance"))


async def rendered(request: Request) -> Response:
    await _view(request)
    try:
        return await run_in_threadpool(_render, request, False)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc


async def thumbnail(request: Request) -> Response:
    await _view(request)
    try:
        return await run_in_threadpool(_render, request, True)
    except NotStored as exc:
        raise NotFound(str(exc)) from exc


INSTANCE = "/studies/{study}/series/{series}/instances/{instance}"
routes = [
    Route(prefix + suffix, handler, methods=["GET"])
    for prefix in ("/studies/{study}", "/studies/{study}/series/{series}", INSTANCE,
                   INSTANCE + "/frames/{frames}")
    for suffix, handler in (("/rendered", rendered), ("/thumbnail", thumbnail))
]
