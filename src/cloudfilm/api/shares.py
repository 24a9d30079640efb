"""JSON API for grants and share links: ``/api/shares`` (issue "People, access and sharing").

``POST /api/shares`` creates a link, link+PIN or named-physician share; ``GET`` lists the
caller's shares (and those of persons they act for) with open counts; ``renew`` keeps
the same URL and QR code; ``DELETE`` revokes at once. ``qr.png``, ``qr.svg`` and
``card.pdf`` render the link for the owner (the secret never leaves these owner-only
routes except as the URL itself); the card is printed in the pages' words by
web/card_words.py.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.authn import require_user
from cloudfilm.api.people import archive_of, call, int_param, json_body, respond
from cloudfilm.api.urls import site_base
from cloudfilm.domain.access import Principal
from cloudfilm.domain.clock import utcnow
from cloudfilm.services.access import share_card
from cloudfilm.services.access.sharing import (
    ABSENT,
    ShareInfo,
    SharingService,
    parse_share_request,
    parse_valid_until,
)

PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def share_json(request: Request, info: ShareInfo) -> dict[str, Any]:
    """A share for its owner: the absolute URL and QR code route for link shares."""
    data = info.as_dict()
    data.pop("link_path")
    data["url"] = f"{site_base(request)}{info.link_path}" if info.link_path else None
    data["qr_png"] = f"/api/shares/{info.id}/qr.png" if info.link_path else None
    data["card_pdf"] = f"/api/shares/{info.id}/card.pdf" if info.link_path else None
    return data


async def create_share(request: Request) -> Response:
    who = require_user(request)
    body = await json_body(request)
    sharing = SharingService(archive_of(request))
    share = await call(lambda: sharing.create(who, parse_share_request(body, utcnow().date())))
    return respond(share_json(request, share), 201)


async def list_shares(request: Request) -> Response:
    who = require_user(request)
    shares = await call(SharingService(archive_of(request)).list, who)
    return respond([share_json(request, s) for s in shares])


async def renew_share(request: Request) -> Response:
    """New end date (absent: 90 days from today; null: no end); the URL does not change."""
    who = require_user(request)
    body = await json_body(request)
    sharing = SharingService(archive_of(request))
    grant_id = int_param(request.path_params["id"], "share id")
    share = await call(lambda: sharing.renew(
        who, grant_id, parse_valid_until(body.get("valid_until", ABSENT), utcnow().date())))
    return respond(share_json(request, share))


async def revoke_share(request: Request) -> Response:
    who = require_user(request)
    await call(SharingService(archive_of(request)).revoke, who,
               int_param(request.path_params["id"], "share id"))
    return Response(status_code=204)


async def owned_link(request: Request) -> tuple[Principal, SharingService, ShareInfo, str]:
    """The caller's link share and its absolute URL; 404 for physician shares (no link)."""
    who = require_user(request)
    sharing = SharingService(archive_of(request))
    share = await call(sharing.get, who, int_param(request.path_params["id"], "share id"))
    if share.link_path is None:
        raise HTTPException(404, "this share has no link (it names a physician)")
    return who, sharing, share, f"{site_base(request)}{share.link_path}"


async def qr_png(request: Request) -> Response:
    *_, url = await owned_link(request)
    body = await run_in_threadpool(share_card.qr_png, url)
    return Response(body, media_type="image/png", headers=PRIVATE)


async def qr_svg(request: Request) -> Response:
    *_, url = await owned_link(request)
    body = await run_in_threadpool(share_card.qr_svg, url)
    return Response(body, media_type="image/svg+xml", headers=PRIVATE)


routes = [
    Route("/shares", create_share, methods=["POST"]),
    Route("/shares", list_shares, methods=["GET"]),
    Route("/shares/{id}/renew", renew_share, methods=["POST"]),
    Route("/shares/{id}", revoke_share, methods=["DELETE"]),
    Route("/shares/{id}/qr.png", qr_png, methods=["GET"]),
    Route("/shares/{id}/qr.svg", qr_svg, methods=["GET"]),
]  # /shares/{id}/card.pdf is printed in the pages' words: web/card_words.py
