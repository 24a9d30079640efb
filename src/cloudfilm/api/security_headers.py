"""Headers every answer needs, set in one place rather than route by route.

- ``Strict-Transport-Security`` (RFC 6797) on every answer to an https request, so a
  browser that once reached the archive over https never falls back to plain http (where
  a session cookie could be taken). "https" is judged as the session cookies judge it
  (`authn.wants_secure_cookies`), or from an https ``CLOUDFILM_PUBLIC_URL``; browsers
  ignore the header on plain http (RFC 6797 §8.1), so it is never sent there.
- ``Cache-Control: private`` (RFC 9111 §5.2.2.7) on DICOMweb and WADO-URI answers that
  set none: pixels, metadata, renderings and query results are one patient's data, which
  a shared cache (a hospital or ISP proxy) must never keep and hand to someone else. The
  browser's own cache may keep them (OHIF 3.13 aborts frame requests marked no-store), and
  routes that need more (the viewer's HTJ2K frames: ``no-store``) keep their own header.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cloudfilm.api.authn import wants_secure_cookies

HSTS = "max-age=31536000"  # one year; subdomains are not ours to speak for
PATIENT_DATA_PREFIXES = ("/dicomweb", "/wado")
PATIENT_DATA_CACHING = "private"


def is_https(conn: HTTPConnection) -> bool:
    """The browser reached us over https: directly, through a proxy that says so, or at an
    https public address."""
    public = conn.app.state.archive.settings.public_url or ""
    return wants_secure_cookies(conn) or public.lower().startswith("https://")


class SecurityHeadersMiddleware:
    """Pure ASGI (no buffering): adds the headers to the response start message only."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        https = is_https(conn)
        patient_data = scope["path"].startswith(PATIENT_DATA_PREFIXES)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if https:
                    headers["Strict-Transport-Security"] = HSTS
                if patient_data and "cache-control" not in headers:
                    headers["Cache-Control"] = PATIENT_DATA_CACHING
            await send(message)

        await self.app(scope, receive, send_with_headers)
