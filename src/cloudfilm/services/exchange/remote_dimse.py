"""DIMSE SCU toward another archive (pynetdicom): C-ECHO, C-FIND, C-MOVE, C-GET and C-STORE.

Everything here is transport: it turns typed requests into DIMSE messages and statuses
into typed results or a `RemoteError` that says what went wrong. What to fetch, and
where received bytes go, is decided by `services.remote`.
"""

from __future__ import annotations

import io
import shutil
import socket
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, _config, build_context, build_role, evt
from pynetdicom.association import Association
from pynetdicom.presentation import PresentationContext

from cloudfilm.domain.nodes import Node
from cloudfilm.services.exchange.remote_types import (
    InstanceResult,
    LocalAE,
    Progress,
    ProgressCallback,
    RemoteError,
    RemoteInstance,
    RemoteStudy,
    RemoteUnreachable,
    StudyQuery,
)

VERIFICATION = "1.2.840.10008.1.1"  # PS3.4 A.4
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # PS3.4 C.6.2: Study Root Q/R model
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
PENDING = (0xFF00, 0xFF01)
SUCCESS, SUB_OPERATION_WARNING = 0x0000, 0xB000  # PS3.4 C.4.2.1.5 / C.4.3.1.4
STORE_WARNINGS = (0xB000, 0xB006, 0xB007)  # PS3.4 B.2.3: stored, with coercion or discards
MOVE_DESTINATION_UNKNOWN = 0xA801
CANNOT_UNDERSTAND = 0xC000
MAX_CONTEXTS = 128  # PS3.8 §9.3.2.2: presentation context IDs are odd numbers 1..255
UIDS_PER_REQUEST = 100  # keeps the SOPInstanceUID list well under its 64 KiB element limit
# Every syntax an instance may be stored in, each its own context so the peer can send
# the stored bytes unchanged instead of transcoding (it picks one syntax per context).
AS_STORED = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian,
             JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLossless, JPEGLSLossless,
             JPEGLSNearLossless, JPEG2000Lossless, JPEG2000, RLELossless)
# When the remote C-FIND answers without SOP Class UIDs, C-GET offers these storage classes.
COMMON_STORAGE = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1",
                  "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.4.1",
                  "1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1",
                  "1.2.840.10008.5.1.4.1.1.6.1", "1.2.840.10008.5.1.4.1.1.7",
                  "1.2.840.10008.5.1.4.1.1.128", "1.2.840.10008.5.1.4.1.1.88.11")

# (SOP Instance UID from the C-STORE request, Part-10 bytes) -> (result, C-STORE status)
StoreHandler = Callable[[str, bytes], tuple[InstanceResult, int]]


@dataclass(frozen=True)
class Outgoing:
    """A stored instance to C-STORE: how to read it and how it is encoded."""

    open: Callable[[], BinaryIO]
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str


def describe(node: Node) -> str:
    return f"{node.name} ({node.ae_title}@{node.host}:{node.port})"


def _probe(host: str, port: int, timeout: float) -> str:
    """Why a TCP connection to host:port fails, in words (used only after a failure)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return "it accepted the connection but aborted the association"
    except TimeoutError:
        return f"no answer within {timeout:g} s"
    except OSError as exc:
        return exc.strerror or str(exc)


def _why_not_established(assoc: Association, node: Node, started: float, timeout: float) -> str:
    """Rejected, silent (timed out) or unreachable: the three ways an association fails."""
    if assoc.is_rejected:
        return ("it rejected the association (our calling AE title or its called AE title "
                "is not accepted there; PS3.8 §7.1.1.9)")
    if time.monotonic() - started >= 0.9 * timeout:
        return f"no answer within {timeout:g} s (CLOUDFILM_REMOTE_TIMEOUT)"
    return _probe(node.host, node.port, timeout)


def _comment(status: Dataset) -> str:
    text = str(status.get("ErrorComment", "") or "").strip()
    return f" ({text})" if text else ""


class DimseClient:
    """One remote node seen as an SCU; opens a short association per operation."""

    def __init__(self, node: Node, calling_ae: str, timeout: float) -> None:
        self.node = node
        self.calling_ae = calling_ae
        self.timeout = timeout
        self.where = describe(node)
        self._since = time.monotonic()  # when the last request was sent or answer received

    def _status(self, status: Dataset, operation: str) -> int:
        """The Status of a response. An empty one means the association ended: after the
        whole timeout it was ours (silence), sooner it was the peer's A-ABORT."""
        if "Status" in status:
            self._since = time.monotonic()
            return int(status.Status)
        if time.monotonic() - self._since >= 0.9 * self.timeout:
            raise RemoteUnreachable(f"{self.where}: no {operation} response within "
                                    f"{self.timeout:g} s (CLOUDFILM_REMOTE_TIMEOUT)")
        raise RemoteUnreachable(f"{self.where} aborted the association during {operation} "
                                f"(does it allow {operation} from our AE title "
                                f"{self.calling_ae!r}?)")

    @contextmanager
    def _association(self, contexts: list[PresentationContext], roles: Sequence[Any] = (),
                     handlers: Sequence[Any] = ()) -> Iterator[Association]:
        """Associate within the timeout (TCP connect, A-ASSOCIATE, every DIMSE response)."""
        ae = AE(ae_title=self.calling_ae)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        started = time.monotonic()
        assoc = ae.associate(self.node.host, self.node.port, contexts=contexts,
                             ae_title=self.node.ae_title, ext_neg=list(roles) or None,
                             evt_handlers=list(handlers) or None)
        try:
            if not assoc.is_established:
                why = _why_not_established(assoc, self.node, started, self.timeout)
                raise RemoteUnreachable(f"cannot reach {self.where}: {why}")
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()
            ae.shutdown()

    def _find(self, assoc: Association, identifier: Dataset) -> list[Dataset]:
        """Run one C-FIND, collecting the pending identifiers (PS3.4 C.4.1.1.4)."""
        found: list[Dataset] = []
        self._since = time.monotonic()
        for status, answer in assoc.send_c_find(identifier, STUDY_ROOT_FIND):
            code = self._status(status, "C-FIND")
            if code in PENDING:
                if answer is not None:
                    found.append(answer)
            elif code != SUCCESS:
                raise RemoteError(f"{self.where}: C-FIND failed with status 0x{code:04X}"
                                  + _comment(status))
        return found

    def find_studies(self, query: StudyQuery) -> list[RemoteStudy]:
        """Study Root C-FIND at STUDY level (PS3.4 C.6.2); empty keys ask for the value."""
        with self._association([build_context(STUDY_ROOT_FIND)]) as assoc:
            return [_study(ds) for ds in self._find(assoc, study_identifier(query))]

    def list_instances(self, study_uid: str) -> list[RemoteInstance]:
        """SERIES then IMAGE level C-FIND: the hierarchical search of PS3.4 C.4.1.3.1.1
        needs the unique keys of every level above the one queried."""
        with self._association([build_context(STUDY_ROOT_FIND)]) as assoc:
            series = self._find(assoc, level_identifier("SERIES", study_uid))
            instances: list[RemoteInstance] = []
            for item in series:
                series_uid = str(item.get("SeriesInstanceUID", ""))
                answers = self._find(assoc, level_identifier("IMAGE", study_uid, series_uid))
                instances += [_instance(study_uid, series_uid, ds) for ds in answers]
        return [i for i in instances if i.sop_uid]

    def echo(self) -> None:
        """C-ECHO (PS3.4 A.4): proves the node answers DIMSE, or raises RemoteError."""
        with self._association([build_context(VERIFICATION)]) as assoc:
            self._since = time.monotonic()
            code = self._status(assoc.send_c_echo(), "C-ECHO")
        if code != SUCCESS:
            raise RemoteError(f"{self.where}: C-ECHO answered status 0x{code:04X}")

    # -- retrieve ----------------------------------------------------------
    def move(self, instances: Sequence[RemoteInstance], destination: str,
             progress: ProgressCallback) -> dict[str, str]:
        """C-MOVE at IMAGE level to ``destination`` (PS3.4 C.4.2); returns the reasons the
        peer gave for instances it could not send, by SOP Instance UID."""
        failures: dict[str, str] = {}
        counted = 0
        with self._association([build_context(STUDY_ROOT_MOVE)]) as assoc:
            for identifier, sops in retrieve_requests(instances):
                responses = assoc.send_c_move(identifier, destination, STUDY_ROOT_MOVE)
                self._follow(responses, "C-MOVE", sops, failures, counted, len(instances), progress)
                counted += len(sops)
        return failures

    def get(self, instances: Sequence[RemoteInstance], store: StoreHandler,
            progress: ProgressCallback) -> dict[str, str]:
        """C-GET at IMAGE level (PS3.4 C.4.3): the peer C-STOREs each instance back over
        this association, so we propose storage contexts with the SCP role (PS3.7 D.3.3.4)."""
        classes = (sorted({i.sop_class_uid for i in instances if i.sop_class_uid})
                   or list(COMMON_STORAGE))
        contexts = [build_context(STUDY_ROOT_GET), *storage_contexts(classes, MAX_CONTEXTS - 1)]
        roles = [build_role(uid, scp_role=True) for uid in classes]
        received = [0]

        def on_store(event: evt.Event) -> int:
            sop_uid = str(getattr(event.request, "AffectedSOPInstanceUID", "") or "")
            result, code = store(sop_uid, _received_part10(event))
            received[0] += 1
            progress(Progress(received[0], len(instances), result.sop_uid, result.ok,
                              result.detail))
            return code

        failures: dict[str, str] = {}
        with self._association(contexts, roles, [(evt.EVT_C_STORE, on_store)]) as assoc:
            for identifier, sops in retrieve_requests(instances):
                responses = assoc.send_c_get(identifier, STUDY_ROOT_GET)
                self._follow(responses, "C-GET", sops, failures, None, len(instances), progress)
        return failures

    def _follow(self, responses: Iterable[tuple[Dataset, Dataset | None]], operation: str,
                sops: list[str], failures: dict[str, str], counted: int | None, total: int,
                progress: ProgressCallback) -> None:
        """Read a retrieve's responses: pending ones report counts (PS3.4 C.4.2.1.5), the
        final one lists failed SOP Instance UIDs (0008,0058)."""
        self._since = time.monotonic()
        for status, identifier in responses:
            code = self._status(status, operation)
            if code in PENDING:
                if counted is not None:
                    progress(Progress(counted + _sub_operations_done(status), total))
                continue
            if code == MOVE_DESTINATION_UNKNOWN:
                raise RemoteError(f"{self.where} does not know the move destination "
                                  f"{self.calling_ae!r} (status 0xA801): add our AE title, "
                                  "host and port to its list of DICOM nodes")
            for uid in _failed_uids(identifier):
                failures[uid] = f"{operation}: the peer reported this sub-operation failed"
            if code not in (SUCCESS, SUB_OPERATION_WARNING):
                for uid in sops:
                    failures.setdefault(uid, f"{operation} failed with status 0x{code:04X}"
                                        + _comment(status))

    # -- store -------------------------------------------------------------
    def store(self, items: Sequence[Outgoing], convert: Callable[[BinaryIO], bytes],
              progress: ProgressCallback) -> list[InstanceResult]:
        """C-STORE each item (PS3.4 B.2), as stored when the peer accepts that syntax, else
        converted to Explicit VR Little Endian (the syntax every SCP must accept, PS3.5 §10.1)."""
        results: list[InstanceResult] = []
        for batch in context_batches(items):
            with self._association(send_contexts(batch)) as assoc, _send_from_file():
                accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0]))
                            for c in assoc.accepted_contexts}
                for item in batch:
                    result = self._store_one(assoc, item, accepted, convert)
                    results.append(result)
                    progress(Progress(len(results), len(items), item.sop_uid, result.ok,
                                      result.detail))
        return results

    def _store_one(self, assoc: Association, item: Outgoing, accepted: set[tuple[str, str]],
                   convert: Callable[[BinaryIO], bytes]) -> InstanceResult:
        """One C-STORE; its status is read per PS3.4 B.2.3 (0xB0xx warnings still store)."""
        note = ""
        try:
            if (item.sop_class_uid, item.transfer_syntax_uid) in accepted:
                with item.open() as stream, _local_copy(stream) as path:
                    status = assoc.send_c_store(path)
            elif (item.sop_class_uid, ExplicitVRLittleEndian) in accepted:
                note = "converted to Explicit VR Little Endian; "
                with item.open() as stream:
                    converted = convert(stream)
                status = assoc.send_c_store(pydicom.dcmread(io.BytesIO(converted)))
            else:
                return InstanceResult(item.sop_uid, False, "the peer accepted no presentation "
                                      f"context for SOP class {item.sop_class_uid}")
        except (ValueError, AttributeError, RuntimeError, OSError) as exc:
            return InstanceResult(item.sop_uid, False, f"{note}not sent: {exc}")
        if "Status" not in status:
            return InstanceResult(item.sop_uid, False, f"{note}no C-STORE response within "
                                  f"{self.timeout:g} s (or the association was aborted)")
        code = int(status.Status)
        if code == SUCCESS or code in STORE_WARNINGS:
            warning = f"warning 0x{code:04X}" if code else "stored"
            return InstanceResult(item.sop_uid, True, note + warning + _comment(status))
        return InstanceResult(item.sop_uid, False, f"{note}status 0x{code:04X}" + _comment(status))


def _received_part10(event: evt.Event) -> bytes:
    """A C-STORE received over our association, as a Part-10 file's bytes.

    In a process that also serves DIMSE, pynetdicom's file-based receive is on
    (dimse/server.py): the data set is then already a Part-10 file on disk, which
    pynetdicom deletes after this handler, and `encoded_dataset` (in-memory only) fails.
    """
    try:
        path = event.dataset_path
    except AttributeError:  # file-based receive is off: the data set is in memory
        path = None
    if path:
        return Path(path).read_bytes()
    return event.encoded_dataset(include_meta=True)


def verify_local(local: LocalAE, timeout: float) -> None:
    """C-ECHO our own server before a C-MOVE: the peer will send the study there."""
    ours = Node("local", local.ae_title, local.host, local.port)
    try:
        DimseClient(ours, local.ae_title, timeout).echo()
    except RemoteError as exc:
        raise RemoteError(f"C-MOVE needs our own DIMSE server running as {local.ae_title}@"
                          f"{local.host}:{local.port} ({exc}); start 'cloudfilm serve "
                          "--dimse-port P --ae-title AET' and pass the same --dimse-port and "
                          "--ae-title, or use --via get") from exc


@contextmanager
def _local_copy(stream: BinaryIO) -> Iterator[Path]:
    """pynetdicom sends the stored bytes only from a named file: a private (0600) copy
    in the temporary directory, removed after the C-STORE."""
    with tempfile.NamedTemporaryFile(prefix="cloudfilm-send-", suffix=".dcm") as copy:
        shutil.copyfileobj(stream, copy, 1 << 20)
        copy.flush()
        yield Path(copy.name)


@contextmanager
def _send_from_file() -> Iterator[None]:
    """Send files straight from disk without decoding them (pynetdicom's chunked mode), so
    the peer gets the stored bytes. A process-wide pynetdicom switch: restored after."""
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        yield
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


# -- identifiers and contexts (pure) ----------------------------------------
def study_identifier(query: StudyQuery) -> Dataset:
    """STUDY-level keys: matching values from the query, empty ones to be returned."""
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = ""
    ds.StudyDate = query.study_date
    ds.StudyTime = ""
    ds.PatientID = query.patient_id
    ds.PatientName = ""
    ds.ModalitiesInStudy = query.modality
    ds.StudyDescription = ""
    ds.AccessionNumber = ""
    ds.NumberOfStudyRelatedInstances = ""
    return ds


def level_identifier(level: str, study_uid: str, series_uid: str = "") -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    if level == "IMAGE":
        ds.SOPInstanceUID = ""
        ds.SOPClassUID = ""
        ds.InstanceNumber = ""
    return ds


def retrieve_requests(instances: Sequence[RemoteInstance],
                      chunk: int = UIDS_PER_REQUEST) -> Iterator[tuple[Dataset, list[str]]]:
    """IMAGE-level retrieve identifiers, one per series (and per ``chunk`` UIDs): the unique
    keys of the levels above plus a list of SOP Instance UIDs (PS3.4 C.4.2.1.4)."""
    by_series: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in instances:
        by_series[(item.study_uid, item.series_uid)].append(item.sop_uid)
    for (study_uid, series_uid), sops in by_series.items():
        for start in range(0, len(sops), chunk):
            part = sops[start:start + chunk]
            ds = Dataset()
            ds.QueryRetrieveLevel = "IMAGE"
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.SOPInstanceUID = part if len(part) > 1 else part[0]
            yield ds, part


def storage_contexts(classes: Sequence[str], budget: int) -> list[PresentationContext]:
    """One context per (class, syntax) so stored bytes can come unchanged; fewer syntaxes
    per class when the classes would not fit in ``budget`` contexts."""
    for syntaxes in (AS_STORED, AS_STORED[:2], AS_STORED[:1]):
        if len(classes) * len(syntaxes) <= budget:
            return [build_context(uid, ts) for uid in classes for ts in syntaxes]
    return [build_context(uid, ExplicitVRLittleEndian) for uid in classes[:budget]]


def send_contexts(items: Sequence[Outgoing]) -> list[PresentationContext]:
    """Per SOP class: each stored syntax, plus Explicit VR Little Endian as a fallback."""
    pairs = sorted(_context_pairs(items))
    return [build_context(uid, ts) for uid, ts in pairs]


def _context_pairs(items: Iterable[Outgoing]) -> set[tuple[str, str]]:
    pairs: set[tuple[str, str]] = set()
    for item in items:
        pairs.add((item.sop_class_uid, item.transfer_syntax_uid))
        pairs.add((item.sop_class_uid, ExplicitVRLittleEndian))
    return pairs


def context_batches(items: Sequence[Outgoing]) -> list[list[Outgoing]]:
    """Split a send into associations of at most MAX_CONTEXTS contexts, by SOP class."""
    by_class: dict[str, list[Outgoing]] = defaultdict(list)
    for item in items:
        by_class[item.sop_class_uid].append(item)
    batches: list[list[Outgoing]] = []
    current: list[Outgoing] = []
    for group in by_class.values():
        if current and len(_context_pairs(current + group)) > MAX_CONTEXTS:
            batches.append(current)
            current = []
        current = current + group
    return batches + ([current] if current else [])


# -- answers → typed values ---------------------------------------------------
def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _study(ds: Dataset) -> RemoteStudy:
    modalities = ds.get("ModalitiesInStudy", "") or ""
    if isinstance(modalities, str):
        modalities = [m for m in modalities.split("\\") if m]
    count = _text(ds, "NumberOfStudyRelatedInstances")
    return RemoteStudy(study_uid=_text(ds, "StudyInstanceUID"), study_date=_text(ds, "StudyDate"),
                       patient_id=_text(ds, "PatientID"), patient_name=_text(ds, "PatientName"),
                       modalities=tuple(str(m) for m in modalities),
                       description=_text(ds, "StudyDescription"),
                       number_of_instances=int(count) if count.isdigit() else None)


def _instance(study_uid: str, series_uid: str, ds: Dataset) -> RemoteInstance:
    return RemoteInstance(study_uid, series_uid, _text(ds, "SOPInstanceUID"),
                          _text(ds, "SOPClassUID"))


def _sub_operations_done(status: Dataset) -> int:
    return sum(int(status.get(k) or 0) for k in ("NumberOfCompletedSuboperations",
                                                 "NumberOfFailedSuboperations",
                                                 "NumberOfWarningSuboperations"))


def _failed_uids(identifier: Dataset | None) -> list[str]:
    if identifier is None or "FailedSOPInstanceUIDList" not in identifier:
        return []
    value = identifier.FailedSOPInstanceUIDList
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    return [str(v) for v in value if v]
