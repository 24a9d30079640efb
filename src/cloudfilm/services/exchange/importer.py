"""Import from files, folders (recursive), .zip archives, .iso images and CD/USB media.

A folder or ISO 9660 image with a DICOMDIR (PS3.10 §7, PS3.11 Annex D) is read through
it; when the DICOMDIR is missing or broken the folder or image is scanned instead, and
the report says so. Files found by scanning that are not DICOM at all (README.TXT,
autorun files) are skipped, not failed; a file that claims to be DICOM but is corrupt
fails alone.

Hostile media are refused file by file, with a reason: member names with ``..`` or an
absolute path, symbolic links, zip bombs (see `ImportLimits`). Nothing is ever
extracted under a name taken from the medium: every file is streamed into a staging
file with a random name (storage/blobs.py), so no input can write outside staging.
"""

from __future__ import annotations

import io
import os
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import pycdlib
import pydicom

from cloudfilm.config import ImportSettings
from cloudfilm.domain.dataset_limits import check_part10
from cloudfilm.services.archive.ingest import FAILED, Admission, IngestOutcome, IngestService
from cloudfilm.storage.blobs import StagedBlob

BATCH = 50
SKIPPED = "skipped"
MAX_DICOMDIR_BYTES = 256 << 20
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ImportLimits:
    """Bounds against zip bombs and floods; CLOUDFILM_IMPORT_* settings override three of them.

    A member is refused when its declared or actual size passes ``max_member_bytes``, or
    when it expands more than ``max_ratio``:1 *and* past ``ratio_min_bytes`` (a CT slice
    of zeros compresses ~100:1, so the ratio alone would refuse honest data). An archive
    stops yielding bytes past ``max_total_bytes`` and is refused whole when it holds more
    than ``max_files`` entries.
    """

    max_member_bytes: int = ImportSettings.max_member_bytes
    max_ratio: int = 200
    ratio_min_bytes: int = 100 << 20
    max_total_bytes: int = ImportSettings.max_total_bytes
    max_files: int = ImportSettings.max_files

    @classmethod
    def from_settings(cls, settings: ImportSettings) -> ImportLimits:
        """The deployment's limits (``archive.settings.imports``)."""
        return cls(max_member_bytes=settings.max_member_bytes,
                   max_total_bytes=settings.max_total_bytes, max_files=settings.max_files)


class Refused(Exception):
    """A file is refused for safety; the message is the reason shown to the user."""


@dataclass(frozen=True)
class ImportItem:
    """One file to import; ``open`` gives its bytes; ``scanned`` means found by a folder walk.

    ``refusal`` set means the file is not read at all and fails with that reason.
    """

    name: str
    open: Callable[[], BinaryIO]
    scanned: bool = False
    refusal: str = ""


@dataclass(frozen=True)
class ImportResult:
    name: str
    status: str
    reason: str = ""
    sop_instance_uid: str = ""


def _nothing() -> BinaryIO:
    return io.BytesIO()


def refused_item(name: str, reason: str) -> ImportItem:
    return ImportItem(name, _nothing, refusal=reason)


def unsafe_name(name: str) -> str:
    """Why a relative name taken from a medium or an upload is unsafe, or "" if it is fine."""
    if "\x00" in name:
        return "the name holds a NUL character"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path refused"
    if any(part == ".." for part in re.split(r"[/\\]", name)):
        return "path traversal ('..') refused"
    return ""


def _looks_like_dicom(fh: BinaryIO) -> bool:
    head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _is_zip(path: Path) -> bool:
    return path.suffix.lower() == ".zip" and zipfile.is_zipfile(path)


def _is_iso(path: Path) -> bool:
    return path.suffix.lower() == ".iso" and path.is_file()


# -- DICOMDIR -------------------------------------------------------------------------


def referenced_file_ids(data: BinaryIO, where: str) -> list[list[str]]:
    """ReferencedFileID of every record (PS3.3 F.3.2.2); ValueError when unusable."""
    try:
        size = data.seek(0, io.SEEK_END)
        data.seek(0)
        check_part10(data, size)
        data.seek(0)
        ds = pydicom.dcmread(data)
        records = ds.DirectoryRecordSequence
    except Exception as exc:
        raise ValueError(f"DICOMDIR {where} is unreadable ({exc})") from exc
    found = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if file_id:
            found.append([str(file_id)] if isinstance(file_id, str) else [str(p) for p in file_id])
    return found


def _find_dicomdir(folder: Path) -> Path | None:
    for candidate in folder.iterdir():
        if candidate.name.upper() == "DICOMDIR" and candidate.is_file():
            return candidate
    return None


def _is_medium(folder: Path) -> bool:
    """A sub-folder that is a CD/USB copy of its own (it has a DICOMDIR)."""
    return not folder.is_symlink() and _find_dicomdir(folder) is not None


def _resolve_case(root: Path, parts: list[str]) -> Path:
    """CD file systems differ in case; match each component case-insensitively."""
    path = root
    for part in parts:
        exact = path / part
        if exact.exists() or not path.is_dir():
            path = exact
            continue
        matches = [c for c in path.iterdir() if c.name.upper() == part.upper()]
        path = matches[0] if matches else exact
    return path


def _outside(root: Path, path: Path) -> str:
    """Refusal for a referenced file that is a symlink or resolves outside ``root``."""
    if path.is_symlink():
        return "symbolic link refused"
    if not path.resolve().is_relative_to(root.resolve()):
        return "the file lies outside the medium"
    return ""


# -- the walk -------------------------------------------------------------------------


@dataclass
class _Budget:
    """Bytes one archive may still yield (its total extraction limit)."""

    left: int


class _LimitedReader(io.RawIOBase):
    """Reads a zip member, refusing once it passes its declared size or a limit."""

    def __init__(self, raw: BinaryIO, info: zipfile.ZipInfo, limits: ImportLimits,
                 budget: _Budget) -> None:
        super().__init__()
        self.raw, self.info, self.limits, self.budget = raw, info, limits, budget
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            return b"".join(iter(lambda: self.read(1 << 20), b""))
        data = self.raw.read(size)
        self.count += len(data)
        self.budget.left -= len(data)
        if reason := _actual_size_refusal(self.count, self.info, self.limits, self.budget):
            raise Refused(reason)
        return data

    def close(self) -> None:
        self.raw.close()
        super().close()


def _actual_size_refusal(count: int, info: zipfile.ZipInfo, limits: ImportLimits,
                         budget: _Budget) -> str:
    if count > info.file_size:
        return f"member expands past its declared size ({info.file_size} bytes)"
    if count > limits.ratio_min_bytes and count > limits.max_ratio * max(info.compress_size, 1):
        return f"compression ratio above {limits.max_ratio}:1 (zip bomb?)"
    if count > limits.max_member_bytes:
        return f"member is larger than the {limits.max_member_bytes}-byte limit"
    if budget.left < 0:
        return f"the archive expands past the {limits.max_total_bytes}-byte total limit"
    return ""


def _member_refusal(info: zipfile.ZipInfo, limits: ImportLimits) -> str:
    """Why a zip member is refused from its central directory entry alone, or ""."""
    if reason := unsafe_name(info.filename):
        return reason
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link refused"
    if info.flag_bits & 0x1:
        return "encrypted member"
    if info.file_size > limits.ratio_min_bytes and \
            info.file_size > limits.max_ratio * max(info.compress_size, 1):
        return f"compression ratio above {limits.max_ratio}:1 (zip bomb?)"
    if info.file_size > limits.max_member_bytes:
        return f"declared size {info.file_size} is above the {limits.max_member_bytes}-byte limit"
    return ""


@dataclass
class Walker:
    """Turns paths into import items; ``base`` makes names relative (upload folders)."""

    notes: list[str]
    limits: ImportLimits = field(default_factory=ImportLimits)
    base: Path | None = None

    def label(self, path: Path) -> str:
        if self.base is not None and path.is_relative_to(self.base):
            return path.relative_to(self.base).as_posix()
        return str(path)

    def file_item(self, path: Path, scanned: bool) -> ImportItem:
        return ImportItem(self.label(path), lambda: open(path, "rb"), scanned)

    def collect(self, paths: list[Path]) -> Iterator[ImportItem]:
        for path in paths:
            if path.is_dir():
                yield from self.folder(path)
            elif _is_zip(path):
                yield from self.zip_items(path)
            elif _is_iso(path):
                yield from self.iso_items(path)
            else:
                yield self.file_item(path, scanned=False)

    def folder(self, folder: Path) -> Iterator[ImportItem]:
        dicomdir = _find_dicomdir(folder)
        if dicomdir is not None:
            try:
                items = self._dicomdir_items(folder, dicomdir)
            except ValueError as exc:
                self.notes.append(f"{exc}; scanning the folder instead")
            else:
                yield from items
                return
        yield from self._scan(folder)

    def _dicomdir_items(self, folder: Path, dicomdir: Path) -> list[ImportItem]:
        with open(dicomdir, "rb") as fh:
            file_ids = referenced_file_ids(fh, str(self.label(dicomdir)))
        items, missing = [], []
        for parts in file_ids:
            if reason := unsafe_name("/".join(parts)):
                items.append(refused_item(f"{self.label(folder)}/{'/'.join(parts)}", reason))
                continue
            path = _resolve_case(folder, parts)
            if not path.is_file():
                missing.append(path)
            elif reason := _outside(folder, path):
                items.append(refused_item(self.label(path), reason))
            else:
                items.append(self.file_item(path, scanned=False))
        if missing:
            raise ValueError(f"DICOMDIR {self.label(dicomdir)} references {len(missing)} missing "
                             f"file(s), e.g. {self.label(missing[0])}")
        return items

    def _scan(self, folder: Path) -> Iterator[ImportItem]:
        """Every file below ``folder``, never following symbolic links (os.walk default);
        a sub-folder with its own DICOMDIR is read through it."""
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            here = Path(root)
            for media in [d for d in dirs if _is_medium(here / d)]:
                dirs.remove(media)
                yield from self.folder(here / media)
            for name in sorted(files) + [d for d in dirs if (here / d).is_symlink()]:
                path = here / name
                if name.upper() == "DICOMDIR" or name.startswith("."):
                    continue
                if path.is_symlink():
                    yield refused_item(self.label(path), "symbolic link refused")
                elif _is_zip(path):
                    yield from self.zip_items(path)
                elif _is_iso(path):
                    yield from self.iso_items(path)
                elif path.is_file():
                    yield self.file_item(path, scanned=True)

    def zip_items(self, archive: Path) -> Iterator[ImportItem]:
        label = self.label(archive)
        try:
            zf = zipfile.ZipFile(archive)
        except (OSError, zipfile.BadZipFile, ValueError, EOFError, NotImplementedError) as exc:
            yield refused_item(label, f"cannot read zip archive: {exc}")
            return
        with zf:
            yield from self._zip_members(zf, label)

    def _zip_members(self, zf: zipfile.ZipFile, label: str) -> Iterator[ImportItem]:
        infos = [i for i in zf.infolist() if not i.filename.endswith("/")]  # folders
        if len(infos) > self.limits.max_files:
            yield refused_item(label, f"{len(infos)} entries, above the limit of "
                                      f"{self.limits.max_files} (zip bomb?)")
            return
        budget = _Budget(self.limits.max_total_bytes)
        for info in infos:
            if Path(info.filename).name.upper() == "DICOMDIR":
                continue
            name = f"{label}!{info.filename}"
            if not info.filename:
                yield refused_item(name, "a member without a name")
            elif reason := _member_refusal(info, self.limits):
                yield refused_item(name, reason)
            else:
                yield ImportItem(name, self._member_opener(zf, info, budget), scanned=True)

    def _member_opener(self, zf: zipfile.ZipFile, info: zipfile.ZipInfo,
                       budget: _Budget) -> Callable[[], BinaryIO]:
        def _open() -> BinaryIO:
            reader = _LimitedReader(zf.open(info), info, self.limits, budget)  # type: ignore[arg-type]
            return reader  # type: ignore[return-value]
        return _open

    def iso_items(self, image: Path) -> Iterator[ImportItem]:
        """An ISO 9660 image (a CD or DVD copied to a file), read with pycdlib."""
        label = self.label(image)
        iso = pycdlib.PyCdlib()
        try:
            iso.open(str(image))
        except Exception as exc:  # noqa: BLE001 - pycdlib raises its own types for every kind of damage
            yield refused_item(label, f"cannot read ISO image: {exc}")
            return
        try:
            yield from self._iso_contents(_IsoImage(iso, label))
        finally:
            iso.close()

    def _iso_contents(self, image: _IsoImage) -> Iterator[ImportItem]:
        if len(image.files) > self.limits.max_files:
            yield refused_item(image.label, f"{len(image.files)} files, above the limit of "
                                            f"{self.limits.max_files}")
            return
        if "DICOMDIR" in image.files:
            try:
                items = image.dicomdir_items()
            except ValueError as exc:
                self.notes.append(f"{exc}; scanning the ISO image instead")
            else:
                yield from items
                return
        for name in sorted(image.files):
            if name != "DICOMDIR":
                yield image.item(name, scanned=True)


class _IsoImage:
    """The files of an open ISO 9660 image, by normalised name (``DICOM/P0000001/I0000001``).

    ISO 9660 identifiers carry a version (``;1``) and a bare ``.`` when there is no
    extension (ECMA-119 §7.5); DICOMDIR File IDs never do (PS3.10 §8.5), so both are
    stripped before matching.
    """

    def __init__(self, iso: pycdlib.PyCdlib, label: str) -> None:
        self.iso, self.label = iso, label
        self.files: dict[str, str] = {}
        for root, _dirs, names in iso.walk(iso_path="/"):
            for name in names:
                iso_path = f"{root.rstrip('/')}/{name}"
                self.files[_iso_normal(iso_path)] = iso_path

    def item(self, name: str, scanned: bool) -> ImportItem:
        iso_path = self.files[name]
        record = self.iso.get_record(iso_path=iso_path)
        rock_ridge = getattr(record, "rock_ridge", None)
        if rock_ridge is not None and rock_ridge.is_symlink():
            return refused_item(f"{self.label}!{name}", "symbolic link refused")
        return ImportItem(f"{self.label}!{name}", lambda: self._open(iso_path), scanned)

    def _open(self, iso_path: str) -> BinaryIO:
        return cast(BinaryIO, self.iso.open_file_from_iso(iso_path=iso_path))

    def dicomdir_items(self) -> list[ImportItem]:
        with self.iso.open_file_from_iso(iso_path=self.files["DICOMDIR"]) as fh:
            data = fh.read(MAX_DICOMDIR_BYTES)
        items, missing = [], []
        for parts in referenced_file_ids(io.BytesIO(data), f"{self.label}!DICOMDIR"):
            name = "/".join(p.upper() for p in parts)
            if reason := unsafe_name(name):
                items.append(refused_item(f"{self.label}!{name}", reason))
            elif name not in self.files:
                missing.append(name)
            else:
                items.append(self.item(name, scanned=False))
        if missing:
            raise ValueError(f"DICOMDIR {self.label}!DICOMDIR references {len(missing)} missing "
                             f"file(s), e.g. {missing[0]}")
        return items


def _iso_normal(iso_path: str) -> str:
    parts = []
    for part in iso_path.strip("/").split("/"):
        parts.append(part.split(";", 1)[0].rstrip(".").upper())
    return "/".join(parts)


# -- staging and ingest -----------------------------------------------------------------


def collect(paths: list[Path], notes: list[str]) -> Iterator[ImportItem]:
    """Kept for callers of the first version: items with the default limits."""
    return Walker(notes).collect(paths)


def _stage(service: IngestService, item: ImportItem) -> StagedBlob | ImportResult:
    if item.refusal:
        return ImportResult(item.name, FAILED, item.refusal)
    try:
        with item.open() as fh:
            if item.scanned and not _looks_like_dicom(fh):
                return ImportResult(item.name, SKIPPED, "not a DICOM file")
        with item.open() as fh:
            return service.blobs.stage_reader(fh)
    except Refused as exc:
        return ImportResult(item.name, FAILED, f"refused: {exc}")
    except (OSError, zipfile.BadZipFile, RuntimeError, ValueError, EOFError, zlib.error,
            struct.error) as exc:
        return ImportResult(item.name, FAILED, f"cannot read: {exc}")


def import_paths(service: IngestService, paths: list[Path],
                 on_result: Callable[[ImportResult], None], notes: list[str],
                 walker: Walker | None = None,
                 admission: Admission | None = None) -> list[ImportResult]:
    """Import everything under ``paths`` in batches; every file gets a result.

    ``admission`` screens each batch (patient uploads, services/access/admission.py).
    """
    results: list[ImportResult] = []
    batch: list[tuple[ImportItem, StagedBlob]] = []

    def flush() -> None:
        try:
            outcomes = service.ingest_staged([staged for _, staged in batch], admission=admission)
        except BaseException:
            for _, staged in batch:  # a failed run keeps nothing staged
                service.blobs.discard(staged)
            raise
        for (item, _), outcome in zip(batch, outcomes, strict=True):
            emit(_result(item, outcome))
        batch.clear()

    def emit(result: ImportResult) -> None:
        results.append(result)
        on_result(result)

    for item in (walker or Walker(notes)).collect(paths):
        staged = _stage(service, item)
        if isinstance(staged, ImportResult):
            emit(staged)
            continue
        batch.append((item, staged))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return results


def _result(item: ImportItem, outcome: IngestOutcome) -> ImportResult:
    return ImportResult(item.name, outcome.status, outcome.reason, outcome.sop_instance_uid)


def count(results: list[ImportResult]) -> dict[str, int]:
    """Results per status, in the order the CLI and the upload API report them."""
    statuses = ("stored", "duplicate", FAILED, SKIPPED)
    return {s: sum(r.status == s for r in results) for s in statuses}
