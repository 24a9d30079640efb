"""The audit log: append-only records in a hash chain, and its verification.

Appends are serialised (SQLite's write lock; a PostgreSQL advisory lock) so two
writers can never fork the chain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import select, text

from cloudfilm.domain.audit import GENESIS, AuditEntry, chain_hash
from cloudfilm.storage.index.access_models import AuditEventRow
from cloudfilm.storage.index.db import Index

CHAIN_LOCK = 0x0C10DF11  # PostgreSQL advisory lock id for the audit chain


@dataclass(frozen=True)
class ChainReport:
    records: int
    first_bad_id: int | None = None
    problem: str = ""

    @property
    def intact(self) -> bool:
        return self.first_bad_id is None


def _entry(row: AuditEventRow) -> AuditEntry:
    return AuditEntry(actor=row.actor, action=row.action, outcome=row.outcome,
                      actor_role=row.actor_role, on_behalf_of=row.on_behalf_of,
                      person_id=row.person_id, patient_ref=row.patient_ref,
                      study_uid=row.study_uid, source=row.source, detail=json.loads(row.detail))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class AuditLog:
    def __init__(self, index: Index) -> None:
        self.index = index

    def record(self, entry: AuditEntry) -> int:
        """Append one record; returns its id."""
        at = datetime.now(timezone.utc).replace(microsecond=0)
        with self.index.write_session() as session:
            if not self.index.is_sqlite:
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK})
            last = session.scalars(select(AuditEventRow.hash).order_by(AuditEventRow.id.desc())
                                   .limit(1)).first()
            prev = last or GENESIS
            row = AuditEventRow(
                at=at, actor=entry.actor, actor_role=entry.actor_role,
                on_behalf_of=entry.on_behalf_of, action=entry.action, outcome=entry.outcome,
                person_id=entry.person_id, patient_ref=entry.patient_ref, study_uid=entry.study_uid,
                source=entry.source, detail=json.dumps(entry.detail, sort_keys=True),
                prev_hash=prev, hash=chain_hash(entry, at, prev))
            session.add(row)
            session.commit()
            return row.id

    def verify(self) -> ChainReport:
        """Walk the chain in id order; report the first record that does not fit."""
        prev, count = GENESIS, 0
        with self.index.session() as session:
            for row in session.scalars(select(AuditEventRow).order_by(AuditEventRow.id)).yield_per(1000):
                count += 1
                if row.prev_hash != prev:
                    return ChainReport(count, row.id, "previous-hash link broken (a record was "
                                                      "removed or reordered before it)")
                if chain_hash(_entry(row), _aware(row.at), row.prev_hash) != row.hash:
                    return ChainReport(count, row.id, "record content does not match its hash "
                                                      "(edited)")
                prev = row.hash
        return ChainReport(count)
