"""Who is asking: bearer tokens and session cookies become a Principal on every request.

Why a middleware: every route (DICOMweb, JSON API, pages) must see the same principal,
resolved once. It identifies; routes decide with ``require_user`` or ``api/access.py``
(the policy). Three things it refuses on its own, for every route: an anonymous
request to anything but the login page, link opening, sign-on and the health check
(401, or a redirect to /login for a page); an
``Authorization: Bearer`` token that is not live (401, so a client notices); and an
unsafe request authenticated by the session cookie without the session's CSRF token
(403; the token comes in the ``X-CSRF-Token`` header or a ``csrf`` form field — in
multipart forms put that field first).

Credentials are resolved through ``ReadAccess`` (services/access/read_access.py): one
read of the index's access epoch per request, then a per-process memory of live
credentials that any change narrowing access invalidates on every node at once. The
epoch goes into the request's state (``access_epoch``) for the study check.

It is also where refusals are audited, once for every route: whatever answers 401 or
403 -- this middleware, ``require_user``, a handler -- leaves an ``access-denied``
failure record (``audit_refusal``), unless the route recorded its own failure. Policy
refusals answer 404 and are audited per study in ``api/access.py``.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudfilm.domain.access import ANONYMOUS, Principal, Role
from cloudfilm.services.access import credentials
from cloudfilm.services.access.accounts import ResolvedSession, principal_for_user
from cloudfilm.services.access.people import audit_entry
from cloudfilm.services.access.read_access import ReadAccess, read_access_of
from cloudfilm.services.audit.log import failures_recorded

__all__ = [
    "CSRF_COOKIE",
    "CSRF_EXEMPT_PATHS",
    "SESSION_COOKIE",
    "AuthenticationMiddleware",
    "clear_session_cookies",
    "client_ip",
    "principal",
    "principal_for_user",
    "require_user",
    "set_session_cookies",
    "wants_secure_cookies",
]

log = logging.getLogger(__name__)

SESSION_COOKIE = "cf_session"
CSRF_COOKIE = "cf_csrf"          # readable by page scripts, to echo in X-CSRF-Token
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# Routes that check a pre-session CSRF token of their own (no session exists yet), and
# link opening, which checks the Origin itself and is guarded by the link's secret.
CSRF_EXEMPT_PATHS: set[str] = {"/login", "/signup", "/code"}
CSRF_EXEMPT_PREFIXES = ("/s/",)
# Everything else needs a principal: the login page, link opening, sign-on callbacks,
# the health check and the portal's static files (no patient data) are all that an
# anonymous caller may reach.
PUBLIC_PATHS = frozenset({"/login", "/logout", "/healthz", "/favicon.ico",
                          "/signup", "/api/signup", "/keep", "/claim",
                          "/code"})  # issue 12: sign-up, typing a film's code
# The portal's CSS, scripts and pictures; a caregiver invitation, which a newcomer opens.
PUBLIC_PREFIXES = ("/s/", "/oidc/", "/static/portal/", "/caregivers/join/")
MACHINE_PREFIXES = ("/api/", "/dicomweb", "/wado")  # answer 401, not a login redirect
FORM_PREFIX_LIMIT = 64 * 1024
REFUSALS = frozenset({401, 403})
REASON_BYTES = 1024
_TOKENISH = re.compile(r"(?=[^/]*[A-Za-z])[A-Za-z0-9_-]{32,}")  # not a DICOM UID (digits, dots)
_MULTIPART_CSRF = re.compile(rb'name="csrf"\r\n(?:[^\r\n]+\r\n)*\r\n([^\r\n]*)\r\n')


def client_ip(conn: HTTPConnection) -> str:
    """The peer address (uvicorn already applied X-Forwarded-For from trusted proxies)."""
    return conn.client.host if conn.client else ""


def wants_secure_cookies(conn: HTTPConnection) -> bool:
    """HTTPS directly, or behind a proxy that says so."""
    forwarded = conn.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
    return conn.scope.get("scheme") == "https" or forwarded == "https"  # not conn.url: parsed


def set_session_cookies(response: Response, conn: HTTPConnection, session_id: str,
                        csrf: str) -> None:
    """The session id HttpOnly; the CSRF token readable by scripts; both SameSite=Lax."""
    secure = wants_secure_cookies(conn)
    response.set_cookie(SESSION_COOKIE, session_id, httponly=True, samesite="lax", secure=secure,
                        path="/")
    response.set_cookie(CSRF_COOKIE, csrf, httponly=False, samesite="lax", secure=secure,
                        path="/")


def clear_session_cookies(response: Response, conn: HTTPConnection) -> None:
    secure = wants_secure_cookies(conn)
    for name in (SESSION_COOKIE, CSRF_COOKIE):
        response.delete_cookie(name, path="/", secure=secure, httponly=name == SESSION_COOKIE,
                               samesite="lax")


def principal(conn: HTTPConnection) -> Principal:
    """The request's principal (anonymous when the middleware found none)."""
    return getattr(conn.state, "principal", ANONYMOUS)


def require_user(request: HTTPConnection, roles: Iterable[Role | str] | None = None, *,
                 allow_share: bool = False) -> Principal:
    """The logged-in user, or a JSON 401 (not logged in) / 403 (role not allowed)."""
    who = principal(request)
    if who.kind == "anonymous" or (who.kind == "share" and not allow_share) \
            or who.kind not in ("user", "share"):
        raise HTTPException(401, "authentication required: log in at /login or send "
                                 "'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": 'Bearer realm="cloudfilm"'})
    allowed = {Role(r) for r in roles} if roles is not None else None
    if allowed is not None and who.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise HTTPException(403, f"forbidden: this needs one of the roles {names}; "
                                 f"you are {who.role.value if who.role else who.kind}")
    return who


def _bearer(conn: HTTPConnection) -> str | None:
    scheme, _, value = conn.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"status": status, "error": message}, status_code=status, headers=headers)


class AuthenticationMiddleware:
    """Pure ASGI, so streaming bodies (STOW) pass through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with failures_recorded() as recorded:

            async def audit_unless_recorded(status: int, reason: str) -> None:
                if recorded:
                    return
                try:
                    await run_in_threadpool(audit_refusal, scope, status, reason)
                except Exception:  # answering the refusal goes on; keep the trace
                    log.exception("could not audit the refusal of %s %s", scope["method"],
                                  route_of(scope["path"]))

            await self._identify(scope, receive, _WatchedResponse(send, audit_unless_recorded))

    async def _identify(self, scope: Scope, receive: Receive, send: Send) -> None:
        conn = HTTPConnection(scope)
        access = read_access_of(scope["app"].state.archive)
        scope.setdefault("state", {})
        token = _bearer(conn)
        if token is not None:
            await self._with_token(access, token, scope, receive, send)
            return
        session_id = conn.cookies.get(SESSION_COOKIE)
        resolved: ResolvedSession | None = None
        epoch: int | None = None
        if session_id:
            remembered = access.remembered_session(session_id)
            resolved, epoch = remembered if remembered is not None else \
                await run_in_threadpool(access.session, session_id)
        if resolved is None:
            scope["state"].update(principal=ANONYMOUS, auth_method=None, csrf_token=None)
            if not is_public(scope["path"]):
                await _unauthenticated(conn)(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        scope["state"]["access_epoch"] = epoch
        await self._with_session(conn, resolved, scope, receive, send)

    async def _with_token(self, access: ReadAccess, token: str, scope: Scope,
                          receive: Receive, send: Send) -> None:
        remembered = access.remembered_token(token)
        who, epoch = remembered if remembered is not None else \
            await run_in_threadpool(access.token, token)
        if who is None:
            response = _error(401, "invalid, expired or revoked bearer token", {
                "WWW-Authenticate": 'Bearer realm="cloudfilm", error="invalid_token"'})
            await response(scope, receive, send)
            return
        scope["state"].update(principal=who, auth_method="token", csrf_token=None,
                              access_epoch=epoch)
        await self.app(scope, receive, send)

    async def _with_session(self, conn: HTTPConnection, resolved: ResolvedSession, scope: Scope,
                            receive: Receive, send: Send) -> None:
        cookie_csrf = conn.cookies.get(CSRF_COOKIE, "")
        scope["state"].update(
            principal=resolved.principal, auth_method="session",
            csrf_token=cookie_csrf if cookie_csrf and _matches(resolved.csrf_hash, cookie_csrf)
            else None)
        if scope["method"] in SAFE_METHODS or scope["path"] in CSRF_EXEMPT_PATHS \
                or scope["path"].startswith(CSRF_EXEMPT_PREFIXES):
            await self.app(scope, receive, send)
            return
        presented, receive = await _presented_csrf(conn, receive)
        if not presented or not _matches(resolved.csrf_hash, presented):
            response = _error(403, "missing or invalid CSRF token: send the session's token in "
                                   "the X-CSRF-Token header or the 'csrf' form field")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _WatchedResponse:
    """Passes the response on; a 401 or 403 is audited before its last byte is sent, so
    the record exists by the time the caller has the answer."""

    def __init__(self, send: Send, on_refusal: Callable[[int, str], Awaitable[None]]) -> None:
        self.send, self.on_refusal, self.status, self.body = send, on_refusal, 0, b""

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body" and self.status in REFUSALS:
            if len(self.body) < REASON_BYTES:
                self.body += message.get("body", b"")[:REASON_BYTES]
            if not message.get("more_body", False):
                await self.on_refusal(self.status, self.reason())
        await self.send(message)

    def reason(self) -> str:
        """The JSON error's words (never a credential), else the bare status."""
        try:
            return _TOKENISH.sub("…", str(json.loads(self.body)["error"]))[:200]
        except (ValueError, KeyError, TypeError):
            return f"HTTP {self.status}"


def route_of(path: str) -> str:
    """The path with secrets blanked: a link's secret, or any token-like segment."""
    if path.startswith("/s/"):
        return "/s/…"
    return "/".join("…" if _TOKENISH.fullmatch(part) else part for part in path.split("/"))


def audit_refusal(scope: Scope, status: int, reason: str) -> None:
    """One ``access-denied`` failure record for a 401 or 403 on any route (PS3.15 A.5.3.11
    Security Alert): who, route, method, reason and address. Refusals the route audited
    itself (a failed login, a wrong PIN) are not recorded twice. A caller nobody could
    identify leaves one record per address, method and route per hour (as views are
    aggregated), so an anonymous flood cannot grow the log without bound.
    """
    conn = HTTPConnection(scope)
    who = principal(conn)
    route = route_of(scope["path"])
    entry = audit_entry(who, "access-denied", outcome="failure", source=client_ip(conn),
                        detail={"route": route, "method": scope["method"], "status": status,
                                "reason": reason})
    audit = scope["app"].state.archive.audit
    if who.kind == "anonymous":
        audit.record_once(entry, f"{entry.source} {scope['method']} {route}")
    else:
        audit.record(entry)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _unauthenticated(conn: HTTPConnection) -> Response:
    """401 for API and DICOMweb clients; a page request is sent to the login page."""
    path = conn.url.path
    wants_page = "text/html" in conn.headers.get("accept", "")
    if conn.scope["method"] in ("GET", "HEAD") and wants_page and not path.startswith(MACHINE_PREFIXES):
        target = path + (f"?{conn.url.query}" if conn.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
    return _error(401, "authentication required: log in at /login or send "
                       "'Authorization: Bearer <token>'",
                  {"WWW-Authenticate": 'Bearer realm="cloudfilm"'})


def _matches(stored_hash: str, presented: str) -> bool:
    return hmac.compare_digest(stored_hash.encode("ascii"),
                               credentials.token_hash(presented).encode("ascii"))


async def _presented_csrf(conn: HTTPConnection, receive: Receive) -> tuple[str | None, Receive]:
    """The CSRF token from the header, else from the start of a form body (then replayed)."""
    header = conn.headers.get(CSRF_HEADER)
    if header:
        return header.strip(), receive
    content_type = conn.headers.get("content-type", "").lower()
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None, receive
    buffered, prefix, complete = await _read_prefix(receive, FORM_PREFIX_LIMIT)
    replay = _replaying(buffered, receive)
    if content_type.startswith("application/x-www-form-urlencoded"):
        if not complete:
            return None, replay
        values = parse_qs(prefix.decode("latin-1"), keep_blank_values=True).get(CSRF_FIELD)
        return (values[0] if values else None), replay
    match = _MULTIPART_CSRF.search(prefix)
    return (match.group(1).decode("latin-1") if match else None), replay


async def _read_prefix(receive: Receive, limit: int) -> tuple[list[Message], bytes, bool]:
    """Read body messages until ``limit`` bytes or the end; returns them for replay."""
    messages: list[Message] = []
    body = b""
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, body, True
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return messages, body, True
        if len(body) >= limit:
            return messages, body, False


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
