"""Streaming multipart parsing (RFC 2046 §5.1.1, RFC 2387), shared by every body we read.

STOW-RS requests, patient uploads (multipart/form-data) and WADO-RS responses from
remote nodes all arrive as multipart bodies too large to hold in memory.
`PartStream` feeds them through python-multipart, collects each part's headers and
turns parser failures into one `MalformedMultipart` error; subclasses only decide
where a part's bytes go. `StagingReceiver` writes each part into the blob store's
staging area through a `StagingWriter` (storage/staging.py), which hashes as it goes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from python_multipart.multipart import MultipartParser

from cloudfilm.storage.blobs import BlobStore, StagedBlob, StagingWriter


class MalformedMultipart(ValueError):
    """The body is not a well-formed multipart message; the text says what was wrong."""


MAX_BOUNDARY = 70
BOUNDARY_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=? ")


def boundary_problem(boundary: str) -> str:
    """Why a boundary breaks RFC 2046 §5.1.1 (1 to 70 of its characters, no final space), or ""."""
    if not 0 < len(boundary) <= MAX_BOUNDARY:
        return (f"malformed multipart body: the boundary is {len(boundary)} characters long; "
                f"RFC 2046 allows 1 to {MAX_BOUNDARY}")
    if not BOUNDARY_CHARS.issuperset(boundary) or boundary.endswith(" "):
        return "malformed multipart body: the boundary holds characters RFC 2046 does not allow"
    return ""


class PartStream:
    """A multipart body, fed chunk by chunk; subclasses receive parts through three hooks.

    ``passthrough`` lists exception types a hook may raise that must reach the caller
    unchanged (limits, disk errors); anything else the parser raises means a malformed body.
    """

    passthrough: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, boundary: str, what: str) -> None:
        if reason := boundary_problem(boundary):
            raise MalformedMultipart(reason)
        self.what = what
        self._name, self._value = bytearray(), bytearray()
        self._headers: dict[str, str] = {}
        self._ended = False
        self._parser = MultipartParser(boundary.encode("latin-1"), {
            "on_part_begin": self._headers.clear, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self.end_part, "on_end": self._end})

    # -- hooks -------------------------------------------------------------------------
    def start_part(self, headers: dict[str, str]) -> None:
        """A part's headers are complete (names lower-cased)."""

    def part_data(self, data: bytes) -> None:
        """Some of the current part's bytes."""

    def end_part(self) -> None:
        """The current part is complete."""

    # -- feeding -----------------------------------------------------------------------
    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except self.passthrough:
            raise
        except Exception as exc:  # python-multipart raises its own error types
            raise MalformedMultipart(f"malformed {self.what}: {exc}") from exc

    def finish(self) -> None:
        try:
            self._parser.finalize()
        except Exception as exc:
            raise MalformedMultipart(f"malformed {self.what}: {exc}") from exc
        if not self._ended:
            raise MalformedMultipart(f"malformed {self.what}: the closing boundary is missing")

    # -- parser callbacks --------------------------------------------------------------
    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._name.decode("latin-1").strip().lower()
        self._headers[name] = self._value.decode("latin-1").strip()
        self._name, self._value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        self.start_part(dict(self._headers))

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self.part_data(data[start:end])

    def _end(self) -> None:
        self._ended = True


@dataclass
class ReceivedPart:
    """One part, written to staging (not yet fsynced), or refused with a reason."""

    content_type: str
    path: Path | None = None
    size: int = 0
    sha256: str = ""
    error: str = ""

    @property
    def staged(self) -> StagedBlob:
        """The staged part (not yet sealed); only for a part with a ``path``."""
        assert self.path is not None
        return StagedBlob(self.path, self.size, self.sha256)


@dataclass
class _Open:
    content_type: str
    writer: StagingWriter | None = None


class StagingReceiver(PartStream):
    """Stages each part of an accepted media type as a file; the rest are refused with a reason.

    ``accepted=None`` accepts every part. ``on_part`` sees each part as soon as it ends,
    so work on it (fsync, parsing) can start while the body is still arriving.
    """

    def __init__(self, boundary: str, default_type: str, accepted: set[str] | None,
                 blobs: BlobStore, *, what: str = "multipart body",
                 on_part: Callable[[ReceivedPart], None] | None = None) -> None:
        super().__init__(boundary, what)
        self.default_type, self.accepted, self.blobs = default_type, accepted, blobs
        self.on_part = on_part
        self.parts: list[ReceivedPart] = []
        self._open: _Open | None = None

    def start_part(self, headers: dict[str, str]) -> None:
        content_type = headers.get("content-type", self.default_type)
        self._open = _Open(content_type)
        media = content_type.split(";")[0].strip().lower()
        if self.accepted is None or media in self.accepted:
            self._open.writer = self.blobs.staging_writer()

    def part_data(self, data: bytes) -> None:
        current = self._open
        if current is not None and current.writer is not None:
            current.writer.write(data)

    def end_part(self) -> None:
        current, self._open = self._open, None
        if current is None:
            return
        if current.writer is None:
            part = ReceivedPart(current.content_type,
                                error=f"unsupported part media type {current.content_type!r}")
        else:
            staged = current.writer.close()  # sealed later, off the event loop
            part = ReceivedPart(current.content_type, staged.path, staged.size, staged.sha256)
        self.parts.append(part)
        if self.on_part is not None:
            self.on_part(part)

    def received(self) -> list[ReceivedPart]:
        self.finish()
        return self.parts

    def abort(self) -> None:
        """Remove everything staged so far (the body failed as a whole)."""
        if self._open is not None and self._open.writer is not None:
            self._open.writer.abort()
        for path in [p.path for p in self.parts]:
            if path is not None:
                path.unlink(missing_ok=True)
