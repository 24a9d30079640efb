"""Writing multipart/related responses (RFC 2387), streamed part by part from disk.

The frame part header is exactly ``Content-Type: application/octet-stream;
transfer-syntax=<UID>``, which OHIF's loader relies on (ohif.md). Reading multipart
bodies lives in services/archive/multipart_stream.py.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from cloudfilm.api.zero_copy import EXTENSION as ZERO_COPY


def new_boundary() -> str:
    return secrets.token_hex(16)


def multipart_content_type(part_type: str, boundary: str, transfer_syntax: str | None = None) -> str:
    extra = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"; boundary={boundary}{extra}'


def part_header(boundary: str, content_type: str, first: bool, extra: str = "") -> bytes:
    lead = b"" if first else b"\r\n"
    return lead + f"--{boundary}\r\nContent-Type: {content_type}\r\n{extra}\r\n".encode("latin-1")


def closing(boundary: str) -> bytes:
    return f"\r\n--{boundary}--\r\n".encode("latin-1")


BATCH_BYTES = 8 << 20


async def in_thread_batches(chunks: Iterator[bytes], budget: int = BATCH_BYTES) -> AsyncIterator[bytes]:
    """Pull up to ``budget`` bytes of chunks per worker-thread hop, then send them unjoined.

    File reads must not block the event loop, but a hop per chunk (Starlette's default)
    and joining chunks (a copy) each cost as much as the reads on a fast series retrieve.
    The next batch is read while the current one is written, so disk and socket overlap.
    """

    def pull() -> list[bytes]:
        taken: list[bytes] = []
        size = 0
        for chunk in chunks:
            taken.append(chunk)
            size += len(chunk)
            if size >= budget:
                break
        return taken

    loop = asyncio.get_running_loop()
    pending = loop.run_in_executor(None, pull)
    while batch := await pending:
        pending = loop.run_in_executor(None, pull)  # read the next batch while this one is sent
        for chunk in batch:
            yield chunk


def stream_parts(boundary: str, parts: Iterable[tuple[str, Iterable[bytes]]]) -> Iterator[bytes]:
    """Yield a multipart body from (content type, chunks) pairs, part by part."""
    first = True
    for content_type, chunks in parts:
        header = part_header(boundary, content_type, first)
        first = False
        yield header
        yield from chunks
    if not first:
        yield closing(boundary)
    else:
        yield f"--{boundary}--\r\n".encode("latin-1")


@dataclass(frozen=True)
class FilePart:
    """One part whose body is a whole stored file of ``size`` bytes (from the index)."""

    content_type: str
    size: int
    open: Callable[[], BinaryIO | None]


def can_send_files(scope: Scope) -> bool:
    """Whether the server offers sendfile to this request (api/zero_copy.py)."""
    return ZERO_COPY in scope.get("extensions", {})


class FilePartsResponse(Response):
    """multipart/related of stored files with a Content-Length, each file body sent by
    sendfile(2) from the page cache to the socket: no user-space copy (api/zero_copy.py).

    Only for a server that offers the extension (`can_send_files`) and a blob store with
    local files. Files are opened on the event loop (one cached-inode open each, cheaper
    than a thread hop); a file whose size differs from the index's aborts the response,
    since the promised length can no longer be kept.
    """

    def __init__(self, boundary: str, part_type: str, parts: Sequence[FilePart]) -> None:
        self.status_code, self.background = 200, None
        self.parts = list(parts)
        self.heads = [part_header(boundary, p.content_type, n == 0) for n, p in enumerate(self.parts)]
        self.tail = closing(boundary) if self.parts else f"--{boundary}--\r\n".encode("latin-1")
        self.media_type = multipart_content_type(part_type, boundary)
        length = sum(map(len, self.heads)) + sum(p.size for p in self.parts) + len(self.tail)
        self.init_headers({"content-length": str(length)})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        for head, part in zip(self.heads, self.parts, strict=True):
            await send({"type": "http.response.body", "body": head, "more_body": True})
            file = part.open()
            if file is None:
                raise RuntimeError("the blob store has no local file for a part")
            with file:
                if os.fstat(file.fileno()).st_size != part.size:
                    raise RuntimeError(f"a stored file is not the {part.size} bytes the index says")
                await send({"type": ZERO_COPY, "file": file, "offset": 0, "count": part.size,
                            "more_body": True})
        await send({"type": "http.response.body", "body": self.tail, "more_body": False})
