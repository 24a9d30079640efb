"""The audit log: append-only records in a hash chain, and its verification.

Appends are serialised (SQLite's write lock; a PostgreSQL advisory lock) so two
writers can never fork the chain. After each append, listeners on ``on_record``
see the new record (e.g. the RFC 5424 syslog forwarder of IHE ATNA, ITI-20);
a failing listener is logged and never fails the append.

Views are aggregated: ``record_view`` writes at most one ``view`` record per
(session, study) per hour, so a viewer fetching hundreds of frames leaves one line;
``record_once`` does the same for other per-instance events (a C-STORE association).

Limits: ``verify`` finds records edited, removed or reordered inside the chain. Removing
the newest records, or rewriting the chain from some record on with recomputed hashes,
needs an outside anchor: the syslog copy, or the head hash ``verify`` reports, kept
elsewhere.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import Select, select, text

from cloudfilm.domain.audit import GENESIS, AuditEntry, chain_hash
from cloudfilm.storage.index.access_models import AuditEventRow
from cloudfilm.storage.index.db import Index

log = logging.getLogger(__name__)

CHAIN_LOCK = 0x0C10DF11  # PostgreSQL advisory lock id for the audit chain
VIEW_WINDOW_SECONDS = 3600.0  # one `view` record per (session, study) per hour
VIEW_DEDUPE_MAX = 10_000  # LRU bound; an evicted key may be recorded again (errs on over-recording)


@dataclass(frozen=True)
class ChainReport:
    records: int
    first_bad_id: int | None = None
    problem: str = ""
    head: str = ""  # the newest record's hash when intact (an anchor to keep elsewhere)

    @property
    def intact(self) -> bool:
        return self.first_bad_id is None


@dataclass(frozen=True)
class AuditRecord:
    """One stored record: its id and time, and what it says."""

    id: int
    at: datetime
    entry: AuditEntry


Listener = Callable[[AuditRecord], None]


def _entry(row: AuditEventRow) -> AuditEntry:
    return AuditEntry(actor=row.actor, action=row.action, outcome=row.outcome,
                      actor_role=row.actor_role, on_behalf_of=row.on_behalf_of,
                      person_id=row.person_id, patient_ref=row.patient_ref,
                      study_uid=row.study_uid, source=row.source, detail=json.loads(row.detail))


def as_utc(value: datetime) -> datetime:
    """In UTC, whatever the database session's time zone (naive values are UTC: SQLite)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


@dataclass
class _ViewDedupe:
    """A bounded LRU of (session key, study) -> monotonic time of the last recorded view."""

    window: float = VIEW_WINDOW_SECONDS
    maxsize: int = VIEW_DEDUPE_MAX
    seen: OrderedDict[tuple[str, str], float] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def claim(self, key: tuple[str, str], now: float) -> bool:
        """True if a view for ``key`` should be recorded now (and remember it)."""
        with self.lock:
            last = self.seen.get(key)
            if last is not None and now - last < self.window:
                self.seen.move_to_end(key)
                return False
            self.seen[key] = now
            self.seen.move_to_end(key)
            while len(self.seen) > self.maxsize:
                self.seen.popitem(last=False)
            return True

    def forget(self, key: tuple[str, str]) -> None:
        with self.lock:
            self.seen.pop(key, None)


class AuditLog:
    def __init__(self, index: Index, *, environ: Mapping[str, str] | None = None) -> None:
        """``CLOUDFILM_SYSLOG`` (in ``environ``, else the process environment) adds a forwarder."""
        from cloudfilm.services.syslog import forwarder_from_env  # imports this module

        self.index = index
        self.on_record: list[Listener] = []
        self._views = _ViewDedupe()
        self.forwarder = forwarder_from_env(environ)
        if self.forwarder is not None:
            self.on_record.append(self.forwarder)

    def close(self) -> None:
        """Flush and stop the syslog forwarder, if any (also done at interpreter exit)."""
        if self.forwarder is not None:
            self.forwarder.close()

    def record(self, entry: AuditEntry) -> int:
        """Append one record; returns its id."""
        return self.record_many([entry])[0]

    def record_many(self, entries: list[AuditEntry]) -> list[int]:
        """Append several records in one transaction (one commit for a batch upload)."""
        if not entries:
            return []
        at = datetime.now(timezone.utc).replace(microsecond=0)
        with self.index.write_session() as session:
            if not self.index.is_sqlite:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK})
            last = session.scalars(select(AuditEventRow.hash).order_by(AuditEventRow.id.desc())
                                   .limit(1)).first()
            prev = last or GENESIS
            rows = []
            for entry in entries:
                row = AuditEventRow(
                    at=at, actor=entry.actor, actor_role=entry.actor_role,
                    on_behalf_of=entry.on_behalf_of, action=entry.action, outcome=entry.outcome,
                    person_id=entry.person_id, patient_ref=entry.patient_ref,
                    study_uid=entry.study_uid, source=entry.source,
                    detail=json.dumps(entry.detail, sort_keys=True),
                    prev_hash=prev, hash=chain_hash(entry, at, prev))
                session.add(row)
                session.flush()
                rows.append(row)
                prev = row.hash
            session.commit()
            ids = [row.id for row in rows]
        for record_id, entry in zip(ids, entries, strict=True):
            self._notify(AuditRecord(record_id, at, entry))
        return ids

    def _notify(self, record: AuditRecord) -> None:
        for listener in list(self.on_record):
            try:
                listener(record)
            except Exception:  # a listener must never fail the audited request
                log.exception("audit listener %r failed for record %s", listener, record.id)

    def record_view(self, actor: str, study_uid: str, session_key: str, *, actor_role: str = "",
                    on_behalf_of: str = "", person_id: int | None = None, patient_ref: str = "",
                    source: str = "", detail: dict[str, Any] | None = None,
                    now: float | None = None) -> int | None:
        """Record a ``view`` of a study (frames, metadata): once per session, study and hour."""
        entry = AuditEntry(actor=actor, action="view", actor_role=actor_role,
                           on_behalf_of=on_behalf_of, person_id=person_id, patient_ref=patient_ref,
                           study_uid=study_uid, source=source, detail=detail or {})
        return self.record_once(entry, session_key, now=now)

    def record_once(self, entry: AuditEntry, session_key: str, *,
                    now: float | None = None) -> int | None:
        """Record ``entry`` unless the same action on the same study was recorded for this
        session (or association) within the hour; returns the new id, or None.

        Deduplication is in memory, per process (a bounded LRU): a restart or an eviction
        may record one more, never one fewer.
        """
        key = (f"{entry.action}:{session_key}", entry.study_uid)
        if not self._views.claim(key, time.monotonic() if now is None else now):
            return None
        try:
            return self.record(entry)
        except Exception:
            self._views.forget(key)
            raise

    def query(self, *, since: datetime | None = None, until: datetime | None = None,
              person_ids: Collection[int] | None = None, limit: int = 1000,
              newest_first: bool = False) -> list[AuditRecord]:
        """Records with ``since <= at < until`` about any of ``person_ids`` (None: everyone)."""
        stmt: Select[tuple[AuditEventRow]] = select(AuditEventRow)
        if since is not None:
            stmt = stmt.where(AuditEventRow.at >= as_utc(since))
        if until is not None:
            stmt = stmt.where(AuditEventRow.at < as_utc(until))
        if person_ids is not None:
            stmt = stmt.where(AuditEventRow.person_id.in_(list(person_ids)))
        order = AuditEventRow.id.desc() if newest_first else AuditEventRow.id
        with self.index.session() as session:
            rows = session.scalars(stmt.order_by(order).limit(limit)).all()
            return [AuditRecord(r.id, as_utc(r.at), _entry(r)) for r in rows]

    def verify(self) -> ChainReport:
        """Walk the chain in id order; report the first record that does not fit."""
        prev, count = GENESIS, 0
        with self.index.session() as session:
            rows = session.scalars(select(AuditEventRow).order_by(AuditEventRow.id))
            for row in rows.yield_per(1000):
                count += 1
                if row.prev_hash != prev:
                    return ChainReport(count, row.id, "previous-hash link broken (a record was "
                                                      "removed or reordered before it)")
                try:
                    intact = chain_hash(_entry(row), as_utc(row.at), row.prev_hash) == row.hash
                except (ValueError, TypeError) as exc:  # e.g. detail no longer JSON, unknown action
                    return ChainReport(count, row.id, f"record cannot be read ({exc}) (edited)")
                if not intact:
                    return ChainReport(count, row.id, "record content does not match its hash "
                                                      "(edited)")
                prev = row.hash
        return ChainReport(count, head=prev if count else "")
