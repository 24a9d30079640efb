"""Policy plumbing: load grants and study ownership from the index, ask domain.access.

This is the one place the DICOMweb, DIMSE, JSON API and pages call to decide or to
filter. The rules themselves live in `cloudfilm.domain.access` (pure); this module
only turns index rows into `Grant` and `StudyRef` values and a `Scope` into SQL:

- a study belongs to the person whose ``person_records`` row names its patient's
  (PatientID, IssuerOfPatientID); unlinked studies belong to nobody;
- a study's ``indexed_at`` is ``studies.created_at`` (when it arrived), which decides
  whether a timeline grant without ``include_future`` covers it;
- `visible_instances_clause` is a boolean clause on `InstanceRow` for the ``visible=``
  argument of `QueryService` (subqueries built with ``.correlate(None)``, as
  storage/index/queries.py requires).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, and_, false, or_, select
from sqlalchemy.orm import Session, aliased

from cloudfilm.domain.access import (
    Audience,
    Decision,
    Grant,
    Permission,
    Principal,
    Role,
    Scope,
    StudyRef,
    decide,
    visible_scope,
)
from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.domain.nodes import Node
from cloudfilm.storage.index.access_models import GrantRow, PersonRecordRow
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow
from cloudfilm.storage.index.queries import record_of_patient

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive


def grant_from_row(row: GrantRow) -> Grant:
    """A `GrantRow` as the policy sees it (study_uids: JSON list or null = timeline)."""
    uids = frozenset(json.loads(row.study_uids)) if row.study_uids is not None else None
    permissions = frozenset(Permission(p) for p in row.permissions.split(",") if p)
    created_at: datetime | None = row.created_at  # None until the row is flushed (server default)
    valid_from: datetime | None = row.valid_from
    created = as_utc(created_at) or utcnow()
    return Grant(id=row.id, person_id=row.person_id, study_uids=uids,
                 include_future=bool(row.include_future), audience=Audience(row.audience),
                 permissions=permissions, created_at=created,
                 valid_from=as_utc(valid_from) or created, valid_until=row.valid_until,
                 revoked_at=as_utc(row.revoked_at), physician_user_id=row.physician_user_id)


def load_grants(session: Session, principal: Principal) -> list[Grant]:
    """The grants that could apply to ``principal``: its share link's, or a physician's own."""
    if principal.kind == "share" and principal.share_grant_id is not None:
        row = session.get(GrantRow, principal.share_grant_id)
        return [grant_from_row(row)] if row is not None else []
    if principal.role is Role.PHYSICIAN and principal.user_id is not None:
        rows = session.scalars(select(GrantRow).where(
            GrantRow.audience == Audience.PHYSICIAN.value,
            GrantRow.physician_user_id == principal.user_id,
            GrantRow.revoked_at.is_(None)))
        return [grant_from_row(r) for r in rows]
    return []


def study_ref_in(session: Session, study_uid: str) -> StudyRef | None:
    """study → patients row → person_records (patient_id, issuer) → person id."""
    row = session.execute(
        select(StudyRow.study_uid, StudyRow.created_at, PersonRecordRow.person_id,
               PatientRow.issuer)
        .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
        .outerjoin(PersonRecordRow, record_of_patient())
        .where(StudyRow.study_uid == study_uid)).first()
    if row is None:
        return None
    return StudyRef(row.study_uid, row.person_id, as_utc(row.created_at) or utcnow(),
                    row.issuer or "")


def record_owner(session: Session, patient_id: str, issuer: str) -> int | None:
    """The person a hospital record (PatientID, IssuerOfPatientID) is linked to, if any."""
    return session.scalars(select(PersonRecordRow.person_id).where(
        PersonRecordRow.patient_id == patient_id, PersonRecordRow.issuer == issuer)).first()


def _conditions(scope: Scope, record: Any, patient: Any,
                study: Any) -> list[ColumnElement[bool]]:
    """One OR-branch per person set, (person, study) group, timeline cut-off and issuer set."""
    conditions: list[ColumnElement[bool]] = []
    if scope.issuers:
        conditions.append(patient.issuer.in_(sorted(scope.issuers)))
    if scope.person_ids:
        conditions.append(record.person_id.in_(sorted(scope.person_ids)))
    by_person: dict[int, set[str]] = defaultdict(set)
    for person_id, uid in scope.studies:
        by_person[person_id].add(uid)
    for person_id, uids in sorted(by_person.items()):
        conditions.append(and_(record.person_id == person_id,
                               study.study_uid.in_(sorted(uids))))
    for person_id, until in scope.timelines_until:
        conditions.append(and_(record.person_id == person_id,
                               study.created_at <= until))
    return conditions


def visible_studies_select(scope: Scope) -> Select[int]:
    """SELECT studies.id of every study the scope covers (uncorrelated; not for `everything`)."""
    study, patient, record = aliased(StudyRow), aliased(PatientRow), aliased(PersonRecordRow)
    conditions = _conditions(scope, record, patient, study)
    return (select(study.id)
            .join(patient, study.patient_pk == patient.id)
            .outerjoin(record, and_(record.patient_id == patient.patient_id,
                               record.issuer == patient.issuer))
            .where(or_(*conditions) if conditions else false())
            .correlate(None))


def visible_instances_clause(scope: Scope) -> ColumnElement[bool] | None:
    """A clause on `InstanceRow` for ``QueryService.search_*(visible=...)``.

    None when the scope is everything (no filter at all); a clause that is always false
    when it is nothing; else: the instance's series is in a covered study.
    """
    if scope.everything:
        return None
    if scope.nothing:
        return false()
    series = aliased(SeriesRow)
    in_studies = (select(series.id)
                  .where(series.study_pk.in_(visible_studies_select(scope)))
                  .correlate(None))
    return InstanceRow.series_pk.in_(in_studies)


def grant_scope(grant: Grant) -> Scope:
    """What a grant covers, whether or not it is active now (for its owner's views: the card)."""
    if grant.study_uids is not None:
        return Scope(studies=frozenset((grant.person_id, uid) for uid in grant.study_uids))
    if grant.include_future:
        return Scope(person_ids=frozenset({grant.person_id}))
    return Scope(timelines_until=((grant.person_id, grant.created_at),))


def _decided(principal: Principal, permission: Permission, study: StudyRef,
             grants: list[Grant], now: datetime) -> Decision:
    """``decide``, with the study's person attached for the audit record."""
    return replace(decide(principal, permission, study, grants, now), person_id=study.person_id)


def node_principal(ae_title: str, node: Node | None) -> Principal:
    """A calling AE as the policy sees it: what its node's ``sees`` setting allows.

    ``all``: every study; ``own``: studies whose patient record carries the node's
    IssuerOfPatientID (a hospital retrieving its own studies back); ``none``, or a caller
    that is not a known node: nothing. Storing (C-STORE) is not a read and is not
    decided here.
    """
    if node is None or node.sees == "none":
        return Principal(kind="node", username=ae_title)
    if node.sees == "all":
        return Principal(kind="node", username=ae_title, node_sees_all=True)
    return Principal(kind="node", username=ae_title,
                     node_issuers=frozenset({node.issuer}) if node.issuer else frozenset())


class Policy:
    """`Policy(archive)`: decisions and query filters for one principal at a time."""

    def __init__(self, archive: Archive | Index) -> None:
        self.index: Index = archive if isinstance(archive, Index) else archive.index

    def grants(self, principal: Principal) -> list[Grant]:
        with self.index.session() as session:
            return load_grants(session, principal)

    def study_ref(self, study_uid: str) -> StudyRef | None:
        """Whose study this is and when it arrived; None if the archive does not hold it."""
        with self.index.session() as session:
            return study_ref_in(session, study_uid)

    def check(self, principal: Principal, permission: Permission, study_uid: str,
              now: datetime | None = None) -> Decision:
        """``decide`` for a study named by UID; an unknown study is denied like a hidden one."""
        inputs = self.check_inputs(principal, study_uid)
        if inputs is None:
            return Decision(False, "no such study")
        return _decided(principal, permission, *inputs, now or utcnow())

    def check_inputs(self, principal: Principal,
                     study_uid: str) -> tuple[StudyRef, list[Grant]] | None:
        """What ``check`` decides on: the study (None if the archive does not hold it) and
        the grants that could apply to ``principal``."""
        with self.index.session() as session:
            study = study_ref_in(session, study_uid)
            if study is None:
                return None
            return study, load_grants(session, principal)

    def check_upload(self, principal: Principal, study_uid: str, person_id: int | None,
                     now: datetime | None = None) -> Decision:
        """May ``principal`` add instances to ``study_uid`` in ``person_id``'s folder?

        An existing study is judged as it stands (its real owner counts, not the one
        claimed); a new one as a study of ``person_id`` arriving now.
        """
        moment = now or utcnow()
        with self.index.session() as session:
            study = study_ref_in(session, study_uid) or StudyRef(study_uid, person_id, moment)
            grants = load_grants(session, principal)
        return _decided(principal, Permission.UPLOAD, study, grants, moment)

    def check_new_study(self, principal: Principal, patient_id: str, issuer: str,
                        now: datetime | None = None) -> Decision:
        """May ``principal`` add a new study for this hospital record (e.g. a document)?"""
        moment = now or utcnow()
        with self.index.session() as session:
            owner = record_owner(session, patient_id, issuer)
            grants = load_grants(session, principal)
        study = StudyRef("", owner, moment, issuer)
        return _decided(principal, Permission.UPLOAD, study, grants, moment)

    def check_many(self, principal: Principal, permission: Permission,
                   study_uids: Iterable[str], now: datetime | None = None) -> dict[str, Decision]:
        """``check`` for several studies, loading the principal's grants once."""
        moment = now or utcnow()
        with self.index.session() as session:
            grants = load_grants(session, principal)
            refs = {uid: study_ref_in(session, uid) for uid in dict.fromkeys(study_uids)}
        return {uid: _decided(principal, permission, ref, grants, moment) if ref
                else Decision(False, "no such study") for uid, ref in refs.items()}

    def check_patient(self, principal: Principal, permission: Permission, patient_id: str,
                      issuer: str | None = None,
                      now: datetime | None = None) -> dict[str, dict[str, Decision]]:
        """``check`` for every study of a PatientID (within ``issuer`` when given), grouped
        by IssuerOfPatientID. Callers answer from the allowed ones only, so nothing about
        the hidden ones (not even which hospitals hold that PatientID) leaks."""
        statement = select(PatientRow.issuer, StudyRow.study_uid).join(
            StudyRow, StudyRow.patient_pk == PatientRow.id).where(
            PatientRow.patient_id == patient_id)
        if issuer is not None:
            statement = statement.where(PatientRow.issuer == issuer)
        with self.index.session() as session:
            rows = session.execute(statement.order_by(StudyRow.id)).all()
        decisions = self.check_many(principal, permission, [r.study_uid for r in rows], now)
        grouped: dict[str, dict[str, Decision]] = defaultdict(dict)
        for row in rows:
            grouped[row.issuer or ""][row.study_uid] = decisions[row.study_uid]
        return dict(grouped)

    def scope(self, principal: Principal, permission: Permission = Permission.VIEW,
              now: datetime | None = None) -> Scope:
        """``visible_scope`` over the principal's grants as stored now."""
        return visible_scope(principal, self.grants(principal), now or utcnow(), permission)

    def visible_clause(self, principal: Principal, permission: Permission = Permission.VIEW,
                       now: datetime | None = None) -> ColumnElement[bool] | None:
        """The ``visible=`` argument for QueryService (None: no restriction)."""
        return visible_instances_clause(self.scope(principal, permission, now))


@dataclass(frozen=True)
class _CheckInputs:
    study: StudyRef
    grants: tuple[Grant, ...]
    epoch: int


class StudyChecks:
    """``Policy.check`` for the read path (frames, metadata, renderings): the inputs of a
    decision -- the study's owner and arrival, the principal's grants -- kept per process
    and used only under the access epoch they were loaded in (services/access/epoch.py).

    ``decide`` itself runs at every request, so a grant's validity window ends on time;
    only an allowed decision is answered from memory, so a grant or caregiver link added
    since is found by the full check that a refusal falls back to.
    """

    def __init__(self, index: Index, *, max_entries: int = 10_000) -> None:
        self.policy = Policy(index)
        self.max_entries = max_entries
        self._memo: dict[tuple[Principal, str], _CheckInputs] = {}

    def remembered(self, principal: Principal, permission: Permission, study_uid: str,
                   epoch: int, now: datetime | None = None) -> Decision | None:
        """An allowed decision from memory (no I/O: callable on the event loop), else None."""
        inputs = self._memo.get((principal, study_uid))
        if inputs is None or inputs.epoch != epoch:
            return None
        decision = _decided(principal, permission, inputs.study, list(inputs.grants),
                            now or utcnow())
        return decision if decision.allowed else None

    def check(self, principal: Principal, permission: Permission, study_uid: str, epoch: int,
              now: datetime | None = None) -> Decision:
        """``remembered``, else the full check; what it loads is kept under ``epoch``, which
        the caller read before calling."""
        moment = now or utcnow()
        known = self.remembered(principal, permission, study_uid, epoch, moment)
        if known is not None:
            return known
        inputs = self.policy.check_inputs(principal, study_uid)
        if inputs is None:
            return Decision(False, "no such study")
        study, grants = inputs
        if len(self._memo) >= self.max_entries:
            self._memo.clear()
        self._memo[(principal, study_uid)] = _CheckInputs(study, tuple(grants), epoch)
        return _decided(principal, permission, study, grants, moment)
