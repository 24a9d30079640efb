"""In-app notifications of the signed-in user.

``GET /api/me/notifications?unread=1&limit=``   delivered messages, newest first
``POST /api/me/notifications/{id}/read``        mark one read (idempotent); 404 if not theirs
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.audit import parse_int
from cloudfilm.api.errors import NotFound
from cloudfilm.services.context import Archive
from cloudfilm.services.notify.notifications import list_in_app, mark_read


def _archive(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


def _json(body: Any) -> Response:
    return Response(orjson.dumps(body), media_type="application/json")


def caller_user_id(request: Request) -> int:
    """The signed-in user's id: 401 without a principal, 403 for a share link (no account)."""
    principal = getattr(request.state, "principal", None)
    if principal is None or getattr(principal, "kind", "anonymous") == "anonymous":
        raise HTTPException(401, "sign in to read your notifications")
    user_id = getattr(principal, "user_id", None)
    if user_id is None:
        raise HTTPException(403, "notifications belong to user accounts")
    return int(user_id)


async def my_notifications(request: Request) -> Response:
    user_id = caller_user_id(request)
    unread = request.query_params.get("unread", "").lower() in {"1", "true", "yes"}
    limit = parse_int(request, "limit", 100, high=1000) or 100
    items = await run_in_threadpool(list_in_app, _archive(request).index, user_id,
                                    unread_only=unread, limit=limit)
    return _json(items)


async def read_notification(request: Request) -> Response:
    user_id = caller_user_id(request)
    try:
        notification_id = int(request.path_params["id"])
    except ValueError as exc:
        raise NotFound("notification") from exc
    item = await run_in_threadpool(mark_read, _archive(request).index, user_id, notification_id)
    if item is None:
        raise NotFound("notification")
    return _json(item)


routes = [
    Route("/me/notifications", my_notifications, methods=["GET"]),
    Route("/me/notifications/{id}/read", read_notification, methods=["POST"]),
]
