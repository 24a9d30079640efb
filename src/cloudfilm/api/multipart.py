"""multipart/related (RFC 2387) in both directions, streamed.

Reading: STOW-RS bodies are parsed incrementally (python-multipart) and each part
is written straight to a staging file, so a 1 GB request never sits in memory.
Writing: parts are yielded as they are read from disk. The frame part header is
exactly ``Content-Type: application/octet-stream; transfer-syntax=<UID>``, which
OHIF's loader relies on (ohif.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser

from cloudfilm.storage.blobs import FileSystemBlobStore


class MalformedBody(ValueError):
    """The request body is not a well-formed multipart/related message."""


@dataclass
class ReceivedPart:
    """One part, written to staging (not yet fsynced), or refused with a reason."""

    content_type: str
    path: Path | None = None
    size: int = 0
    sha256: str = ""
    error: str = ""


@dataclass
class _Current:
    headers: dict[str, str] = field(default_factory=dict)
    field_name: bytearray = field(default_factory=bytearray)
    field_value: bytearray = field(default_factory=bytearray)
    path: Path | None = None
    fh: BinaryIO | None = None
    digest: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    size: int = 0


class MultipartReceiver:
    """Feed it body chunks; it stages each part of the accepted type as a file."""

    def __init__(self, boundary: str, default_type: str, accepted: set[str],
                 blobs: FileSystemBlobStore,
                 on_part: Callable[[ReceivedPart], None] | None = None) -> None:
        self.on_part = on_part
        self.default_type = default_type
        self.accepted = accepted
        self.blobs = blobs
        self.parts: list[ReceivedPart] = []
        self._current = _Current()
        self._ended = False
        callbacks = {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_end": self._end,
        }
        self._parser = MultipartParser(boundary.encode("latin-1"), callbacks)

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except Exception as exc:  # python-multipart raises its own error types
            raise MalformedBody(f"malformed multipart body: {exc}") from exc

    def finish(self) -> list[ReceivedPart]:
        try:
            self._parser.finalize()
        except Exception as exc:
            raise MalformedBody(f"malformed multipart body: {exc}") from exc
        if not self._ended:
            raise MalformedBody("malformed multipart body: the closing boundary is missing")
        return self.parts

    def abort(self) -> None:
        """Remove everything staged so far (the request failed as a whole)."""
        if self._current.fh:
            self._current.fh.close()
        for part in self.parts + [ReceivedPart("", self._current.path)]:
            if part.path:
                part.path.unlink(missing_ok=True)

    # -- parser callbacks --------------------------------------------------
    def _part_begin(self) -> None:
        self._current = _Current()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._current.field_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._current.field_value += data[start:end]

    def _header_end(self) -> None:
        name = self._current.field_name.decode("latin-1").strip().lower()
        self._current.headers[name] = self._current.field_value.decode("latin-1").strip()
        self._current.field_name, self._current.field_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        content_type = self._current.headers.get("content-type", self.default_type)
        media = content_type.split(";")[0].strip().lower()
        if media in self.accepted:
            self._current.path, self._current.fh = self.blobs.new_staging_file()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        current = self._current
        if current.fh is not None:
            view = data[start:end]
            current.fh.write(view)
            current.digest.update(view)
            current.size += end - start

    def _part_end(self) -> None:
        current = self._current
        content_type = current.headers.get("content-type", self.default_type)
        if current.fh is None:
            self.parts.append(ReceivedPart(content_type, error=f"unsupported part media type {content_type!r}"))
            return
        current.fh.close()
        part = ReceivedPart(content_type, current.path, current.size, current.digest.hexdigest())
        self.parts.append(part)
        self._current = _Current()
        if self.on_part is not None:
            self.on_part(part)

    def _end(self) -> None:
        self._ended = True


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
