"""What an AI service may store: its results for the series sent to it, and nothing else.

The ``ai-service`` account of an AI node (services/ai/nodes.py) stores by STOW-RS like
anyone, but its instances pass this admission instead of the patient upload's
(services/access/admission.py). Each instance fails alone, with a reason (0124H,
PS3.7 Annex C.4), unless

- it is a DICOM SR (read as TID 1500) or SEG (`results.read_result` finds a finding);
- every series it references (SR evidence, the images its regions are drawn on, a SEG's
  Referenced Series) was sent to this node (``ai_requests``), in the study it names;
- its PatientID and IssuerOfPatientID are the study's record's, and it is in a series of
  its own (never added to the images' series).

It never changes demographics and joins only that record (`WriteRights`, checked again in
the write transaction). The stored SR/SEG gets an ``ai_results`` row and its findings
become pending candidates (`CandidateService.add_result`); an ``sr_imports`` row is
written first so the nodule SR importer never takes an AI's measurements as a physician's,
and patient views leave ``ai_results`` instances out.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import orjson
import pydicom
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Principal, Role
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.nodes import Node
from cloudfilm.services.access.admission import UploadAdmission
from cloudfilm.services.access.people import actor_name, audit_entry
from cloudfilm.services.ai.candidates import CandidateService, NewCandidate
from cloudfilm.services.ai.results import (
    AiResult,
    ResultError,
    UnknownImage,
    kind_of,
    read_result,
)
from cloudfilm.services.archive.ingest import Admission
from cloudfilm.services.archive.outcomes import NOT_AUTHORIZED, IngestOutcome, PreparedInstance
from cloudfilm.storage.index.ai_models import AiRequestRow, AiResultRow
from cloudfilm.storage.index.models import InstanceRow, SeriesRow
from cloudfilm.storage.index.nodule_models import SrImportRow
from cloudfilm.storage.index.writer import RecordKey, WriteRights, study_record

if TYPE_CHECKING:
    from cloudfilm.domain.instance_facts import InstanceFacts
    from cloudfilm.services.context import Archive

ONLY_RESULTS = "an AI service may store only its results: DICOM SR (TID 1500) or SEG"


class AiResultAdmission:
    """One STOW request of an AI service: ``screen`` before indexing, ``settle`` after."""

    def __init__(self, archive: Archive, principal: Principal, source: str = "") -> None:
        self.archive, self.principal, self.source = archive, principal, source
        self.node: Node | None = None  # looked up in `screen` (a worker thread)
        self.candidates = CandidateService(archive)
        self.accepted: dict[str, tuple[AiResultRow, list[NewCandidate]]] = {}
        self.joinable: set[RecordKey] = set()

    def rights(self) -> WriteRights:
        return WriteRights(changes_demographics=False, joinable=frozenset(self.joinable),
                           source=actor_name(self.principal))

    def screen(self, pending: list[PreparedInstance]) -> None:
        if self.principal.user_id is not None:
            self.node = self.archive.nodes.ai_node_of_user(self.principal.user_id)
        for item in pending:
            if item.outcome is not None or item.facts is None:
                continue
            try:
                why = self._refusal(item)
            except ResultError as exc:
                why = str(exc)
            if why is not None:
                f = item.facts
                item.outcome = IngestOutcome("failed", f.sop_instance_uid, f.sop_class_uid,
                                             f.study_uid, f.series_uid, why, NOT_AUTHORIZED)

    def _refusal(self, item: PreparedInstance) -> str | None:
        facts = item.facts
        assert facts is not None
        if self.node is None:
            return "this account is no AI service's (its node was removed?)"
        kind = kind_of(facts.sop_class_uid)
        if kind is None:
            return ONLY_RESULTS
        not_sent = f"this result references no series sent to AI node {self.node.name}"
        with self.archive.index.session() as session:
            sent = self._sent(session, facts.study_uid)
            if not sent:
                return not_sent
            key: RecordKey = (facts.patient["patient_id"], facts.patient["issuer"])
            if study_record(session, facts.study_uid) != key:
                return "its PatientID and IssuerOfPatientID are not those of the study sent"
            if facts.series_uid in sent:
                return "a result must be in a series of its own, not in the images' series"
            images: dict[str, str] = {}
            try:
                result = read_result(pydicom.dcmread(item.staged.path),
                                     lambda sop: self._image(session, sop, sent, images))
            except UnknownImage:  # the same answer whether or not that image is stored
                return not_sent
        referenced = result.referenced_series | set(images.values())
        if not referenced or not referenced <= sent:
            return not_sent
        self._accept(facts, kind, result, images, sorted(referenced))
        self.joinable.add(key)
        return None

    def _sent(self, session: Session, study_uid: str) -> set[str]:
        """Series of the study sent (or being sent) to this node."""
        assert self.node is not None
        return set(session.scalars(select(AiRequestRow.series_uid).where(
            AiRequestRow.node_name == self.node.name, AiRequestRow.study_uid == study_uid,
            AiRequestRow.status != "skipped")))

    @staticmethod
    def _image(session: Session, sop_uid: str, sent: set[str],
               found: dict[str, str]) -> dict[str, Any]:
        """A referenced image's metadata, if it is in a series sent to this node."""
        row = session.execute(select(InstanceRow.metadata_json, SeriesRow.series_uid)
                              .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
                              .where(InstanceRow.sop_uid == sop_uid)).first()
        if row is None or row.series_uid not in sent:
            raise LookupError(sop_uid)
        found[sop_uid] = row.series_uid
        metadata: dict[str, Any] = orjson.loads(row.metadata_json)
        return metadata

    def _accept(self, facts: InstanceFacts, kind: str, result: AiResult,
                images: dict[str, str], referenced: list[str]) -> None:
        assert self.node is not None
        name = self.node.name
        candidates = []
        for finding in result.findings:
            series = images.get(finding.instance_uid) or referenced[0]
            try:
                candidates.append(self.candidates.candidate_of(
                    finding, facts.study_uid, series, name, result, facts.sop_instance_uid))
            except LookupError as exc:
                raise ResultError(f"a finding cannot be placed on series {series}: {exc}") \
                    from None
        record = AiResultRow(sop_uid=facts.sop_instance_uid, study_uid=facts.study_uid,
                             series_uid=facts.series_uid, source_series_uid=referenced[0],
                             node_name=name, kind=kind,
                             algorithm_name=result.algorithm_name[:200],
                             algorithm_version=result.algorithm_version[:64],
                             candidates=len(candidates))
        self.accepted[facts.sop_instance_uid] = (record, candidates)
        if kind == "sr":
            self._not_a_measurement_sr(facts.sop_instance_uid, facts.study_uid)

    def _not_a_measurement_sr(self, sop_uid: str, study_uid: str) -> None:
        """Mark the SR as read for the nodule importer before it is stored."""
        with self.archive.index.write_session() as session:
            session.add(SrImportRow(sop_uid=sop_uid, study_uid=study_uid, measurements=0))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()

    def settle(self, pending: list[PreparedInstance]) -> None:
        """Candidates for the stored results; one ``upload`` record per study."""
        stored = [i.facts for i in pending
                  if i.facts is not None and i.outcome is not None and i.outcome.ok]
        for facts in stored:
            accepted = self.accepted.get(facts.sop_instance_uid)
            if accepted is not None:
                self.candidates.add_result(*accepted)
        per_study = Counter(f.study_uid for f in stored)
        refused = Counter(i.outcome.study_uid for i in pending if i.outcome is not None
                          and i.outcome.code == NOT_AUTHORIZED)
        node = self.node.name if self.node else ""
        entries: list[AuditEntry] = [
            audit_entry(self.principal, "upload", study_uid=uid, source=self.source,
                        detail={"ai_results": n, "node": node})
            for uid, n in per_study.items()]
        entries += [audit_entry(self.principal, "upload", outcome="failure", study_uid=uid,
                                source=self.source, detail={"refused": n, "node": node})
                    for uid, n in refused.items()]
        self.archive.audit.record_many(entries)


def stow_admission(archive: Archive, principal: Principal, source: str = "") -> Admission:
    """The admission of a STOW-RS request: an AI service's, or the upload screening."""
    if principal.kind == "user" and principal.role is Role.AI_SERVICE:
        return AiResultAdmission(archive, principal, source)
    return UploadAdmission(archive, principal, source=source)
