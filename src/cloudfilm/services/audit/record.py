"""One stored audit record, and what listens for new ones (the syslog forwarder).

Its own module so the log, its exports and the forwarder can all name it without
importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cloudfilm.domain.audit import AuditEntry


@dataclass(frozen=True)
class AuditRecord:
    """One stored record: its id and time, and what it says."""

    id: int
    at: datetime
    entry: AuditEntry


Listener = Callable[[AuditRecord], None]


class Forwarder(Protocol):
    """Where records also go as they are written (IHE ATNA: the syslog forwarder)."""

    def __call__(self, record: AuditRecord) -> None: ...

    def send_checkpoint(self, line: str) -> None: ...

    def close(self) -> None: ...
