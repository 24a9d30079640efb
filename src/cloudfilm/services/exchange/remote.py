"""Query/retrieve from other hospitals' archives: cloudfilm as SCU and as DICOMweb client.

find   C-FIND, Study Root at STUDY level (PS3.4 C.4.1, C.6.2), or QIDO-RS when the node has
       a DICOMweb URL.
fetch  first *plan*: list the remote study's instances (C-FIND IMAGE level or QIDO-RS) and
       subtract the SOP Instance UIDs already stored here; then retrieve only the rest, by
       C-MOVE to our own SCP (PS3.4 C.4.2), C-GET (PS3.4 C.4.3) or WADO-RS per instance.
       An interrupted fetch is resumed by running it again; a complete one fetches nothing.
send   C-STORE (PS3.4 B.2) every stored instance of a study, as stored when the peer accepts
       that transfer syntax, else decoded to Explicit VR Little Endian; one series by
       STOW-RS when the node has a DICOMweb URL (`send_series`, an AI service's input).

Received bytes enter only through `archive.ingest`, like STOW and the SCP; the index is
reached only through services.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial

from cloudfilm.domain.nodes import Node
from cloudfilm.services.archive.ingest import CONFLICT
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.remote_dicomweb import DicomWebClient
from cloudfilm.services.exchange.remote_dimse import DimseClient, Outgoing, verify_local
from cloudfilm.services.exchange.remote_types import (
    VIA,
    FetchPlan,
    FetchReport,
    InstanceResult,
    LocalAE,
    Progress,
    ProgressCallback,
    RemoteError,
    RemoteInstance,
    RemoteStudy,
    RemoteUnreachable,
    SendReport,
    StudyQuery,
    no_progress,
)
from cloudfilm.services.imaging import pixels
from cloudfilm.storage.blobs import StagedBlob

ARRIVAL_GRACE = 5.0  # seconds to let our SCP finish indexing what a C-MOVE reported sent
# C-STORE failure statuses (PS3.4 B.2.3): out of resources, data set mismatch, cannot understand
OUT_OF_RESOURCES, STORE_CONFLICT, CANNOT_UNDERSTAND = 0xA700, 0xA900, 0xC000


class RemoteService:
    """The remote use cases over one opened archive."""

    def __init__(self, archive: Archive, timeout: float | None = None) -> None:
        """``timeout``: seconds per connect, association and response (default
        CLOUDFILM_REMOTE_TIMEOUT, ``archive.settings.remote_timeout``)."""
        self.archive = archive
        self.timeout = timeout if timeout is not None else archive.settings.remote_timeout

    # -- find --------------------------------------------------------------
    def find(self, node_name: str, query: StudyQuery, *, calling_ae: str = "CLOUDFILM",
             via: str | None = None) -> list[RemoteStudy]:
        """Studies at the node matching ``query``: QIDO-RS if it has a DICOMweb URL (or
        ``via='dicomweb'``), else C-FIND."""
        node = self.archive.nodes.get(node_name)
        if (via or ("dicomweb" if node.dicomweb_url else "dimse")) == "dicomweb":
            with DicomWebClient(node, self.timeout) as client:
                return client.find_studies(query)
        return DimseClient(node, calling_ae, self.timeout).find_studies(query)

    # -- fetch -------------------------------------------------------------
    def default_via(self, node: Node) -> str:
        return "dicomweb" if node.dicomweb_url else "move"

    def plan_fetch(self, node_name: str, study_uid: str, *, via: str | None = None,
                   calling_ae: str = "CLOUDFILM") -> FetchPlan:
        """List the remote study (the same protocol family as the retrieve) and what we hold."""
        node = self.archive.nodes.get(node_name)
        via = via or self.default_via(node)
        if via not in VIA:
            raise RemoteError(f"unknown retrieve method {via!r} (use one of {', '.join(VIA)})")
        if via == "dicomweb":
            with DicomWebClient(node, self.timeout) as client:
                remote = client.list_instances(study_uid)
        else:
            remote = DimseClient(node, calling_ae, self.timeout).list_instances(study_uid)
        if not remote:
            raise RemoteError(f"study {study_uid} has no instances at {node.name}")
        return FetchPlan(node.name, study_uid, via, tuple(remote), self.present(study_uid))

    def present(self, study_uid: str) -> frozenset[str]:
        """SOP Instance UIDs of the study stored here (the resumability check)."""
        try:
            return frozenset(i.sop_uid for i in self.archive.retrieve.instances(study_uid))
        except NotStored:
            return frozenset()

    def fetch(self, plan: FetchPlan, *, local: LocalAE | None = None,
              progress: ProgressCallback = no_progress) -> FetchReport:
        """Retrieve what the plan lists as missing; the report compares against what is
        actually stored afterwards, so it is right even when the peer's counts are not."""
        report = FetchReport(plan)
        missing = plan.missing
        reasons: dict[str, str] = {}
        if missing:
            try:
                reasons = self._retrieve(plan, missing, local or LocalAE(), progress)
            except RemoteError as exc:
                report.error = str(exc)
        now = self._settled(plan, missing, reasons, report.error)
        report.results = [_result(i.sop_uid, now, reasons, report.error) for i in missing]
        report.still_missing = [i.sop_uid for i in plan.remote if i.sop_uid not in now]
        return report

    def _retrieve(self, plan: FetchPlan, missing: list[RemoteInstance], local: LocalAE,
                  progress: ProgressCallback) -> dict[str, str]:
        node = self.archive.nodes.get(plan.node)
        if plan.via == "dicomweb":
            return self._wado(node, missing, progress)
        client = DimseClient(node, local.ae_title, self.timeout)
        if plan.via == "move":
            verify_local(local, self.timeout)
            return client.move(missing, local.ae_title, progress)
        reasons: dict[str, str] = {}
        peer_reasons = client.get(missing, lambda sop, data: self._received(sop, data, reasons),
                                  progress)
        return peer_reasons | reasons  # our own ingest failures explain more than the peer's

    def _settled(self, plan: FetchPlan, missing: list[RemoteInstance], reasons: dict[str, str],
                 error: str) -> frozenset[str]:
        """What is stored now; after a C-MOVE, wait briefly for our SCP to finish indexing
        instances the peer reported as sent (it is another process)."""
        now = self.present(plan.study_uid)
        if plan.via != "move" or error:
            return now
        deadline = time.monotonic() + min(ARRIVAL_GRACE, self.timeout)
        expected = {i.sop_uid for i in missing if i.sop_uid not in reasons}
        while not expected <= now and time.monotonic() < deadline:
            time.sleep(0.2)
            now = self.present(plan.study_uid)
        return now

    def _wado(self, node: Node, missing: list[RemoteInstance],
              progress: ProgressCallback) -> dict[str, str]:
        """WADO-RS each missing instance; one failing does not stop the others."""
        reasons: dict[str, str] = {}
        with DicomWebClient(node, self.timeout) as client:
            for number, item in enumerate(missing, 1):
                try:
                    result, _ = self._ingest(client.fetch_instance(item, self.archive.blobs),
                                             item.sop_uid)
                except RemoteUnreachable:
                    raise
                except RemoteError as exc:
                    result = InstanceResult(item.sop_uid, False, str(exc))
                if not result.ok:
                    reasons[item.sop_uid] = result.detail
                progress(Progress(number, len(missing), item.sop_uid, result.ok, result.detail))
        return reasons

    def _received(self, sop_uid: str, data: bytes,
                  reasons: dict[str, str]) -> tuple[InstanceResult, int]:
        """The C-GET store handler: stage the Part-10 bytes (fsynced), ingest, then answer,
        so success is only reported for what is durably indexed (PS3.4 B.2.3 statuses)."""
        try:
            result, status = self._ingest([self._stage(data)], sop_uid)
        except OSError as exc:
            result = InstanceResult(sop_uid, False, f"cannot store: {exc}")
            status = OUT_OF_RESOURCES
        if not result.ok:
            reasons[sop_uid] = result.detail
        return result, status

    def _stage(self, data: bytes) -> StagedBlob:
        return self.archive.blobs.stage_bytes(data)

    def _ingest(self, staged: Sequence[StagedBlob], sop_uid: str) -> tuple[InstanceResult, int]:
        """Ingest what a peer sent; the status is the C-STORE answer it deserves."""
        outcomes = self.archive.ingest.ingest_staged(staged)
        failed = [o for o in outcomes if not o.ok]
        if failed:
            status = STORE_CONFLICT if failed[0].code == CONFLICT else CANNOT_UNDERSTAND
            return InstanceResult(sop_uid, False, failed[0].reason), status
        if sop_uid and sop_uid not in {o.sop_instance_uid for o in outcomes}:
            other = InstanceResult(sop_uid, False, "the peer sent a different instance")
            return other, CANNOT_UNDERSTAND
        return InstanceResult(sop_uid, True, outcomes[0].status if outcomes else ""), 0x0000

    # -- send --------------------------------------------------------------
    def send(self, node_name: str, study_uid: str, *, calling_ae: str = "CLOUDFILM",
             progress: ProgressCallback = no_progress) -> SendReport:
        """C-STORE every stored instance of the study to the node, reporting each one."""
        node = self.archive.nodes.get(node_name)
        try:
            stored = self.archive.retrieve.instances(study_uid)
        except NotStored as exc:
            raise RemoteError(f"study {study_uid} is not stored here") from exc
        items = [Outgoing(partial(self.archive.retrieve.open, i), i.sop_uid, i.sop_class_uid,
                          i.transfer_syntax_uid) for i in stored]
        results = DimseClient(node, calling_ae, self.timeout).store(
            items, pixels.to_explicit_little_endian, progress)
        return SendReport(node.name, study_uid, results)

    def send_series(self, node_name: str, study_uid: str, series_uid: str, *,
                    calling_ae: str = "CLOUDFILM") -> SendReport:
        """One stored series to the node: STOW-RS if it has a DICOMweb URL, else C-STORE."""
        node = self.archive.nodes.get(node_name)
        try:
            stored = self.archive.retrieve.instances(study_uid, series_uid)
        except NotStored as exc:
            raise RemoteError(f"series {series_uid} is not stored here") from exc
        items = [Outgoing(partial(self.archive.retrieve.open, i), i.sop_uid, i.sop_class_uid,
                          i.transfer_syntax_uid) for i in stored]
        if node.dicomweb_url:
            with DicomWebClient(node, self.timeout) as client:
                results = client.store(items)
        else:
            results = DimseClient(node, calling_ae, self.timeout).store(
                items, pixels.to_explicit_little_endian, no_progress)
        return SendReport(node.name, study_uid, results)


def _result(sop_uid: str, now: frozenset[str], reasons: dict[str, str],
            error: str) -> InstanceResult:
    if sop_uid in now:
        return InstanceResult(sop_uid, True, "stored")
    return InstanceResult(sop_uid, False, reasons.get(sop_uid) or error or "not received")
