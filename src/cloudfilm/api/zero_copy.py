"""Zero-copy file bodies: the ASGI "Zero Copy Send" extension, on uvicorn's httptools protocol.

A whole-series retrieve is hundreds of megabytes of stored Part-10 files sent as they are.
Sent as ``http.response.body`` messages, every byte is copied twice in user space (read into
a ``bytes``, then into the transport's buffer) on a machine whose other core is often the
client. ``sendfile(2)`` moves it from the page cache to the socket inside the kernel, which is
what the loopback ceiling in docs/benchmarks.md is measured with.

uvicorn does not offer the extension, so our protocol does (`offer_zero_copy`): the scope
gets ``extensions["http.response.zerocopysend"]`` and the cycle's ``send`` understands
``{"type": "http.response.zerocopysend", "file", "offset", "count", "more_body"}`` (ASGI
HTTP spec, extensions). uvicorn still writes the status line and headers and does the
Content-Length accounting; only the file bytes bypass it. Once the transport's own buffer
is empty (so they never overtake bytes uvicorn queued), as much as the socket takes at once
is sent on the event loop; the rest by a worker thread on a duplicate of the socket's
descriptor, so a connection closed meanwhile can never hand its descriptor number to
another client's socket under the thread's feet.
"""

from __future__ import annotations

import asyncio
import os
import select
from typing import Any

from starlette.types import Message

EXTENSION = "http.response.zerocopysend"
_DRAIN_POLL_SECONDS = 0.001


def offer_zero_copy(cycle: Any, stall_seconds: float) -> None:
    """Give a uvicorn RequestResponseCycle the extension before its application starts.

    ``stall_seconds``: how long the client may take no bytes before the connection is
    closed (the same idle limit as a stalled request body)."""
    transport = cycle.transport
    sock = transport.get_extra_info("socket")
    if sock is None or transport.get_extra_info("sslcontext") is not None:
        return  # TLS in process (never here: TLS ends at the proxy) must go through the transport
    cycle.scope.setdefault("extensions", {})[EXTENSION] = {}
    cycle.send = _ZeroCopySend(cycle, sock.fileno(), stall_seconds)


class _ZeroCopySend:
    """``send`` of one cycle: zero-copy messages here, everything else to uvicorn."""

    def __init__(self, cycle: Any, sock_fd: int, stall_seconds: float) -> None:
        self.cycle, self.sock_fd, self.stall_seconds = cycle, sock_fd, stall_seconds
        self.uvicorn_send = type(cycle).send.__get__(cycle)

    async def __call__(self, message: Message) -> None:
        if message["type"] != EXTENSION:
            await self.uvicorn_send(message)
            return
        cycle = self.cycle
        if not cycle.response_started or cycle.response_complete or cycle.chunked_encoding:
            raise RuntimeError(f"{EXTENSION} needs a started response with a Content-Length")
        if cycle.scope["method"] != "HEAD":  # uvicorn zeroes a HEAD response's length itself
            file = message["file"]
            offset = int(message.get("offset") or 0)
            count = message.get("count")
            count = os.fstat(file.fileno()).st_size - offset if count is None else int(count)
            if count > cycle.expected_content_length:
                raise RuntimeError("Response content longer than Content-Length")
            await self._drained()
            if not cycle.disconnected:
                await self._send_file(file.fileno(), offset, count)
            cycle.expected_content_length -= count
        if not message.get("more_body", False):
            await self.uvicorn_send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _drained(self) -> None:
        """Wait until the transport has handed every byte uvicorn wrote to the kernel."""
        transport = self.cycle.transport
        while transport.get_write_buffer_size() and not self.cycle.disconnected:
            await asyncio.sleep(_DRAIN_POLL_SECONDS)

    async def _send_file(self, file_fd: int, offset: int, count: int) -> None:
        try:  # first as much as the socket takes now, on the loop: no thread hop
            sent = os.sendfile(self.sock_fd, file_fd, offset, count)
        except BlockingIOError:
            sent = 0
        except OSError:
            sent = -1  # the peer went: below, the thread meets the same error and says so
        if sent > 0:
            offset, count = offset + sent, count - sent
        if count == 0:
            return
        sock = os.dup(self.sock_fd)
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, send_file, sock, file_fd, offset, count, self.stall_seconds)
        except (ConnectionError, TimeoutError):
            self.cycle.disconnected = True  # as uvicorn does when the peer goes: later sends are dropped
            self.cycle.transport.close()
        finally:
            os.close(sock)


def send_file(sock: int, file_fd: int, offset: int, count: int, stall_seconds: float) -> None:
    """``count`` bytes of ``file_fd`` from ``offset`` to the non-blocking socket ``sock``.

    TimeoutError when the client takes nothing for ``stall_seconds``; EOFError (the
    connection is then unusable) when the file is shorter than promised."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT)
    while count > 0:
        try:
            sent = os.sendfile(sock, file_fd, offset, count)
        except BlockingIOError:
            if not poller.poll(int(stall_seconds * 1000)):
                raise TimeoutError(f"the client took nothing for {stall_seconds:g} s") from None
            continue
        if sent == 0:
            raise EOFError(f"file ended {count} bytes short of what was promised")
        offset += sent
        count -= sent
