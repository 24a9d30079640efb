"""Login and logout pages and single sign-on (``GET /api/me`` is api/me.py).

Why server-rendered forms: they work without JavaScript, with a screen reader and on
old phones. The login form is protected against login CSRF by a pre-session token: a
random HttpOnly cookie, and in the form its HMAC under the server key (so a cookie
planted by a sibling site is useless without the matching form value).
"""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import (
    SESSION_COOKIE,
    clear_session_cookies,
    client_ip,
    principal,
    set_session_cookies,
    wants_secure_cookies,
)
from cloudfilm.domain.access import ANONYMOUS
from cloudfilm.i18n import N_, localizer
from cloudfilm.services.access import credentials
from cloudfilm.services.access.accounts import (
    DEVICE_COOKIE_AGE,
    AccountService,
    LockedOut,
    LoginFailed,
    User,
    accounts_of,
)
from cloudfilm.services.access.oidc import OidcError, OidcLogin
from cloudfilm.services.context import Archive
from cloudfilm.web.guides import guide
from cloudfilm.web.templating import render

PRESESSION_COOKIE = "cf_presession"
OIDC_COOKIE = "cf_oidc"
DEVICE_COOKIE = "cf_device"  # this browser signed in before (services/access/accounts.py)
PRESESSION_MAX_AGE = 2 * 3600


def _archive(conn: HTTPConnection) -> Archive:
    return conn.app.state.archive  # type: ignore[no-any-return]


def _accounts(conn: HTTPConnection) -> AccountService:
    return accounts_of(_archive(conn))


# --- pre-session CSRF (also for other pre-login forms, e.g. a share link's PIN) ------------

def _presession_token(key: bytes, nonce: str) -> str:
    return hmac.new(key, f"presession-csrf:{nonce}".encode(), hashlib.sha256).hexdigest()


def presession_csrf(conn: HTTPConnection) -> tuple[str, str]:
    """(cookie nonce, form token): the browser's existing nonce, or a new one to set."""
    nonce = conn.cookies.get(PRESESSION_COOKIE) or credentials.new_token()
    return nonce, _presession_token(_archive(conn).server_key, nonce)


def set_presession_cookie(response: Response, conn: HTTPConnection, nonce: str) -> None:
    response.set_cookie(PRESESSION_COOKIE, nonce, max_age=PRESESSION_MAX_AGE, path="/",
                        httponly=True, samesite="lax", secure=wants_secure_cookies(conn))


def presession_csrf_ok(conn: HTTPConnection, token: str) -> bool:
    """Does the form token belong to this browser's pre-session cookie?"""
    nonce = conn.cookies.get(PRESESSION_COOKIE)
    if not nonce or not token:
        return False
    return hmac.compare_digest(_presession_token(_archive(conn).server_key, nonce), token)


# --- pages ---------------------------------------------------------------------------------

def safe_next(value: str | None) -> str:
    """Only local paths: no scheme, no host, no backslash tricks (open-redirect guard)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value \
            or any(ord(c) < 32 for c in value):
        return "/"
    return value


def page(conn: HTTPConnection, heading: str, status: int = 200, *, detail: str = "",
         link: tuple[str, str] | None = None) -> HTMLResponse:
    """A one-message page in the visitor's language (the portal's templates)."""
    response = render(conn, "message.html", {"title": heading, "heading": heading,
                                             "detail": detail, "link": link},
                      status=status, anonymous=True)
    response.headers["Cache-Control"] = "no-store"
    return response


def _oidc(conn: HTTPConnection) -> OidcLogin | None:
    """The configured provider (``Settings.oidc``, made once per app), or None."""
    state = conn.app.state
    if not hasattr(state, "oidc_login"):
        archive = _archive(conn)
        config = archive.settings.oidc
        state.oidc_login = OidcLogin(config, archive.server_key) if config else None
    return state.oidc_login  # type: ignore[no-any-return]


def _form_page(conn: HTTPConnection, status: int = 200, *, username: str = "",
               next_path: str = "/", message: str = "") -> HTMLResponse:
    """The sign-in form (a pre-session CSRF token in it), in the visitor's language."""
    nonce, token = presession_csrf(conn)
    loc = localizer(conn)
    response = render(conn, "login.html", {
        "title": loc.gettext("Sign in"), "token": token, "username": username,
        "next_path": next_path, "message": message, "sso": _oidc(conn) is not None,
        "guide": guide("login", loc)}, status=status, anonymous=True)
    set_presession_cookie(response, conn, nonce)
    return response


async def login_page(request: Request) -> Response:
    return _form_page(request, next_path=safe_next(request.query_params.get("next")))


def _lockout_message(conn: HTTPConnection, until: datetime) -> str:
    minutes = max(1, math.ceil((until - datetime.now(UTC)).total_seconds() / 60))
    return localizer(conn).ngettext("too many failed attempts; try again in %(num)s minute",
                                    "too many failed attempts; try again in %(num)s minutes",
                                    minutes)


async def login_submit(request: Request) -> Response:
    form = await request.form()
    username, password = str(form.get("username", "")), str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "/")))
    if not presession_csrf_ok(request, str(form.get("csrf", ""))):
        return _form_page(request, 403, username=username, next_path=next_path,
                          message=localizer(request).gettext(
                              "This sign-in form expired. Please sign in again."))
    try:
        user = await run_in_threadpool(_accounts(request).authenticate, username, password,
                                       client_ip(request), request.cookies.get(DEVICE_COOKIE, ""))
    except LockedOut as exc:
        locked = _form_page(request, 429, username=username, next_path=next_path,
                            message=_lockout_message(request, exc.until))
        locked.headers["Retry-After"] = str(max(1, int(
            (exc.until - datetime.now(UTC)).total_seconds())))
        return locked
    except LoginFailed:
        return _form_page(request, 401, username=username, next_path=next_path,
                          message=localizer(request).gettext("Wrong username or password."))
    response = await _start_session(request, user, next_path)
    _remember_device(response, request, user)
    return response


def _remember_device(response: Response, conn: HTTPConnection, user: User) -> None:
    """A signed device cookie: this browser's later tries skip the account's shared back-off."""
    cookie = _accounts(conn).device_cookie(user.username)
    if cookie:
        response.set_cookie(DEVICE_COOKIE, cookie, max_age=int(DEVICE_COOKIE_AGE.total_seconds()),
                            path="/login", httponly=True, samesite="lax",
                            secure=wants_secure_cookies(conn))


async def _start_session(request: Request, user: User, next_path: str) -> Response:
    """A fresh session id on every login (no fixation); any old one from this browser ends."""
    accounts = _accounts(request)
    old = request.cookies.get(SESSION_COOKIE)
    if old:
        await run_in_threadpool(accounts.revoke_session, old)
    session_id, csrf = await run_in_threadpool(
        lambda: accounts.create_session(user_id=user.id, source=client_ip(request)))
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookies(response, request, session_id, csrf)
    response.delete_cookie(PRESESSION_COOKIE, path="/")
    return response


async def logout(request: Request) -> Response:
    """End the cookie session (the middleware already checked its CSRF token)."""
    who = principal(request)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id and getattr(request.state, "auth_method", None) == "session":
        accounts = _accounts(request)
        await run_in_threadpool(accounts.revoke_session, session_id)
        if who is not ANONYMOUS:
            await run_in_threadpool(accounts.record_logout, who, client_ip(request))
    response = RedirectResponse("/login", status_code=303)
    clear_session_cookies(response, request)
    return response


# --- single sign-on -----------------------------------------------------------------------

def _redirect_uri(request: Request) -> str:
    public = _archive(request).settings.public_url
    if public:
        return f"{public.rstrip('/')}/oidc/callback"
    return str(request.url_for("oidc_callback"))


async def oidc_login(request: Request) -> Response:
    oidc = _oidc(request)
    loc = localizer(request)
    if oidc is None:
        return page(request, loc.gettext("Single sign-on is not configured"), 404,
                    link=("/login", loc.gettext("Sign in with a password")))
    try:
        response, sealed = await oidc.start(request, _redirect_uri(request),
                                            safe_next(request.query_params.get("next")))
    except OidcError as exc:
        return page(request, loc.gettext("Single sign-on failed"), 502, detail=str(exc),
                    link=("/login", loc.gettext("Back to sign in")))
    response.set_cookie(OIDC_COOKIE, sealed, max_age=600, path="/oidc", httponly=True,
                        samesite="lax", secure=wants_secure_cookies(request))
    return response


def _sso_failed(conn: HTTPConnection, message: str, status: int) -> Response:
    loc = localizer(conn)
    response = page(conn, loc.gettext("Single sign-on failed"), status,
                    detail=loc.gettext(message), link=("/login", loc.gettext("Back to sign in")))
    response.delete_cookie(OIDC_COOKIE, path="/oidc")
    return response


async def oidc_callback(request: Request) -> Response:
    oidc, accounts, source = _oidc(request), _accounts(request), client_ip(request)
    if oidc is None:
        return _sso_failed(request, N_("single sign-on is not configured"), 404)
    try:
        claims, next_path = await oidc.finish(request, request.cookies.get(OIDC_COOKIE))
    except OidcError as exc:
        await run_in_threadpool(accounts.record_failed_login, "oidc", source,
                                {"method": "oidc", "reason": str(exc)[:200]})
        return _sso_failed(request, str(exc), 400)
    user = await run_in_threadpool(oidc.match_user, accounts, claims)
    if user is None:
        actor = f"oidc:{claims.get('preferred_username') or claims['sub']}"
        await run_in_threadpool(accounts.record_failed_login, actor, source,
                                {"method": "oidc", "reason": "no linked account",
                                 "subject": str(claims["sub"])[:200]})
        return _sso_failed(request, N_("No cloudfilm account is linked to this sign-in. Ask an "
                                       "administrator to link it."), 403)
    await run_in_threadpool(accounts.record_login, user, source, "oidc")
    response = await _start_session(request, user, safe_next(next_path))
    response.delete_cookie(OIDC_COOKIE, path="/oidc")
    return response


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/oidc/login", oidc_login, methods=["GET"]),
    Route("/oidc/callback", oidc_callback, methods=["GET"], name="oidc_callback"),
]
