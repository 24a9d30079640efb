"""Failed-attempt limits with lock-out, shared by logins and share-link PINs.

Keys are strings such as ``login-user:alice``, ``login-ip:203.0.113.7`` or
``pin:42``. After ``max_failures`` failures within ``window`` the key is locked for
``lockout``; a success clears it. Stored in the index, so limits hold across
restarts and across the processes of one deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from cloudfilm.storage.index.access_models import RateLimitRow
from cloudfilm.storage.index.db import Index


@dataclass(frozen=True)
class Limit:
    max_failures: int = 5
    window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)


class LockedOut(Exception):
    """Too many failures; ``until`` says when trying again is allowed."""

    def __init__(self, until: datetime) -> None:
        minutes = max(1, int((until - datetime.now(timezone.utc)).total_seconds() // 60) + 1)
        super().__init__(f"too many failed attempts; try again in {minutes} minute(s)")
        self.until = until


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


class RateLimiter:
    def __init__(self, index: Index, limit: Limit = Limit()) -> None:
        self.index = index
        self.limit = limit

    def check(self, *keys: str) -> None:
        """Raise LockedOut if any key is locked now."""
        now = datetime.now(timezone.utc)
        with self.index.session() as session:
            for key in keys:
                row = session.get(RateLimitRow, key)
                until = _aware(row.locked_until) if row else None
                if until is not None and until > now:
                    raise LockedOut(until)

    def failure(self, *keys: str) -> None:
        """Count a failure against each key, locking those that reach the limit."""
        now = datetime.now(timezone.utc)
        with self.index.write_session() as session:
            for key in keys:
                row = session.get(RateLimitRow, key)
                if row is None or _aware(row.window_started_at) + self.limit.window < now:  # type: ignore[operator]
                    row = session.merge(RateLimitRow(key=key, failures=0, window_started_at=now,
                                                     locked_until=None))
                row.failures += 1
                if row.failures >= self.limit.max_failures:
                    row.locked_until = now + self.limit.lockout
            session.commit()

    def success(self, *keys: str) -> None:
        with self.index.write_session() as session:
            for key in keys:
                row = session.get(RateLimitRow, key)
                if row is not None:
                    session.delete(row)
            session.commit()
