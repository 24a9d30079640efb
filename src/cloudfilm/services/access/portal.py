"""What the portal pages read about persons and grants: names, who shared what with a
physician, a share link's scope, the access log, and the prior study to compare with.

Why a service: pages render what they are given and never open a session (issue 13).
Every function is a plain synchronous read, run in a thread by the pages, and returns
frozen values. Authorisation is decided by the policy (services/access/policy.py), here
or before the call, so nothing here widens what a caller may see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

import orjson
from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Audience, Grant, Permission, Principal
from cloudfilm.domain.clock import utcnow
from cloudfilm.services.access.people import PeopleService, TimelineStudy, _first_text
from cloudfilm.services.access.policy import Policy, study_ref_in
from cloudfilm.services.audit.record import AuditRecord
from cloudfilm.storage.index import queries
from cloudfilm.storage.index.access_models import PersonRecordRow, PersonRow
from cloudfilm.storage.index.models import PatientRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive


# -- persons ------------------------------------------------------------------------------


def person_name(archive: Archive, person_id: int) -> str:
    """A person's display name, else the name on their first hospital record."""
    with archive.index.session() as session:
        person = session.get(PersonRow, person_id)
        if person is None:
            return ""
        if person.display_name:
            return person.display_name
        attrs = session.scalars(select(PatientRow.attrs)
                                .join(PersonRecordRow, queries.record_of_patient())
                                .where(PersonRecordRow.person_id == person_id)).first()
    return _first_text(orjson.loads(attrs or "{}"), "00100010").replace("^", " ").strip()


def person_exists(archive: Archive, person_id: int) -> bool:
    with archive.index.session() as session:
        return session.get(PersonRow, person_id) is not None


def persons_for_record(archive: Archive, patient_id: str, issuer: str | None) -> list[int]:
    """The persons a hospital record (IssuerOfPatientID optional) is linked to."""
    statement = select(PersonRecordRow.person_id).where(PersonRecordRow.patient_id == patient_id)
    if issuer is not None:
        statement = statement.where(PersonRecordRow.issuer == issuer)
    with archive.index.session() as session:
        return sorted(set(session.scalars(statement)))


def access_log(archive: Archive, persons: set[int], limit: int = 50) -> list[AuditRecord]:
    """Newest records about these persons (the owner's "who looked at my images")."""
    if not persons:
        return []
    return archive.audit.query(person_ids=persons, limit=limit, newest_first=True)


# -- grants -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareScope:
    """What a share session's grant covers: one person's named studies, or (``study_uids``
    None) their timeline."""

    person_id: int
    study_uids: tuple[str, ...] | None


def share_scope(archive: Archive, who: Principal) -> ShareScope | None:
    """The scope of a share session's grant; None for any other caller or a gone grant."""
    if who.kind != "share" or who.share_grant_id is None:
        return None
    grants = Policy(archive).grants(who)
    if not grants:
        return None
    grant = grants[0]
    named = tuple(sorted(grant.study_uids)) if grant.study_uids is not None else None
    return ShareScope(grant.person_id, named)


@dataclass(frozen=True)
class SharedPerson:
    """A patient whose grants name this physician, and what those grants let them see."""

    person_id: int
    name: str
    studies: tuple[TimelineStudy, ...]
    valid_until: date | None
    forever: bool


def _moment(study: TimelineStudy) -> tuple[str, str]:
    return study.date or "", study.time or ""


def shared_with_physician(archive: Archive, principal: Principal) -> list[SharedPerson]:
    """The persons whose active physician grants name ``principal``, newest study first."""
    now = utcnow()
    by_person: dict[int, list[Grant]] = {}
    for grant in Policy(archive).grants(principal):
        if grant.audience is Audience.PHYSICIAN and grant.active(now):
            by_person.setdefault(grant.person_id, []).append(grant)
    people = PeopleService(archive)
    found = []
    for person_id, person_grants in by_person.items():
        studies = people.timeline(principal, person_id)
        if not studies:
            continue
        ends = [g.valid_until for g in person_grants]
        forever = any(end is None for end in ends)
        found.append(SharedPerson(person_id, person_name(archive, person_id), tuple(studies),
                                  None if forever else max(e for e in ends if e), forever))
    return sorted(found, key=lambda p: max(_moment(s) for s in p.studies), reverse=True)


# -- the prior study ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    study_uid: str
    date: str  # YYYYMMDD
    time: str
    modalities: tuple[str, ...]


def _digits(value: str) -> str:
    return "".join(c for c in value if c.isdigit())


def _same_record_candidates(session: Session, study_uid: str,
                            visible: queries.Visible) -> list[_Candidate]:
    """An unlinked study's patient record only (no person to look across)."""
    patient_pk = session.scalar(select(StudyRow.patient_pk).where(StudyRow.study_uid == study_uid))
    statement = select(StudyRow.id, StudyRow.study_uid, StudyRow.study_date,
                       StudyRow.study_time).where(StudyRow.patient_pk == patient_pk)
    if visible is not None:
        statement = statement.where(queries.study_has_visible_instance(visible))
    rows = session.execute(statement).all()
    counts = queries.study_counts(session, [r.id for r in rows], visible)
    return [_Candidate(r.study_uid, r.study_date or "", r.study_time or "",
                       tuple(counts.get(r.id, queries.StudyCounts()).modalities)) for r in rows]


def _latest_before(candidates: list[_Candidate], study_uid: str, day: str) -> str | None:
    earlier = [c for c in candidates if c.study_uid != study_uid and "CT" in c.modalities
               and len(c.date) == 8 and c.date < day]
    return max(earlier, key=lambda c: (c.date, c.time, c.study_uid)).study_uid if earlier else None


def prior_study(archive: Archive, who: Principal, study_uid: str) -> str | None:
    """The most recent CT dated before this study, among the person's studies the caller
    may view (every linked hospital record), or None. The study page's "compare" link and
    the viewer's "Compare with prior" button both ask here, so they agree."""
    with archive.index.session() as session:
        ref = study_ref_in(session, study_uid)
        if ref is None:
            return None
        current_date = _digits(session.scalar(
            select(StudyRow.study_date).where(StudyRow.study_uid == study_uid)) or "")
        if not current_date:
            return None
        if ref.person_id is None:
            visible = Policy(archive).visible_clause(who, Permission.VIEW)
            return _latest_before(_same_record_candidates(session, study_uid, visible),
                                  study_uid, current_date)
    timeline = PeopleService(archive).timeline(who, ref.person_id)
    return _latest_before([_Candidate(s.study_uid, _digits(s.date), _digits(s.time),
                                      tuple(s.modalities)) for s in timeline],
                          study_uid, current_date)
