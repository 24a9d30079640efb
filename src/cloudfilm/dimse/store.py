"""C-STORE SCP (PS3.4 B.2.2): received bytes go through the same ingest as STOW-RS.

The data set is kept exactly as it arrived on the wire (no decode, no re-encode):
a Part-10 file is written to staging as 128-byte preamble, ``DICM``, the File Meta
Information (PS3.10 §7.1) for the negotiated transfer syntax, then the received
bytes. It is hashed while written, fsynced by `seal`, and ingested; Success is
sent only after ingest has committed the index row and published the blob, so a
Success survives a crash like a STOW 200 does.
"""

from __future__ import annotations

import hashlib
import logging
from io import BytesIO
from typing import cast

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.status import STATUS_FAILURE, STORAGE_SERVICE_CLASS_STATUS

from cloudfilm.dimse import caller
from cloudfilm.services.archive import Archive
from cloudfilm.services.ingest import IngestOutcome, PreparedInstance
from cloudfilm.storage.blobs import BlobStore, StagedBlob

log = logging.getLogger(__name__)

SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700  # PS3.4 B.2.3: Refused, Out of Resources
DATASET_MISMATCH = 0xA900  # PS3.4 B.2.3: Error, Data Set does not match SOP Class
CANNOT_UNDERSTAND = 0xC000  # PS3.4 B.2.3: Error, Cannot understand


def failure(status: int, comment: str) -> Dataset:
    """A failure status with its Error Comment (0000,0902), an LO of at most 64 characters."""
    ds = Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


def request_of(event: Event) -> C_STORE:
    return cast(C_STORE, event.request)


def received_bytes(event: Event) -> bytes:
    """The data set exactly as received (pynetdicom keeps it encoded in a BytesIO)."""
    data = request_of(event).DataSet
    return data.getvalue() if data is not None else b""


def part10_header(file_meta: FileMetaDataset) -> bytes:
    """Preamble, prefix and the File Meta Information group (with its group length)."""
    buffer = BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, file_meta, enforce_standard=True)  # type: ignore[arg-type]
    return buffer.getvalue()


def stage(event: Event, blobs: BlobStore) -> StagedBlob:
    """Write the received instance into staging as a Part-10 file, hashed, then fsync it."""
    path, fh = blobs.new_staging_file()
    digest, size = hashlib.sha256(), 0
    try:
        with fh:
            for chunk in (part10_header(event.file_meta), received_bytes(event)):
                fh.write(chunk)
                digest.update(chunk)
                size += len(chunk)
        return blobs.seal(path, size, digest.hexdigest())
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def uid_mismatch(prepared: PreparedInstance, event: Event) -> str | None:
    """The data set's SOP Class/Instance UIDs must be the request's Affected ones (PS3.7 §9.1.1).

    Otherwise the File Meta Information written from the request would contradict
    the data set. An unparseable file is left to ingest, which names the problem.
    """
    if prepared.facts is None:
        return None
    request = request_of(event)
    for keyword, found, expected in (
            ("SOPInstanceUID", prepared.facts.sop_instance_uid, request.AffectedSOPInstanceUID),
            ("SOPClassUID", prepared.facts.sop_class_uid, request.AffectedSOPClassUID)):
        if found and found != str(expected):
            return f"{keyword} {found} differs from the request's {expected}"
    return None


def status_for(outcome: IngestOutcome) -> int | Dataset:
    """Stored and duplicate are Success; a failure keeps ingest's code when it is a C-STORE one."""
    if outcome.ok:
        return SUCCESS
    code = outcome.code if outcome.code is not None else CANNOT_UNDERSTAND
    known = STORAGE_SERVICE_CLASS_STATUS.get(code, ("",))[0] == STATUS_FAILURE
    return failure(code if known else CANNOT_UNDERSTAND, outcome.reason or "not stored")


def _ingest(archive: Archive, staged: StagedBlob, event: Event) -> int | Dataset:
    prepared = archive.ingest.prepare(staged)  # parsed once, checked, then indexed
    mismatch = uid_mismatch(prepared, event)
    if mismatch:
        archive.blobs.discard(staged)
        return failure(DATASET_MISMATCH, mismatch)
    try:
        outcome = archive.ingest.index_and_publish([prepared])[0]
    except OSError as exc:
        log.exception("C-STORE ingest ran out of resources")
        return failure(OUT_OF_RESOURCES, f"cannot store: {exc.strerror or exc}")
    if outcome.ok:
        caller.audit_once(event, archive, "store", outcome.study_uid)
    return status_for(outcome)


def handle_store(event: Event, archive: Archive) -> int | Dataset:
    """EVT_C_STORE: stage, seal and ingest one instance; a failure never ends the association."""
    try:
        staged = stage(event, archive.blobs)
    except OSError as exc:
        log.exception("C-STORE could not stage the received data set")
        return failure(OUT_OF_RESOURCES, f"cannot stage: {exc.strerror or exc}")
    try:
        status = _ingest(archive, staged, event)
    except Exception as exc:  # a bug or an unexpected parse error: report it, keep serving
        log.exception("C-STORE of %s failed", request_of(event).AffectedSOPInstanceUID)
        archive.blobs.discard(staged)
        return failure(CANNOT_UNDERSTAND, f"cannot store: {exc}")
    if isinstance(status, Dataset):
        log.warning("C-STORE of %s refused: 0x%04X %s", request_of(event).AffectedSOPInstanceUID,
                    status.Status, status.ErrorComment)
    return status
