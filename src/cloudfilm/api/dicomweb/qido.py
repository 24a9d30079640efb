"""QIDO-RS: search for studies, series and instances (PS3.18 §10.6).

Answers ``application/dicom+json`` (PS3.18 §8.7.4; ``application/json`` when that is
all the client accepts). No match is ``200 []`` rather than the ``204`` PS3.18
also permits: viewers such as OHIF parse the body unconditionally, and an empty
array needs no special case. ``Warning: 299`` headers (PS3.18 §8.4.3) say when a
page was cut short by ``limit`` or by the server maximum (1000 results), and which
match keys were ignored. Database work runs in the thread pool, never on the
event loop.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.access import audit_query, visible_clause
from cloudfilm.api.errors import BadParameter, NotFound
from cloudfilm.api.media import parse_accept
from cloudfilm.api.responses import DICOM_JSON, json_bytes_response
from cloudfilm.api.urls import dicomweb_base
from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Query, QueryError, parse_query
from cloudfilm.services.archive.query import QueryService, SearchResult, UnknownResource, Visible

AGENT = "cloudfilm"
ACCEPTABLE = {DICOM_JSON, "application/json", "application/*", "*/*"}

Search = Callable[[QueryService, Query, str, Visible], SearchResult]


def negotiate(request: Request) -> str:
    """The response media type, or 406 (PS3.18 §8.7.3); the ``accept`` parameter wins (§8.3.3.1).

    The most preferred acceptable range decides: ``application/json`` alone gets that
    label, anything else that fits gets ``application/dicom+json``.
    """
    header = request.query_params.get("accept") or request.headers.get("accept")
    for media in parse_accept(header):
        if media.type in ACCEPTABLE and not media.params.get("type"):
            return "application/json" if media.type == "application/json" else DICOM_JSON
    raise HTTPException(
        406, f"QIDO-RS answers {DICOM_JSON} (or application/json); not acceptable: {header}"
    )


def warnings(result: SearchResult) -> list[str]:
    """``Warning: 299`` values for truncation and ignored keys (PS3.18 §8.3.4.4, §8.4.3)."""
    found = []
    next_offset = result.offset + len(result.items)
    if result.truncated and result.capped:
        found.append(
            f'299 {AGENT} "The number of results exceeded the maximum supported by the server '
            f'({result.limit}). Additional results can be requested with offset={next_offset}."'
        )
    elif result.truncated:
        found.append(
            f'299 {AGENT} "More results match than the limit of {result.limit}. '
            f'Additional results can be requested with offset={next_offset}."'
        )
    if result.ignored:
        found.append(
            f'299 {AGENT} "The following query keys were ignored: {", ".join(result.ignored)}"'
        )
    return found


async def _search(request: Request, level: Level, search: Search) -> Response:
    """Shared handler: negotiate, parse, search in a thread, answer with warnings."""
    media_type = negotiate(request)
    try:
        query = parse_query(request.query_params.multi_items(), level)
    except QueryError as exc:
        raise BadParameter(exc.parameter, exc.problem) from None
    service: QueryService = request.app.state.archive.query
    visible = await visible_clause(request)
    try:
        result = await run_in_threadpool(search, service, query, dicomweb_base(request), visible)
    except UnknownResource as exc:
        raise NotFound(exc.what) from None
    await audit_query(request, request.path_params.get("study"),
                      {"level": level.name.lower(), "query": str(request.query_params),
                       "results": len(result.items)})
    response = json_bytes_response(request, orjson.dumps(result.items), media_type=media_type)
    for warning in warnings(result):
        response.headers.append("Warning", warning)
    return response


async def search_studies(request: Request) -> Response:
    return await _search(
        request,
        Level.STUDY,
        lambda service, query, base, visible: service.search_studies(
            query, base_url=base, visible=visible),
    )


async def search_series(request: Request) -> Response:
    study = request.path_params.get("study")
    return await _search(
        request,
        Level.SERIES,
        lambda service, query, base, visible: service.search_series(
            query, study, base_url=base, visible=visible),
    )


async def search_instances(request: Request) -> Response:
    study, series = request.path_params.get("study"), request.path_params.get("series")
    return await _search(
        request,
        Level.IMAGE,
        lambda service, query, base, visible: service.search_instances(
            query, study, series, base_url=base, visible=visible),
    )


routes: list[Route] = [
    Route("/studies", search_studies, methods=["GET"]),
    Route("/studies/{study}/series", search_series, methods=["GET"]),
    Route("/series", search_series, methods=["GET"]),
    Route("/studies/{study}/series/{series}/instances", search_instances, methods=["GET"]),
    Route("/studies/{study}/instances", search_instances, methods=["GET"]),
    Route("/instances", search_instances, methods=["GET"]),
]
