"""Header, body and idle timeouts for uvicorn's httptools protocol.

uvicorn times out only the idle gap *after* a response (``timeout_keep_alive``): a
client that opens a socket and sends half a request line, or a header a byte every
few seconds, holds the connection for ever (slowloris). This protocol adds what
nginx and Apache have: the whole request head must arrive within ``header_seconds``
of its first byte (or of the connection), the head may not pass ``max_header_bytes``
(431, RFC 6585 §5), and a body may not stall for more than ``body_idle_seconds``
while the application waits for it. A paused body (the application is busy with what
it has) never counts against the client. The same protocol offers the application
sendfile for stored files (api/zero_copy.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cloudfilm.api.zero_copy import offer_zero_copy
from cloudfilm.config import HttpSettings


@dataclass(frozen=True)
class HttpTimeouts:
    """Seconds and bytes; the seconds come from CLOUDFILM_HTTP_HEADER_TIMEOUT, _BODY_TIMEOUT
    and _KEEPALIVE (``Settings.http``)."""

    header_seconds: float = HttpSettings.header_timeout
    body_idle_seconds: float = HttpSettings.body_timeout
    keep_alive_seconds: float = HttpSettings.keepalive
    max_header_bytes: int = 64 << 10

    @classmethod
    def from_settings(cls, settings: HttpSettings) -> HttpTimeouts:
        return cls(header_seconds=settings.header_timeout, body_idle_seconds=settings.body_timeout,
                   keep_alive_seconds=settings.keepalive)


def guarded_protocol(timeouts: HttpTimeouts) -> type[HttpToolsProtocol]:
    """The protocol class to pass as uvicorn's ``http``, bound to ``timeouts``."""
    return type("GuardedHttpToolsProtocol", (GuardedHttpToolsProtocol,), {"timeouts": timeouts})


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's protocol with a request-head deadline, a head size cap and a body idle timer."""

    timeouts = HttpTimeouts()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._in_head = True
        self._in_body = False
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.timeouts.header_seconds, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            if self._deadline is None:
                self._arm(self.timeouts.header_seconds, self._head_timed_out)
            self._head_bytes += len(data)
        elif self._in_body:
            self._arm(self.timeouts.body_idle_seconds, self._body_timed_out)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.timeouts.max_header_bytes:
            self._refuse(b"431 Request Header Fields Too Large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True

    def on_headers_complete(self) -> None:
        self._in_head, self._in_body, self._head_bytes = False, True, 0
        self._arm(self.timeouts.body_idle_seconds, self._body_timed_out)
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        # Each request's application may send stored files with sendfile (api/zero_copy.py).
        offer_zero_copy(cycle, self.timeouts.body_idle_seconds)
        super()._start_asgi_task(cycle, app)

    def on_message_complete(self) -> None:
        self._in_head, self._in_body = True, False
        self._disarm()
        super().on_message_complete()

    def _arm(self, seconds: float, handler: Any) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, handler)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _head_timed_out(self) -> None:
        self._deadline = None
        if self._head_bytes:
            self._refuse(b"408 Request Timeout")
        elif not self.transport.is_closing():
            self.transport.close()

    def _body_timed_out(self) -> None:
        self._deadline = None
        flow: FlowControl | None = self.flow  # uvicorn starts it as None, typed FlowControl
        if flow is not None and flow.read_paused:
            self._arm(self.timeouts.body_idle_seconds, self._body_timed_out)
        elif self._in_body and not self.transport.is_closing():
            self.transport.close()  # the application sees a disconnect and drops what it staged

    def _refuse(self, status: bytes) -> None:
        if self.transport.is_closing():
            return
        self.transport.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\n"
                             b"connection: close\r\n\r\n")
        self.transport.close()
