"""Failed-attempt limits, shared by logins, share-link PINs and claim codes.

Why "reserve before evaluating": a limit that is checked, then evaluated (a slow argon2
hash), then counted loses under concurrency: forty parallel guesses all pass the check
before the first failure is written (issue 11, finding 3). So every try first *reserves*
one attempt on each of its keys in one index transaction, counted as a failure up
front; only a reserved try is evaluated; a success then clears or refunds what it
reserved. The transaction inserts missing rows with ``INSERT ... ON CONFLICT DO
NOTHING`` and locks them with ``SELECT ... FOR UPDATE`` (PostgreSQL); on SQLite the
index's write session is ``BEGIN IMMEDIATE``, which serialises it. Keys are locked in
sorted order, so two multi-key reservations cannot deadlock.

A key's `Limit` is one of two kinds:
- a lock-out: ``max_failures`` within ``window`` lock the key for ``lockout``; the
  count starts again after the lock;
- a back-off (``grows_to`` set): after ``max_failures`` within ``window``, one try per
  interval, ``lockout`` doubling with each further failure up to ``grows_to``. It only
  spaces tries; it never shuts the key for longer than ``grows_to``.
Stored in the index, so limits hold across restarts and the processes of a deployment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from cloudfilm.domain.clock import as_utc
from cloudfilm.storage.index.access_models import RateLimitRow
from cloudfilm.storage.index.db import Index


@dataclass(frozen=True)
class Limit:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    grows_to: timedelta | None = None  # set: a back-off that spaces tries (see the module)

    def delay(self, failures: int) -> timedelta:
        """How long a key waits after its ``failures``-th failure (zero below the limit)."""
        if failures < self.max_failures:
            return timedelta(0)
        if self.grows_to is None:
            return self.lockout
        return min(self.lockout * (1 << min(failures - self.max_failures, 30)), self.grows_to)


@dataclass(frozen=True)
class Counter:
    """One key's row: failures since ``window_started_at``; no try before ``locked_until``."""

    failures: int
    window_started_at: datetime
    locked_until: datetime | None

    def locked_at(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def one_more_try(self, limit: Limit, now: datetime) -> Counter:
        """The counter after reserving a try at ``now`` (the caller checked it is not locked)."""
        expired = self.window_started_at + limit.window <= now
        lock_served = self.locked_until is not None and limit.grows_to is None
        fresh = Counter(0, now, None) if expired or lock_served else self
        failures = fresh.failures + 1
        delay = limit.delay(failures)
        return Counter(failures, fresh.window_started_at, now + delay if delay else None)


class LockedOut(Exception):
    """Too many failures; ``until`` says when trying again is allowed."""

    def __init__(self, until: datetime) -> None:
        minutes = max(1, int((until - datetime.now(UTC)).total_seconds() // 60) + 1)
        super().__init__(f"too many failed attempts; try again in {minutes} minute(s)")
        self.until = until


def _counter(row: RateLimitRow) -> Counter:
    started = as_utc(row.window_started_at)
    assert started is not None
    return Counter(row.failures, started, as_utc(row.locked_until))


class RateLimiter:
    def __init__(self, index: Index, limit: Limit = Limit()) -> None:
        self.index = index
        self.limit = limit

    def reserve(self, *keys: str | tuple[str, Limit]) -> dict[str, int]:
        """Count one try against every key before it is evaluated; each key's failures after.

        Raises LockedOut (and counts nothing) if any key is locked now. A plain key
        uses the limiter's default `Limit`.
        """
        limits = dict(k if isinstance(k, tuple) else (k, self.limit) for k in keys)
        now = datetime.now(UTC)
        counts: dict[str, int] = {}
        with self.index.write_session() as session:
            _insert_missing(session, sorted(limits), now)
            for key in sorted(limits):
                row = session.scalars(select(RateLimitRow).where(RateLimitRow.key == key)
                                      .with_for_update()).one()
                counter = _counter(row)
                if counter.locked_at(now):
                    session.rollback()
                    raise LockedOut(counter.locked_until)  # type: ignore[arg-type]
                after = counter.one_more_try(limits[key], now)
                row.failures, row.window_started_at = after.failures, after.window_started_at
                row.locked_until = after.locked_until
                counts[key] = after.failures
            session.commit()
        return counts

    def check(self, *keys: str) -> None:
        """Raise LockedOut if any key is locked now (a read: to show a locked page early)."""
        now = datetime.now(UTC)
        with self.index.session() as session:
            for key in keys:
                row = session.get(RateLimitRow, key)
                if row is not None and _counter(row).locked_at(now):
                    raise LockedOut(_counter(row).locked_until)  # type: ignore[arg-type]

    def clear(self, *keys: str) -> None:
        """A success: forget these keys' failures (and any lock)."""
        with self.index.write_session() as session:
            session.execute(delete(RateLimitRow).where(RateLimitRow.key.in_(keys)))
            session.commit()

    def refund(self, *keys: str) -> None:
        """A success: give back the one try reserved on these keys, keeping the rest."""
        with self.index.write_session() as session:
            session.execute(update(RateLimitRow).where(RateLimitRow.key.in_(keys),
                                                       RateLimitRow.failures > 0)
                            .values(failures=RateLimitRow.failures - 1))
            session.commit()


def _insert_missing(session: Session, keys: Iterable[str], now: datetime) -> None:
    """Create absent rows without racing a concurrent creator (``ON CONFLICT DO NOTHING``)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    values = [{"key": key, "failures": 0, "window_started_at": now, "locked_until": None}
              for key in keys]
    session.execute(insert(RateLimitRow).values(values)
                    .on_conflict_do_nothing(index_elements=["key"]))
