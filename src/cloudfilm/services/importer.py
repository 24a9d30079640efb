"""Import from files, folders (recursive), .zip archives and CD/USB folders with a DICOMDIR.

A folder with a DICOMDIR (PS3.10 §7, PS3.11) is read through it; when the DICOMDIR
is missing or broken the folder is scanned instead, and the report says so.
Files found by scanning that are not DICOM at all (README.TXT, autorun files) are
skipped, not failed; a file that claims to be DICOM but is corrupt fails alone.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom

from cloudfilm.services.ingest import FAILED, IngestOutcome, IngestService
from cloudfilm.storage.blobs import StagedBlob

BATCH = 50
SKIPPED = "skipped"


@dataclass(frozen=True)
class ImportItem:
    """One file to import; ``open`` gives its bytes; ``scanned`` means found by a folder walk."""

    name: str
    open: Callable[[], BinaryIO]
    scanned: bool = False


@dataclass(frozen=True)
class ImportResult:
    name: str
    status: str
    reason: str = ""
    sop_instance_uid: str = ""


def _looks_like_dicom(fh: BinaryIO) -> bool:
    head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _find_dicomdir(folder: Path) -> Path | None:
    for candidate in folder.iterdir():
        if candidate.name.upper() == "DICOMDIR" and candidate.is_file():
            return candidate
    return None


def _dicomdir_files(dicomdir: Path) -> list[Path]:
    """Files referenced by a DICOMDIR; raises ValueError when it can't be used."""
    try:
        ds = pydicom.dcmread(dicomdir)
        records = ds.DirectoryRecordSequence
    except Exception as exc:
        raise ValueError(f"DICOMDIR {dicomdir} is unreadable ({exc})") from exc
    files = []
    for record in records:
        file_id = record.get("ReferencedFileID")
        if file_id:
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            files.append(_resolve_case(dicomdir.parent, parts))
    missing = [f for f in files if not f.is_file()]
    if missing:
        raise ValueError(f"DICOMDIR {dicomdir} references {len(missing)} missing file(s), "
                         f"e.g. {missing[0]}")
    return files


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


def _file_item(path: Path, scanned: bool) -> ImportItem:
    return ImportItem(str(path), lambda: open(path, "rb"), scanned)


def _walk(folder: Path, notes: list[str]) -> Iterator[ImportItem]:
    dicomdir = _find_dicomdir(folder)
    if dicomdir is not None:
        try:
            for path in _dicomdir_files(dicomdir):
                yield _file_item(path, scanned=False)
            return
        except ValueError as exc:
            notes.append(f"{exc}; scanning the folder instead")
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name.upper() != "DICOMDIR" and not path.name.startswith("."):
            if path.suffix.lower() == ".zip":
                yield from _zip_items(path)
            else:
                yield _file_item(path, scanned=True)


def _zip_items(archive: Path) -> Iterator[ImportItem]:
    with zipfile.ZipFile(archive) as zf:
        names = [i.filename for i in zf.infolist()
                 if not i.is_dir() and Path(i.filename).name.upper() != "DICOMDIR"]
    for name in names:
        yield ImportItem(f"{archive}!{name}", _zip_opener(archive, name), scanned=True)


def _zip_opener(archive: Path, name: str) -> Callable[[], BinaryIO]:
    def _open() -> BinaryIO:
        zf = zipfile.ZipFile(archive)
        return zf.open(name)  # type: ignore[return-value]
    return _open


def collect(paths: list[Path], notes: list[str]) -> Iterator[ImportItem]:
    for path in paths:
        if path.is_dir():
            yield from _walk(path, notes)
        elif path.suffix.lower() == ".zip" and zipfile.is_zipfile(path):
            yield from _zip_items(path)
        else:
            yield _file_item(path, scanned=False)


def _stage(service: IngestService, item: ImportItem) -> StagedBlob | ImportResult:
    try:
        with item.open() as fh:
            if item.scanned and not _looks_like_dicom(fh):
                return ImportResult(item.name, SKIPPED, "not a DICOM file")
        with item.open() as fh:
            return service.blobs.stage_reader(fh)
    except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
        return ImportResult(item.name, FAILED, f"cannot read: {exc}")


def import_paths(service: IngestService, paths: list[Path],
                 on_result: Callable[[ImportResult], None], notes: list[str]) -> list[ImportResult]:
    """Import everything under ``paths`` in batches; every file gets a result."""
    results: list[ImportResult] = []
    batch: list[tuple[ImportItem, StagedBlob]] = []

    def flush() -> None:
        outcomes = service.ingest_staged([staged for _, staged in batch])
        for (item, _), outcome in zip(batch, outcomes):
            emit(_result(item, outcome))
        batch.clear()

    def emit(result: ImportResult) -> None:
        results.append(result)
        on_result(result)

    for item in collect(paths, notes):
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
