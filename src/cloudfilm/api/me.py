"""``GET /api/me``: who is signed in (the pages' scripts and API clients ask).

The login and logout forms and single sign-on are pages: web/login_pages.py.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import require_user


async def me(request: Request) -> Response:
    """Who am I: ``{"username", "role", "person_id"}`` (plus kind and acting_for)."""
    who = require_user(request, allow_share=True)
    return JSONResponse({"username": who.username, "role": who.role.value if who.role else None,
                         "person_id": who.own_person_id, "kind": who.kind,
                         "acting_for": sorted(who.acting_for)},
                        headers={"Cache-Control": "no-store"})


routes = [Route("/me", me, methods=["GET"])]  # mounted under /api
