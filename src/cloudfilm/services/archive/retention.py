"""Retention: how long each source's studies must be kept, legal holds, and what may go.

A policy gives a source (IssuerOfPatientID; ``*`` is the default for all sources) a
minimum number of years, counted from the study date (or, without one, from the day
the study arrived). Without any policy a study is kept forever. A study may be
deleted only when its minimum has passed and no active legal hold (on the study or
its person) and no active grant (a share or a physician's access) covers it.

This module never deletes anything: it reports, and ``may_delete`` answers the
deletion paths, which must ask it first.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Grant, StudyRef
from cloudfilm.domain.clock import as_utc
from cloudfilm.services.access.policy import grant_from_row
from cloudfilm.storage.index.access_models import (
    GrantRow,
    LegalHoldRow,
    PersonRecordRow,
    RetentionPolicyRow,
)
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import PatientRow, StudyRow
from cloudfilm.storage.index.queries import record_of_patient

DEFAULT_ISSUER = "*"


class RetentionError(ValueError):
    pass


@dataclass(frozen=True)
class Hold:
    id: int
    reason: str
    study_uid: str | None
    person_id: int | None
    created_at: datetime
    released_at: datetime | None


@dataclass(frozen=True)
class StudyRetention:
    """One study's retention status at a moment (``blocked_by`` names holds and grants)."""

    study_uid: str
    issuer: str
    patient_id: str
    person_id: int | None
    study_date: date | None
    min_years: int | None  # None: keep forever
    eligible_on: date | None  # None: never
    blocked_by: tuple[str, ...]
    may_delete: bool
    reason: str



def add_years(day: date, years: int) -> date:
    """The same calendar day ``years`` later (29 February becomes 28 February)."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def parse_study_date(value: str) -> date | None:
    try:
        return datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return None


def _hold(row: LegalHoldRow) -> Hold:
    return Hold(row.id, row.reason, row.study_uid, row.person_id, as_utc(row.created_at),
                as_utc(row.released_at) if row.released_at else None)


def _studies_query() -> Select[str, str, datetime, str, str, int]:
    """Studies with their source and, if linked, their person."""
    return (select(StudyRow.study_uid, StudyRow.study_date, StudyRow.created_at,
                   PatientRow.issuer, PatientRow.patient_id, PersonRecordRow.person_id)
            .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
            .outerjoin(PersonRecordRow, record_of_patient()))


@dataclass(frozen=True)
class _Context:
    """What decides every study at one moment: policies, active holds, active grants by person."""

    now: datetime
    policies: dict[str, int | None]
    holds: list[Hold]
    grants: dict[int, list[Grant]]

    def min_years(self, issuer: str) -> int | None:
        if issuer in self.policies:
            return self.policies[issuer]
        return self.policies.get(DEFAULT_ISSUER)

    def blockers(self, study_uid: str, person_id: int | None, arrived: datetime) -> list[str]:
        found = [f"legal hold #{h.id} ({h.reason})" for h in self.holds
                 if h.study_uid == study_uid
                 or (person_id is not None and h.person_id == person_id)]
        if person_id is not None:
            ref = StudyRef(study_uid, person_id, arrived)
            found += [f"grant #{g.id} (active until {g.valid_until or 'revoked'})"
                      for g in self.grants.get(person_id, [])
                      if g.active(self.now) and g.covers(ref)]
        return found

    def assess(self, row: Any) -> StudyRetention:
        uid, raw_date, created_at, issuer, patient_id, person_id = row
        arrived = as_utc(created_at)
        study_date = parse_study_date(raw_date or "")
        years = self.min_years(issuer or "")
        eligible_on = None if years is None else add_years(study_date or arrived.date(), years)
        blocked = tuple(self.blockers(uid, person_id, arrived))
        if eligible_on is None:
            allowed, reason = False, f"the policy for {issuer or 'this source'} keeps it forever"
        elif self.now.date() < eligible_on:
            allowed, reason = False, f"kept until {eligible_on.isoformat()} ({years} years)"
        elif blocked:
            allowed, reason = False, "blocked by " + "; ".join(blocked)
        else:
            allowed, reason = True, f"retention of {years} years ended on {eligible_on.isoformat()}"
        return StudyRetention(uid, issuer or "", patient_id, person_id, study_date, years,
                              eligible_on, blocked, allowed, reason)


class Retention:
    """Policies, legal holds and the retention report over the index."""

    def __init__(self, index: Index) -> None:
        self.index = index

    def set_policy(self, issuer: str, min_years: int | None) -> None:
        """``min_years`` None keeps the source's studies forever; issuer ``*`` is the default."""
        if min_years is not None and min_years < 0:
            raise RetentionError("minimum years must be zero or more")
        with self.index.write_session() as session:
            row = session.scalars(select(RetentionPolicyRow)
                                  .where(RetentionPolicyRow.issuer == issuer)).first()
            if row is None:
                session.add(RetentionPolicyRow(issuer=issuer, min_years=min_years))
            else:
                row.min_years = min_years
            session.commit()

    def policies(self) -> dict[str, int | None]:
        with self.index.session() as session:
            rows = session.execute(select(RetentionPolicyRow.issuer, RetentionPolicyRow.min_years))
            return {issuer: years for issuer, years in rows}

    def add_hold(self, reason: str, *, study_uid: str | None = None,
                 person_id: int | None = None) -> int:
        """Hold one study, or everything of one person, until released; returns the hold id."""
        if (study_uid is None) == (person_id is None):
            raise RetentionError("a legal hold covers either a study or a person")
        if not reason.strip():
            raise RetentionError("a legal hold needs a reason")
        with self.index.write_session() as session:
            row = LegalHoldRow(study_uid=study_uid, person_id=person_id, reason=reason.strip())
            session.add(row)
            session.commit()
            return row.id

    def release_hold(self, hold_id: int, now: datetime | None = None) -> Hold:
        with self.index.write_session() as session:
            row = session.get(LegalHoldRow, hold_id)
            if row is None:
                raise RetentionError(f"legal hold {hold_id} does not exist")
            if row.released_at is not None:
                raise RetentionError(f"legal hold {hold_id} was already released")
            row.released_at = as_utc(now or datetime.now(UTC))
            session.commit()
            return _hold(row)

    def holds(self, *, active_only: bool = True) -> list[Hold]:
        stmt = select(LegalHoldRow).order_by(LegalHoldRow.id)
        if active_only:
            stmt = stmt.where(LegalHoldRow.released_at.is_(None))
        with self.index.session() as session:
            return [_hold(r) for r in session.scalars(stmt)]

    def _context(self, session: Session, now: datetime) -> _Context:
        grants: dict[int, list[Grant]] = defaultdict(list)
        for row in session.scalars(select(GrantRow).where(GrantRow.revoked_at.is_(None))):
            grants[row.person_id].append(grant_from_row(row))
        return _Context(now, self.policies(), self.holds(), dict(grants))

    def report(self, now: datetime | None = None) -> list[StudyRetention]:
        """Every study's retention status (nothing is deleted)."""
        now = as_utc(now or datetime.now(UTC))
        with self.index.session() as session:
            context = self._context(session, now)
            rows = session.execute(_studies_query().order_by(PatientRow.issuer, StudyRow.study_date,
                                                             StudyRow.study_uid))
            return [context.assess(row) for row in rows]

    def assess(self, study_uid: str, now: datetime | None = None) -> StudyRetention | None:
        now = as_utc(now or datetime.now(UTC))
        with self.index.session() as session:
            row = session.execute(_studies_query().where(StudyRow.study_uid == study_uid)).first()
            return None if row is None else self._context(session, now).assess(row)

    def may_delete(self, study_uid: str, now: datetime | None = None) -> tuple[bool, str]:
        """(False, why) while a legal hold or an active grant covers the study, or before the
        policy's minimum years; (True, why) otherwise, also for a study that is not stored."""
        status = self.assess(study_uid, now)
        if status is None:
            return True, "the study is not stored"
        return status.may_delete, status.reason


def summarise(statuses: Iterable[StudyRetention]) -> dict[str, int]:
    counts = {"studies": 0, "eligible": 0, "blocked": 0, "forever": 0}
    for status in statuses:
        counts["studies"] += 1
        counts["eligible"] += status.may_delete
        counts["blocked"] += bool(status.blocked_by)
        counts["forever"] += status.eligible_on is None
    return counts
