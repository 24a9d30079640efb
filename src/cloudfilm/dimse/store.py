"""C-STORE SCP (PS3.4 B.2.2): received bytes go through the same ingest as STOW-RS.

The data set is kept exactly as it arrived on the wire (no decode, no re-encode).
pynetdicom's file-based receive (``_config.STORE_RECV_CHUNKED_DATASET``, switched on
by dimse/server.py) streams it to a Part-10 file in staging while it arrives: 128-byte
preamble, ``DICM``, the File Meta Information (PS3.10 §7.1) for the negotiated transfer
syntax, then the received bytes, so memory stays flat whatever the size. The handler
adopts that file (hash, fsync, a staging name of its own), parses it once and ingests
it; Success is sent only after the group commit has fsynced staging, committed the
index row and published the blob, so a Success survives a crash like a STOW 200 does.
Concurrent associations share group commits.

A registered node is a hospital source: it adds to any record and corrects stored
demographics. An AE admitted only by ``CLOUDFILM_DIMSE_ALLOW`` follows the upload
admission rule (issue 11): it may create records the index has never seen (left
unlinked) and add to those within the same association, but never joins a record
or study stored before, and never changes demographics; such an instance fails
alone with 0124H and the same reason a patient's upload gets.
"""

from __future__ import annotations

import logging
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import cast

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info
from pynetdicom.association import Association
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.events import Event
from pynetdicom.status import STATUS_FAILURE, STORAGE_SERVICE_CLASS_STATUS

from cloudfilm.dimse import caller
from cloudfilm.services.archive.ingest import (
    NOT_AUTHORIZED,
    Admission,
    IngestOutcome,
    PreparedInstance,
)
from cloudfilm.services.context import Archive
from cloudfilm.storage.blobs import StagedBlob
from cloudfilm.storage.index.writer import RecordKey, WriteRights
from cloudfilm.storage.staging import durability_event

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


def received_file(event: Event) -> Path | None:
    """Where pynetdicom's file-based receive wrote the data set, or None when it is off."""
    try:
        path: Path | None = event.dataset_path
    except AttributeError:  # not a C-STORE request
        return None
    return Path(path) if path else None


def received_bytes(event: Event) -> bytes:
    """The data set exactly as received, when pynetdicom kept it in memory (a BytesIO)."""
    data = request_of(event).DataSet
    return data.getvalue() if data is not None else b""


def part10_header(file_meta: FileMetaDataset) -> bytes:
    """Preamble, prefix and the File Meta Information group (with its group length)."""
    buffer = BytesIO()
    buffer.write(b"\x00" * 128 + b"DICM")
    write_file_meta_info(buffer, file_meta, enforce_standard=True)  # type: ignore[arg-type]
    return buffer.getvalue()


# Hashing and fsyncing a received file (both release the GIL) run here while it is parsed;
# the group commit waits for the fsync only before its transaction commits.
_SEALING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="c-store-seal")


def receive(event: Event, archive: Archive) -> PreparedInstance:
    """The received instance staged and parsed once: the file pynetdicom wrote, hashed
    and fsynced beside the parse (the fsync is still ``syncing`` when this returns), or
    (file-based receive off) one written and sealed here."""
    path = received_file(event)
    if path is None:
        return archive.ingest.prepare(archive.blobs.stage_chunks(
            (part10_header(event.file_meta), received_bytes(event))))
    unsealed = StagedBlob(archive.blobs.adopt(path), 0, "")
    hashing = _SEALING.submit(archive.blobs.identify, unsealed.path)
    syncing: Future[object] = _SEALING.submit(archive.blobs.seal, unsealed)
    try:
        prepared = archive.ingest.prepare(unsealed)
        prepared.staged = hashing.result()
    except BaseException:
        wait([hashing])  # neither may still read the file when it is dropped
        wait([syncing])
        archive.blobs.discard(unsealed)
        raise
    prepared.syncing.append(syncing)
    return prepared


@dataclass
class UnregisteredSender:
    """An `Admission` for one association of an AE that is not a registered node.

    Every C-STORE is its own ingest batch, so the records this association created are
    remembered here: a study of many instances arrives whole, and nothing else joins.
    """

    ae_title: str
    created: set[RecordKey] = field(default_factory=set)

    def screen(self, pending: list[PreparedInstance]) -> None:
        """Nothing to look up before writing: the writer refuses what is not joinable."""

    def rights(self) -> WriteRights:
        return WriteRights(changes_demographics=False, joinable=frozenset(self.created),
                           source=f"aet:{self.ae_title}")

    def settle(self, pending: list[PreparedInstance]) -> None:
        self.created.update((p.facts.patient["patient_id"], p.facts.patient["issuer"])
                            for p in pending if p.facts is not None and p.outcome is not None
                            and p.outcome.ok)


@dataclass
class RegisteredSender:
    """A registered node's association: a hospital source."""

    ae_title: str

    def screen(self, pending: list[PreparedInstance]) -> None:
        """A hospital's node is not screened."""

    def rights(self) -> WriteRights:
        return WriteRights(changes_demographics=True, joinable=None,
                           source=f"aet:{self.ae_title}")

    def settle(self, pending: list[PreparedInstance]) -> None:
        """Stores are audited by `caller.audit_once`."""


_senders: weakref.WeakKeyDictionary[Association, Admission] = weakref.WeakKeyDictionary()
_senders_lock = threading.Lock()


def admission_for(event: Event) -> Admission:
    """The association's admission, made at its first C-STORE and kept until it ends."""
    with _senders_lock:
        known = _senders.get(event.assoc)
        if known is None:
            calling = caller.caller_of(event)
            known = _senders[event.assoc] = RegisteredSender(calling.ae_title) \
                if calling.is_registered_node else UnregisteredSender(calling.ae_title)
        return known


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


def _ingest(archive: Archive, prepared: PreparedInstance, event: Event) -> int | Dataset:
    mismatch = uid_mismatch(prepared, event)
    if mismatch:
        archive.blobs.discard(prepared.staged)
        return failure(DATASET_MISMATCH, mismatch)
    try:
        outcome = archive.ingest.index_and_publish([prepared], admission_for(event))[0]
    except OSError as exc:
        log.exception("C-STORE ingest ran out of resources")
        return failure(OUT_OF_RESOURCES, f"cannot store: {exc.strerror or exc}")
    if outcome.ok:
        durability_event("ack", outcome.sop_instance_uid)
        caller.audit_once(event, archive, "store", outcome.study_uid)
    elif outcome.code == NOT_AUTHORIZED:
        caller.audit_refused_once(event, archive, "store", outcome.reason)
    return status_for(outcome)


def handle_store(event: Event, archive: Archive) -> int | Dataset:
    """EVT_C_STORE: stage, seal and ingest one instance; a failure never ends the association."""
    sop_uid = request_of(event).AffectedSOPInstanceUID
    try:
        prepared = receive(event, archive)
    except OSError as exc:
        log.exception("C-STORE could not stage the received data set")
        return failure(OUT_OF_RESOURCES, f"cannot stage: {exc.strerror or exc}")
    except Exception as exc:  # a bug or an unexpected parse error: report it, keep serving
        log.exception("C-STORE of %s could not be read", sop_uid)
        return failure(CANNOT_UNDERSTAND, f"cannot store: {exc}")
    try:
        status = _ingest(archive, prepared, event)
    except Exception as exc:  # a bug: report it, keep serving
        log.exception("C-STORE of %s failed", sop_uid)
        archive.blobs.discard(prepared.staged)
        return failure(CANNOT_UNDERSTAND, f"cannot store: {exc}")
    if isinstance(status, Dataset):
        log.warning("C-STORE of %s refused: 0x%04X %s", sop_uid, status.Status, status.ErrorComment)
    return status
