"""JSON API for hospital-issued cloud films: ``/api/films`` (issue 12, part 1).

``POST /api/films`` ``{"study_uid", "valid_until"?, "pin"?}`` answers 201 with the film's
``url`` (``/s/<secret>``: the share-link route), ``qr_png_url``, ``slip_pdf_url`` and
``valid_until`` (null: no end date). ``GET /api/films?study_uid=`` lists a study's films,
``DELETE /api/films/{id}`` revokes one at once. Operators and admins only; the QR code and
the slip are for the desk too (the patient takes the printed slip home).
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.authn import require_user
from cloudfilm.api.people import OPERATORS, archive_of, call, int_param, json_body, respond
from cloudfilm.api.urls import site_base
from cloudfilm.domain.access import Principal
from cloudfilm.domain.clock import utcnow
from cloudfilm.services.access import share_card
from cloudfilm.services.access.films import FilmInfo, FilmService, film_json, parse_film_request

PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def issue_film(films: FilmService, who: Principal, body: dict[str, Any]) -> FilmInfo:
    uid, until, pin = parse_film_request(body, utcnow().date())
    return films.issue(who, uid, until, pin)


async def create_film(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    body = await json_body(request)
    info = await call(issue_film, FilmService(archive_of(request)), who, body)
    return respond(film_json(site_base(request), info), 201)


async def list_films(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    uid = request.query_params.get("study_uid", "").strip()
    if not uid:
        raise HTTPException(400, "give the study: ?study_uid=STUDY_INSTANCE_UID")
    films = await call(FilmService(archive_of(request)).list, who, uid)
    base = site_base(request)
    return respond([film_json(base, info) for info in films])


async def revoke_film(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    await call(FilmService(archive_of(request)).revoke, who,
               int_param(request.path_params["id"], "film id"))
    return Response(status_code=204)


async def qr_png(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    info = await call(FilmService(archive_of(request)).film, who,
                      int_param(request.path_params["id"], "film id"))
    body = await run_in_threadpool(share_card.qr_png, f"{site_base(request)}{info.path}")
    return Response(body, media_type="image/png", headers=PRIVATE)


routes = [
    Route("/films", create_film, methods=["POST"]),
    Route("/films", list_films, methods=["GET"]),
    Route("/films/{id}", revoke_film, methods=["DELETE"]),
    Route("/films/{id}/qr.png", qr_png, methods=["GET"]),
]  # /films/{id}/slip.pdf is rendered with the pages' words: web/films.py
