"""Patient uploads: ``POST /api/uploads`` (multipart/form-data, RFC 7578), then import.

Each ``file`` field (a .zip, an .iso, a .dcm, or the files of a folder, whose names
keep their relative paths as browsers send them for folder uploads) is streamed to
disk as it arrives (python-multipart's incremental parser), under a fresh folder of
the data directory, at a path checked component by component: a name with ``..``, an
absolute path or a NUL is refused with a reason and its bytes are dropped. The
folder is then imported exactly like ``cloudfilm import`` does (services/importer.py,
with its zip-bomb limits) and removed. The answer lists every file's result:
200 when anything was stored (or already was), 422 when nothing could be.

Access control arrives later: `authorize` is the one place to add the check, and the
documents and export routers call it too.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.media import parse_media_type
from cloudfilm.services.archive import Archive
from cloudfilm.services.importer import ImportResult, Walker, count, import_paths, unsafe_name

MAX_UPLOAD_BYTES = 16 << 30
MAX_PARTS = 100_000
MAX_FIELD_BYTES = 64 << 10
STALE_SECONDS = 24 * 3600


async def authorize(request: Request, action: str, target: str = "") -> None:
    """The single access-control hook for uploads, documents and exports (none yet)."""
    return None


class TooLarge(ValueError):
    """The body passes a size or count limit (413)."""


class Malformed(ValueError):
    """The body is not well-formed multipart/form-data (400)."""


@dataclass
class FormPart:
    """A field: a file written to ``path``, a short text ``value``, or an ``error``."""

    name: str
    filename: str | None = None
    path: Path | None = None
    size: int = 0
    value: str = ""
    error: str = ""


Placer = Callable[[str, str], "Path | str"]  # (field, file name) -> where to write, or why not


@dataclass
class _Current:
    headers: dict[str, str] = field(default_factory=dict)
    header_name: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    part: FormPart | None = None
    fh: BinaryIO | None = None
    text: bytearray = field(default_factory=bytearray)


class FormDataReceiver:
    """Feed it body chunks; file fields go straight to the paths ``place`` picks."""

    def __init__(self, boundary: str, place: Placer, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
        self.place = place
        self.max_bytes = max_bytes
        self.parts: list[FormPart] = []
        self.received = 0
        self._current = _Current()
        self._ended = False
        callbacks = {
            "on_part_begin": self._part_begin, "on_part_data": self._part_data,
            "on_part_end": self._part_end, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_end": self._end,
        }
        self._parser = MultipartParser(boundary.encode("latin-1"), callbacks)  # type: ignore[arg-type]

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise TooLarge(f"the upload is larger than {self.max_bytes} bytes")
        try:
            self._parser.write(chunk)
        except (TooLarge, OSError):
            raise
        except Exception as exc:  # python-multipart raises its own error types
            raise Malformed(f"malformed multipart/form-data body: {exc}") from exc

    def finish(self) -> list[FormPart]:
        try:
            self._parser.finalize()
        except Exception as exc:
            raise Malformed(f"malformed multipart/form-data body: {exc}") from exc
        if not self._ended:
            raise Malformed("malformed multipart/form-data body: the closing boundary is missing")
        return self.parts

    def close(self) -> None:
        if self._current.fh is not None:
            self._current.fh.close()

    # -- parser callbacks --------------------------------------------------------------
    def _part_begin(self) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise TooLarge(f"the upload holds more than {MAX_PARTS} parts")
        self._current = _Current()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._current.header_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._current.header_value += data[start:end]

    def _header_end(self) -> None:
        current = self._current
        current.headers[current.header_name.decode("latin-1").strip().lower()] = \
            current.header_value.decode("latin-1").strip()
        current.header_name, current.header_value = bytearray(), bytearray()

    def _headers_finished(self) -> None:
        disposition = self._current.headers.get("content-disposition", "")
        _kind, options = parse_options_header(disposition.encode("latin-1"))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        part = FormPart(name)
        self._current.part = part
        if raw_filename is None:
            return
        part.filename = raw_filename.decode("utf-8", "replace") or f"upload-{len(self.parts) + 1}"
        target = self.place(part.name, part.filename)
        if isinstance(target, str):
            part.error = target
            return
        try:
            self._current.fh = open(target, "xb")  # noqa: SIM115 - closed in _part_end
        except OSError as exc:
            part.error = f"cannot write this file: {exc.strerror}"
        else:
            part.path = target

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        current = self._current
        if current.fh is not None:
            current.fh.write(data[start:end])
            assert current.part is not None
            current.part.size += end - start
        elif current.part is not None and current.part.filename is None:
            current.text += data[start:end]
            if len(current.text) > MAX_FIELD_BYTES:
                raise TooLarge(f"field {current.part.name!r} is longer than "
                               f"{MAX_FIELD_BYTES} bytes")

    def _part_end(self) -> None:
        current = self._current
        if current.fh is not None:
            current.fh.close()
            current.fh = None
        if current.part is not None:
            if current.part.filename is None:
                current.part.value = current.text.decode("utf-8", "replace")
            self.parts.append(current.part)
        self._current = _Current()

    def _end(self) -> None:
        self._ended = True


def form_boundary(request: Request) -> str:
    """The boundary of a multipart/form-data request; 415 or 400 otherwise."""
    media = parse_media_type(request.headers.get("content-type", ""))
    if media.type != "multipart/form-data":
        raise HTTPException(415, f"unsupported media type {media.type or '(none)'}: "
                                 "send multipart/form-data with one or more 'file' fields")
    boundary = media.params.get("boundary")
    if not boundary:
        raise HTTPException(400, "malformed multipart/form-data body: the boundary is missing")
    return boundary


async def receive_form(request: Request, place: Placer,
                       max_bytes: int = MAX_UPLOAD_BYTES) -> list[FormPart]:
    """Stream the request body through a FormDataReceiver; errors become 400 or 413."""
    receiver = FormDataReceiver(form_boundary(request), place, max_bytes)
    try:
        async for chunk in request.stream():
            receiver.feed(chunk)
        return receiver.finish()
    except Malformed as exc:
        raise HTTPException(400, str(exc)) from exc
    except TooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    finally:
        receiver.close()


def scratch_dir(archive: Archive, kind: str) -> Path:
    """A fresh folder under ``<data>/uploads``; leftovers of a crash a day old are removed."""
    parent = archive.settings.data_dir / "uploads"
    parent.mkdir(parents=True, exist_ok=True)
    cutoff = time.time() - STALE_SECONDS
    for old in parent.iterdir():
        if old.stat().st_mtime < cutoff:
            shutil.rmtree(old, ignore_errors=True)
    folder = parent / f"{kind}-{secrets.token_hex(8)}"
    folder.mkdir()
    return folder


# -- the uploads route ------------------------------------------------------------------


def folder_placer(root: Path) -> Placer:
    """Place files at their relative path under ``root``, refusing unsafe or repeated names."""
    def place(field_name: str, filename: str) -> Path | str:
        if field_name != "file":
            return f"field {field_name!r} is not read (files go in 'file')"
        if reason := unsafe_name(filename):
            return reason
        parts = [p for p in filename.replace("\\", "/").split("/") if p not in ("", ".")]
        if not parts or any(len(p.encode()) > 255 for p in parts) or len(parts) > 32:
            return "unusable file name"
        target = root.joinpath(*parts)
        if not target.resolve().is_relative_to(root.resolve()):
            return "the name points outside the upload"
        if target.exists():
            return "the upload holds this file name twice"
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            return f"cannot place this file: {exc.strerror}"
        return target
    return place


def _import(archive: Archive, root: Path,
            parts: list[FormPart]) -> tuple[list[ImportResult], list[str]]:
    """Refused parts fail with their reason; the rest is imported as one folder."""
    results = [ImportResult(p.filename or p.name, "failed", p.error) for p in parts if p.error]
    notes: list[str] = []
    if any(p.path is not None for p in parts):
        walker = Walker(notes, base=root)
        results += import_paths(archive.ingest, [root], lambda r: None, notes, walker)
    return results, notes


def _result_json(result: ImportResult) -> dict[str, str]:
    return {"name": result.name, "status": result.status, "reason": result.reason,
            "sop_instance_uid": result.sop_instance_uid}


async def upload(request: Request) -> Response:
    await authorize(request, "upload")
    archive: Archive = request.app.state.archive
    form_boundary(request)
    root = scratch_dir(archive, "upload")
    try:
        parts = [p for p in await receive_form(request, folder_placer(root))
                 if p.name == "file" and p.filename is not None]
        if not parts:
            raise HTTPException(400, "the request holds no 'file' field")
        results, notes = await run_in_threadpool(_import, archive, root, parts)
    finally:
        await run_in_threadpool(shutil.rmtree, root, True)
    counts = count(results)
    body: dict[str, Any] = {"results": [_result_json(r) for r in results], "counts": counts,
                            "notes": notes}
    status = 200 if counts["stored"] + counts["duplicate"] else 422
    return JSONResponse(body, status_code=status)


routes = [Route("/uploads", upload, methods=["POST"])]
