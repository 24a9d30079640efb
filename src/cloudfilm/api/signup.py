"""JSON API to keep a cloud film for life (issue 12, parts 2 and 3).

- ``POST /api/signup`` with ``{"username", "password", "display_name", "birth_date",
  "film_url"}`` (or ``"claim_code"`` in place of ``film_url``): 201, a patient account
  whose folder holds the film's hospital record, signed in at once (the session cookie
  and its CSRF cookie, as after a login). With ``{"invitation"}`` in place of the film
  and birth date, a family helper's account that accepts the patient's invitation link.
- ``POST /api/me/films`` with ``{"film_url" | "claim_code", "birth_date"}`` (optional
  ``"person"`` for a family helper): a signed-in patient keeps a film's record; 201.
  ``POST /api/me/claim`` stays for a bare claim code.
- ``POST /api/me/caregiver-invites`` with ``{}``: ``{"url"}`` of a single-use invitation
  link: the same handler as ``POST /api/me/caregivers`` (api/people.py).

Why JSON only for sign-up: a cross-site form cannot send ``application/json`` without a
CORS preflight, which this server never grants, so nobody can sign a visitor in to an
account of theirs (login CSRF); the portal's form uses the pre-session token of
web/login_pages.py instead.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import SESSION_COOKIE, client_ip, require_user, set_session_cookies
from cloudfilm.api.people import archive_of, call, int_param, invite_caregiver, json_body, respond
from cloudfilm.services.access.accounts import accounts_of
from cloudfilm.services.access.signup import NewAccount, SignedUp, SignupService


def text(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise HTTPException(400, f"{name} must be text")
    return value or ""


async def sign_up_from(request: Request, body: dict[str, Any]) -> SignedUp:
    """A patient (film or claim code + birth date) or a family helper (invitation)."""
    service, source = SignupService(archive_of(request)), client_ip(request)
    account = NewAccount(text(body, "username"), text(body, "password"),
                         text(body, "display_name"))
    if text(body, "invitation"):
        return await call(service.sign_up_caregiver, account, text(body, "invitation"), source)
    return await call(service.sign_up, account, text(body, "film_url"),
                      text(body, "claim_code"), text(body, "birth_date"), source)


async def start_session(request: Request, response: Response, done: SignedUp) -> None:
    """Signed in at once, exactly as after a login (a fresh session id; an old one ends)."""
    accounts = accounts_of(archive_of(request))
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await run_in_threadpool(accounts.revoke_session, old)
    session_id, csrf = await run_in_threadpool(
        lambda: accounts.create_session(user_id=done.user_id, source=client_ip(request)))
    user = await run_in_threadpool(accounts.get_user, done.username)
    if user is not None:
        await run_in_threadpool(accounts.record_login, user, client_ip(request), "sign-up")
    set_session_cookies(response, request, session_id, csrf)


async def sign_up(request: Request) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(415, "send the sign-up as application/json")
    done = await sign_up_from(request, await json_body(request))
    response = JSONResponse(done.as_dict(), status_code=201, headers={"Cache-Control": "no-store"})
    await start_session(request, response, done)
    return response


async def keep_film(request: Request) -> Response:
    """A signed-in patient confirms the birth date: the film's record joins their folder."""
    who = require_user(request)
    body = await json_body(request)
    person = body.get("person")
    record = await call(SignupService(archive_of(request)).keep, who, text(body, "film_url"),
                        text(body, "claim_code"), text(body, "birth_date"), client_ip(request),
                        int_param(person, "person") if person is not None else None)
    return respond(record.as_dict(), 201)


routes = [  # mounted under /api
    Route("/signup", sign_up, methods=["POST"]),
    Route("/me/films", keep_film, methods=["POST"]),
    Route("/me/caregiver-invites", invite_caregiver, methods=["POST"]),
]
