"""What the browser benchmarks share: the emulated slow link and the login.

The slow link is 1.6 Mbit/s down with 150 ms round trips, as the viewer targets are set.
DevTools network emulation does not slow requests made by web workers (OHIF and
Cornerstone fetch frames there), so `ShapedLink` offers the same link as a loopback TCP
proxy that shapes every byte.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any
from urllib.parse import quote

SLOW_NAME = "1.6 Mbit/s, 150 ms RTT"
SLOW_BPS_DOWN, SLOW_BPS_UP, SLOW_RTT_MS = 1_600_000, 750_000, 150
DEVTOOLS_SLOW = {"offline": False, "latency": SLOW_RTT_MS,
                 "downloadThroughput": SLOW_BPS_DOWN / 8, "uploadThroughput": SLOW_BPS_UP / 8}


class ShapedLink:
    """A loopback TCP proxy that behaves like one slow link between browser and server.

    Each direction has a shared capacity (every connection queues on the same link, as on a
    real line) and a one-way delay of RTT/2 added to every chunk. The link buffers at most
    ``BUFFER_S`` seconds of data (then it stops reading, as TCP would), so a connection the
    browser drops leaves no long backlog that would slow the next measurement. It runs its
    own asyncio loop in a thread; ``port`` is where the browser connects.
    """

    CHUNK = 16 * 1024
    BUFFER_S = 0.5

    def __init__(self, target_port: int, down_bps: float, up_bps: float, rtt_ms: float) -> None:
        self.target_port = target_port
        self.rate = {"down": down_bps / 8, "up": up_bps / 8}  # bytes per second
        self.delay = rtt_ms / 2000
        self.busy_until = {"down": 0.0, "up": 0.0}
        self.bytes_down = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> ShapedLink:
        self._thread = threading.Thread(target=self._run, name="shaped-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("shaping proxy did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    async def _shutdown(self) -> None:
        """Close the listener and every open connection (no pending tasks left behind)."""
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            self._loop.close()

    async def _connection(self, client_r: asyncio.StreamReader,
                          client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            return
        with contextlib.suppress(asyncio.CancelledError):  # stop(): end quietly
            await asyncio.gather(self._pipe(client_r, server_w, "up"),
                                 self._pipe(server_r, client_w, "down"), return_exceptions=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    direction: str) -> None:
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(deliver())
        try:
            while not sender.done():  # the far end gone: stop taking the link's time
                data = await reader.read(self.CHUNK)
                now = time.monotonic()
                if not data:
                    await queue.put((now, b""))
                    break
                if direction == "down":
                    self.bytes_down += len(data)
                finish = max(now, self.busy_until[direction]) + len(data) / self.rate[direction]
                self.busy_until[direction] = finish
                await queue.put((finish + self.delay, data))
                backlog = finish - time.monotonic() - self.BUFFER_S
                if backlog > 0:
                    await asyncio.sleep(backlog)
        except (ConnectionError, OSError):
            await queue.put((time.monotonic(), b""))
        await asyncio.gather(sender, return_exceptions=True)


def login(context: Any, base: str, username: str, password: str) -> None:
    """Through the real login form, then to /healthz (so no viewer file gets cached)."""
    page = context.new_page()
    page.goto(f"{base}/login?next={quote('/healthz', safe='')}")
    page.fill("#username", username)
    page.fill("#password", password)
    with page.expect_navigation(timeout=60_000):
        page.press("#password", "Enter")
    page.close()
