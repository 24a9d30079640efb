"""The job ledger: each job's state in the index database, whatever the queue engine.

Why in the index: the index is already the durable, shared store every node and worker
opens, so a job enqueued there survives any crash without another engine, and the same
rules hold on every engine:

- *at least once*: a worker claims a job by taking a lease (``run_after`` moved to the
  lease's end, a fresh ``token``) and renews it while the job runs; a worker killed
  mid-job stops renewing, and once the lease has run out another worker claims the job;
- *retries with back-off*: a failed attempt puts the job back, due after `RetryPolicy`'s
  delay, until its last attempt marks it failed;
- *one at a time per key*: at most one job per ``dedupe_key`` waits (a unique index
  over waiting rows), and a job is not claimed while another of its key runs.

Claims take ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never wait
on each other's rows; SQLite serialises writers (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.job_models import FAILED, QUEUED, RUNNING, JobRow

LEASE = timedelta(seconds=20)  # a claim not renewed for this long is taken over
ERROR_CHARS = 2000


@dataclass(frozen=True)
class RetryPolicy:
    """How often a job is tried, and how long it waits between tries: 1 s, 4 s, 16 s, …
    up to ``max_delay``."""

    max_attempts: int = 6
    first_delay: float = 1.0
    factor: float = 4.0
    max_delay: float = 900.0

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the ``attempts``-th failed try."""
        return float(min(self.first_delay * self.factor ** max(attempts - 1, 0), self.max_delay))


@dataclass(frozen=True)
class Claim:
    """A job a worker holds: run it, then `Ledger.finish` or `Ledger.give_back` it."""

    id: int
    name: str
    payload: dict[str, Any]
    attempts: int  # this try included
    token: str
    dedupe_key: str | None


@dataclass(frozen=True)
class JobView:
    """A job as operators and tests see it."""

    id: int
    name: str
    payload: dict[str, Any]
    dedupe_key: str | None
    state: str
    attempts: int
    run_after: datetime
    last_error: str


def _view(row: JobRow) -> JobView:
    return JobView(row.id, row.name, json.loads(row.payload), row.dedupe_key, row.state,
                   row.attempts, as_utc(row.run_after), row.last_error)


# One alias for every poll: SQLAlchemy memoises its column adaptation per alias, and a
# new alias per poll cost ~6% of a busy server's CPU (docs/profiles/stow.svg).
_OTHER_JOB = aliased(JobRow)


def _claimable(now: datetime) -> ColumnElement[bool]:
    """Due (waiting, or running with its lease run out) and no other job of its key
    running under a live lease."""
    other = _OTHER_JOB
    busy = exists().where(other.dedupe_key == JobRow.dedupe_key, other.id != JobRow.id,
                          other.state == RUNNING, other.run_after > now)
    return and_(JobRow.state.in_((QUEUED, RUNNING)), JobRow.run_after <= now,
                or_(JobRow.dedupe_key.is_(None), ~busy))


class Ledger:
    """The ``jobs`` table: add, claim, renew, finish, give back, and look."""

    def __init__(self, index: Index, lease: timedelta = LEASE) -> None:
        self.index = index
        self.lease = lease

    def add(self, name: str, payload: Mapping[str, Any], *, dedupe_key: str | None = None,
            delay: float = 0.0, sent: bool = False, now: datetime | None = None) -> int | None:
        """A new waiting job; None when a job of ``dedupe_key`` already waits (it will
        see everything stored before it starts)."""
        now = now or utcnow()
        body = json.dumps(dict(payload), sort_keys=True)
        with self.index.write_session() as session:
            if dedupe_key is not None and session.scalar(select(JobRow.id).where(
                    JobRow.dedupe_key == dedupe_key, JobRow.state == QUEUED)) is not None:
                return None
            row = JobRow(name=name, payload=body, dedupe_key=dedupe_key, state=QUEUED,
                         attempts=0, run_after=now + timedelta(seconds=max(delay, 0.0)),
                         sent_at=now if sent else None, last_error="", created_at=now)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # another process added the waiting job first
                return None
            return int(row.id)

    def due(self, now: datetime | None = None) -> bool:
        """Is any job claimable now? (A read, so idle workers do not take write locks.)"""
        with self.index.session() as session:
            return session.scalar(select(JobRow.id).where(_claimable(now or utcnow()))
                                  .limit(1)) is not None

    def claim_next(self, now: datetime | None = None) -> Claim | None:
        """Take the job due longest, if any."""
        return self._claim(None, now or utcnow())

    def claim(self, job_id: int, now: datetime | None = None) -> Claim | None:
        """Take this job if it is claimable now (a broker delivered it)."""
        return self._claim(job_id, now or utcnow())

    def _claim(self, job_id: int | None, now: datetime) -> Claim | None:
        stmt = select(JobRow).where(_claimable(now))
        if job_id is not None:
            stmt = stmt.where(JobRow.id == job_id)
        stmt = (stmt.order_by(JobRow.run_after, JobRow.id).limit(1)
                .with_for_update(skip_locked=True, of=JobRow))
        with self.index.write_session() as session:
            row = session.scalars(stmt).first()
            if row is None:
                return None
            row.state, row.attempts = RUNNING, row.attempts + 1
            row.token, row.run_after = uuid.uuid4().hex, now + self.lease
            session.commit()
            return Claim(row.id, row.name, json.loads(row.payload), row.attempts, row.token,
                         row.dedupe_key)

    def renew(self, claim: Claim, now: datetime | None = None) -> bool:
        """Extend the lease; False when it was lost (another worker took the job over)."""
        with self.index.write_session() as session:
            result: Any = session.execute(
                update(JobRow).where(JobRow.id == claim.id, JobRow.token == claim.token)
                .values(run_after=(now or utcnow()) + self.lease))
            session.commit()
            return bool(result.rowcount == 1)

    def finish(self, claim: Claim) -> None:
        """Done: the job leaves the ledger."""
        with self.index.write_session() as session:
            session.execute(delete(JobRow).where(JobRow.id == claim.id,
                                                 JobRow.token == claim.token))
            session.commit()

    def give_back(self, claim: Claim, error: str, policy: RetryPolicy,
                  now: datetime | None = None) -> str:
        """A failed try: due again after the policy's delay, or ``failed`` after the last
        attempt. Returns the job's new state ("queued", "failed"), "merged" when a job of
        the same key already waits (it does the work) or "lost" (the lease was lost)."""
        now = now or utcnow()
        last = claim.attempts >= policy.max_attempts
        values: dict[str, Any] = {"token": None, "last_error": error[:ERROR_CHARS],
                                  "state": FAILED if last else QUEUED, "sent_at": None,
                                  "run_after": now if last else
                                  now + timedelta(seconds=policy.delay(claim.attempts))}
        where = (JobRow.id == claim.id, JobRow.token == claim.token)
        with self.index.write_session() as session:
            try:
                result: Any = session.execute(update(JobRow).where(*where).values(**values))
                session.commit()
            except IntegrityError:
                session.rollback()
                session.execute(delete(JobRow).where(*where))
                session.commit()
                return "merged"
        return str(values["state"]) if result.rowcount == 1 else "lost"

    def pending(self, dedupe_key: str) -> bool:
        """Does a job of this key wait or run (its work is not done yet)?"""
        with self.index.session() as session:
            return session.scalar(select(JobRow.id).where(
                JobRow.dedupe_key == dedupe_key,
                JobRow.state.in_((QUEUED, RUNNING))).limit(1)) is not None

    def latest(self, dedupe_key: str) -> JobView | None:
        """The newest job of this key still in the ledger (waiting, running or failed);
        None once the last one finished (finished jobs leave no row)."""
        with self.index.session() as session:
            row = session.scalars(select(JobRow).where(JobRow.dedupe_key == dedupe_key)
                                  .order_by(JobRow.id.desc()).limit(1)).first()
            return None if row is None else _view(row)

    def jobs(self, state: str | None = None, *, limit: int = 1000) -> list[JobView]:
        """The ledger's jobs, oldest first (``state``: queued, running or failed)."""
        stmt = select(JobRow).order_by(JobRow.id).limit(limit)
        if state is not None:
            stmt = stmt.where(JobRow.state == state)
        with self.index.session() as session:
            return [_view(row) for row in session.scalars(stmt)]

    def to_send(self, resend_after: timedelta, now: datetime | None = None,
                limit: int = 100) -> list[int]:
        """Jobs a broker must carry now: due and not sent since they became due (or not
        for ``resend_after``: a message lost with a crash). Marks them sent."""
        now = now or utcnow()
        unsent = or_(JobRow.sent_at.is_(None), JobRow.sent_at < JobRow.run_after,
                     JobRow.sent_at < now - resend_after)
        stmt = (select(JobRow).where(_claimable(now), unsent).order_by(JobRow.run_after)
                .limit(limit).with_for_update(skip_locked=True, of=JobRow))
        with self.index.session() as session:  # a read first: most rounds find nothing
            if session.scalar(select(JobRow.id).where(_claimable(now), unsent).limit(1)) is None:
                return []
        with self.index.write_session() as session:
            rows = list(session.scalars(stmt))
            for row in rows:
                row.sent_at = now
            session.commit()
            return [row.id for row in rows]

    def unsent(self, job_id: int) -> None:
        """The broker did not take it: send it again at the next relay round."""
        with self.index.write_session() as session:
            session.execute(update(JobRow).where(JobRow.id == job_id).values(sent_at=None))
            session.commit()
