"""Patient uploads: ``POST /api/uploads`` (multipart/form-data, RFC 7578), then import.

Each ``file`` field (a .zip, an .iso, a .dcm, or the files of a folder, whose names
keep their relative paths as browsers send them for folder uploads) is streamed to
disk as it arrives (python-multipart's incremental parser), under a fresh folder of
the data directory, at a path checked component by component: a name with ``..``, an
absolute path or a NUL is refused with a reason and its bytes are dropped. The
folder is then imported exactly like ``cloudfilm import`` does (services/exchange/importer.py,
with its zip-bomb limits) and removed. The answer lists every file's result:
200 when anything was stored (or already was), 422 when nothing could be. ``summary``
groups the results by outcome and plain reason, in the caller's language, for the page.

Uploads go into a patient's folder: ``?person=ID``, or by default the caller's own
(a patient's, a share link's, or the one patient a caregiver acts for). Every instance
is screened by `services.admission.UploadAdmission`: one of another patient fails
alone with the reason, and the rest is stored. Operators and admins are not screened.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from python_multipart.multipart import parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import client_ip, principal
from cloudfilm.api.media import parse_media_type
from cloudfilm.i18n import N_, Localizer, localizer
from cloudfilm.services.access.admission import FolderRefused, UploadAdmission
from cloudfilm.services.archive.ingest import NOT_ADDABLE_HERE
from cloudfilm.services.archive.multipart_stream import MalformedMultipart, PartStream, boundary_problem
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.importer import (
    ImportLimits,
    ImportResult,
    Walker,
    count,
    import_paths,
    unsafe_name,
)

MAX_UPLOAD_BYTES = 16 << 30
MAX_PARTS = 100_000
MAX_FIELD_BYTES = 64 << 10
STALE_SECONDS = 24 * 3600


class TooLarge(ValueError):
    """The body passes a size or count limit (413)."""


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


class FormDataReceiver(PartStream):
    """File fields go straight to the paths ``place`` picks; short text fields are kept."""

    passthrough = (OSError, TooLarge)

    def __init__(self, boundary: str, place: Placer, max_bytes: int = MAX_UPLOAD_BYTES) -> None:
        super().__init__(boundary, "multipart/form-data body")
        self.place = place
        self.max_bytes = max_bytes
        self.parts: list[FormPart] = []
        self.received = 0
        self._part: FormPart | None = None
        self._fh: BinaryIO | None = None
        self._text = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.received > self.max_bytes:
            raise TooLarge(f"the upload is larger than {self.max_bytes} bytes")
        super().feed(chunk)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()

    def start_part(self, headers: dict[str, str]) -> None:
        if len(self.parts) >= MAX_PARTS:
            raise TooLarge(f"the upload holds more than {MAX_PARTS} parts")
        _kind, options = parse_options_header(headers.get("content-disposition", "").encode("latin-1"))
        part = self._part = FormPart(options.get(b"name", b"").decode("utf-8", "replace"))
        self._text = bytearray()
        raw_filename = options.get(b"filename")
        if raw_filename is None:
            return
        part.filename = raw_filename.decode("utf-8", "replace") or f"upload-{len(self.parts) + 1}"
        target = self.place(part.name, part.filename)
        if isinstance(target, str):
            part.error = target
            return
        try:
            self._fh = open(target, "xb")  # noqa: SIM115 - closed in end_part
        except OSError as exc:
            part.error = f"cannot write this file: {exc.strerror}"
        else:
            part.path = target

    def part_data(self, data: bytes) -> None:
        part = self._part
        if part is None:
            return
        if self._fh is not None:
            self._fh.write(data)
            part.size += len(data)
        elif part.filename is None:
            self._text += data
            if len(self._text) > MAX_FIELD_BYTES:
                raise TooLarge(f"field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes")

    def end_part(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._part is not None:
            if self._part.filename is None:
                self._part.value = self._text.decode("utf-8", "replace")
            self.parts.append(self._part)
        self._part = None


def form_boundary(request: Request) -> str:
    """The boundary of a multipart/form-data request; 415 or 400 otherwise."""
    media = parse_media_type(request.headers.get("content-type", ""))
    if media.type != "multipart/form-data":
        raise HTTPException(415, f"unsupported media type {media.type or '(none)'}: "
                                 "send multipart/form-data with one or more 'file' fields")
    boundary = media.params.get("boundary")
    if not boundary:
        raise HTTPException(400, "malformed multipart/form-data body: the boundary is missing")
    if reason := boundary_problem(boundary):
        raise HTTPException(400, reason)
    return boundary


async def receive_form(request: Request, place: Placer,
                       max_bytes: int = MAX_UPLOAD_BYTES) -> list[FormPart]:
    """Stream the request body through a FormDataReceiver; errors become 400 or 413."""
    receiver = FormDataReceiver(form_boundary(request), place, max_bytes)
    try:
        async for chunk in request.stream():
            receiver.feed(chunk)
        receiver.finish()
        return receiver.parts
    except MalformedMultipart as exc:
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


def _import(archive: Archive, root: Path, parts: list[FormPart],
            admission: UploadAdmission) -> tuple[list[ImportResult], list[str]]:
    """Refused parts fail with their reason; the rest is imported as one folder."""
    results = [ImportResult(p.filename or p.name, "failed", p.error) for p in parts if p.error]
    notes: list[str] = []
    if any(p.path is not None for p in parts):
        walker = Walker(notes, ImportLimits.from_settings(archive.settings.imports), base=root)
        results += import_paths(archive.ingest, [root], lambda r: None, notes, walker, admission)
    return results, notes


def _admission(request: Request) -> UploadAdmission:
    raw = request.query_params.get("person")
    if raw is not None and not raw.isdigit():
        raise HTTPException(400, "person must be a person id (a number)")
    try:
        return UploadAdmission(request.app.state.archive, principal(request),
                               int(raw) if raw is not None else None, client_ip(request))
    except FolderRefused as exc:
        raise HTTPException(403, str(exc)) from exc


# Why files failed, in plain words a patient reads in their language: the admission's and
# importer's reasons (services/access/admission.py, services/exchange/importer.py) by their opening words.
# A reason not listed is shown as "the file could not be read" with the original kept.
PLAIN_REASONS: tuple[tuple[str, str], ...] = (
    (NOT_ADDABLE_HERE, N_("this hospital record is not yours; ask the hospital for its claim "
                          "code")),
    ("these images are of another patient", N_("these images are of another patient")),
    ("these images are not in a patient's folder",
     N_("upload them from the page of the patient they belong to")),
    ("not allowed to upload here", N_("you may not add images here")),
    ("not a DICOM file", N_("not a medical image (DICOM) file")),
)
UNREADABLE = N_("the file could not be read")
STATUS_WORDS = {"stored": N_("stored"), "duplicate": N_("already there")}


def plain_reason(result: ImportResult, loc: Localizer) -> str:
    """The result's reason as a patient reads it ("stored", "already there" for those)."""
    if result.status in STATUS_WORDS:
        return loc.gettext(STATUS_WORDS[result.status])
    for opening, plain in PLAIN_REASONS:
        if result.reason.startswith(opening):
            return loc.gettext(plain)
    return loc.gettext(UNREADABLE)


def summarise(results: list[ImportResult], loc: Localizer) -> list[dict[str, Any]]:
    """One line per outcome and reason ("120 images: this hospital record is not yours"),
    not one per file: a CD holds hundreds of files that fail for the same reason."""
    groups: dict[tuple[str, str], list[ImportResult]] = {}
    for result in results:
        groups.setdefault((result.status, plain_reason(result, loc)), []).append(result)
    return [{"status": status, "reason": reason, "count": len(members),
             "text": loc.ngettext("%(num)s image: %(reason)s", "%(num)s images: %(reason)s",
                                  len(members), reason=reason),
             "examples": [m.name for m in members[:3]]}
            for (status, reason), members in groups.items()]


# Reasons kept word for word in each result, translated (the rest stay as written).
TRANSLATED_REASONS = (
    N_("this hospital record cannot be added here; ask the hospital for its claim code"),
)
assert NOT_ADDABLE_HERE in TRANSLATED_REASONS


def _result_json(result: ImportResult, loc: Localizer) -> dict[str, str]:
    reason = loc.gettext(result.reason) if result.reason in TRANSLATED_REASONS else result.reason
    return {"name": result.name, "status": result.status, "reason": reason,
            "sop_instance_uid": result.sop_instance_uid}


async def upload(request: Request) -> Response:
    admission = await run_in_threadpool(_admission, request)
    archive: Archive = request.app.state.archive
    form_boundary(request)
    root = scratch_dir(archive, "upload")
    try:
        parts = [p for p in await receive_form(request, folder_placer(root))
                 if p.name == "file" and p.filename is not None]
        if not parts:
            raise HTTPException(400, "the request holds no 'file' field")
        results, notes = await run_in_threadpool(_import, archive, root, parts, admission)
    finally:
        await run_in_threadpool(shutil.rmtree, root, True)
    counts = count(results)
    loc = localizer(request)
    body: dict[str, Any] = {"summary": summarise(results, loc), "counts": counts,
                            "results": [_result_json(r, loc) for r in results], "notes": notes}
    status = 200 if counts["stored"] + counts["duplicate"] else 422
    return JSONResponse(body, status_code=status)


routes = [Route("/uploads", upload, methods=["POST"])]
