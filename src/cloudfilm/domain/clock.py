"""Time as the archive keeps it: UTC, always with its time zone.

Why one place: the index stores UTC, but SQLite hands datetimes back naive while
PostgreSQL hands them back aware (in the session's zone), and a naive value compared
with an aware one raises. Every value read back goes through `as_utc` once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload


def utcnow() -> datetime:
    """Now, in UTC, aware."""
    return datetime.now(UTC)


@overload
def as_utc(value: datetime) -> datetime: ...


@overload
def as_utc(value: None) -> None: ...


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` in UTC: a naive value is taken to be UTC already (what the index wrote),
    an aware one is converted; None stays None."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
