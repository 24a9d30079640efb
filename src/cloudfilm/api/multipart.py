"""Writing multipart/related responses (RFC 2387), streamed part by part from disk.

The frame part header is exactly ``Content-Type: application/octet-stream;
transfer-syntax=<UID>``, which OHIF's loader relies on (ohif.md). Reading multipart
bodies lives in services/archive/multipart_stream.py.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator


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
