"""The index writes of one group commit: every batch in one transaction, most rows in one INSERT.

Each batch (one request or association) keeps its own `WriteRights` and parent cache,
so a source never joins a record that another source's batch created in the same
transaction, exactly as if the batches had committed one after the other.

Within a batch, the first instance of each (patient, study, series) is written alone
inside a SAVEPOINT, through storage/index/writer.py, which creates or checks the parent
rows and may refuse it alone. Every later instance of the same series, new to the index,
would meet the same parents and the same checks, so those are inserted together in one
multi-row INSERT (a SAVEPOINT around it): one statement instead of a lookup, a
SAVEPOINT and a flush each. Should that INSERT fail (another node stored one of them
meanwhile, or removed their series), they are written again one at a time, so each
fails alone.

`SeriesHints` carries that knowledge from one batch to the next (a C-STORE association
sends one instance per batch): the series row a source last wrote into is checked by
one lookup (same series, study, record and stored demographics, and the source may
still add to that record) instead of being resolved again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import orjson
from sqlalchemy import Table, bindparam, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain.instance_facts import InstanceFacts
from cloudfilm.services.archive.outcomes import (
    CONFLICT,
    DUPLICATE,
    STORED,
    IngestOutcome,
    PreparedInstance,
    failure,
    not_addable_here,
    success,
)
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow
from cloudfilm.storage.index.writer import (
    IndexConflict,
    ParentCache,
    WriteRights,
    find_instance,
    instance_record,
    instance_values,
    may_add_to,
    write_instance,
)

INSERT_INSTANCES = insert(cast(Table, InstanceRow.__table__))  # Core: no ORM bookkeeping
LOOKUP_CHUNK = 500  # SOP Instance UIDs per IN (…) query
# Built once and run on the transaction's connection: for a batch of one (a C-STORE) the
# ORM's per-statement work would cost more than the lookups themselves.
STORED_SOPS = select(InstanceRow.sop_uid).where(
    InstanceRow.sop_uid.in_(bindparam("sops", expanding=True)))
SERIES_PARENTS = (
    select(SeriesRow.series_uid, StudyRow.study_uid, PatientRow.patient_id, PatientRow.issuer,
           PatientRow.attrs)
    .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
    .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
    .where(SeriesRow.id == bindparam("series_pk")))
Parents = tuple[str, str, str, str]  # PatientID, IssuerOfPatientID, study, series


@dataclass(frozen=True)
class Batch:
    """One caller's instances in a group commit, with what its source may write."""

    pending: list[PreparedInstance]
    rights: WriteRights


class SeriesHints:
    """The series row last written for each (patient, study, series): a bounded LRU, shared
    by every batch of the process. A hint is only a guess, checked before it is used."""

    def __init__(self, size: int = 4096) -> None:
        self._rows: OrderedDict[Parents, int] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, parents: Parents) -> int | None:
        with self._lock:
            return self._rows.get(parents)

    def put(self, parents: Parents, series_pk: int) -> None:
        with self._lock:
            self._rows[parents] = series_pk
            self._rows.move_to_end(parents)
            if len(self._rows) > self._size:
                self._rows.popitem(last=False)


def write_batches(session: Session, batches: Sequence[Batch], *, overwrite: bool,
                  hints: SeriesHints) -> None:
    """Write every batch's instances that have no outcome yet, setting each outcome.

    A batch's instances are written in the order of their patient, study and series, so
    two transactions (another node's, on PostgreSQL) that create the same new patients
    lock their rows in the same order rather than waiting on each other (a deadlock).
    """
    for batch in batches:
        todo = [p for p in batch.pending if p.outcome is None and p.facts is not None]
        _BatchWrites(session, batch.rights, overwrite, hints).write(
            sorted(todo, key=_lock_order))


def _lock_order(item: PreparedInstance) -> tuple[str, ...]:
    assert item.facts is not None
    return tuple(map(str, _parents(item.facts)))


def _parents(facts: InstanceFacts) -> Parents:
    return (facts.patient["patient_id"], facts.patient["issuer"], facts.study_uid,
            facts.series_uid)


class _BatchWrites:
    """One batch's rows inside the group's transaction."""

    def __init__(self, session: Session, rights: WriteRights, overwrite: bool,
                 hints: SeriesHints) -> None:
        self.session, self.rights, self.overwrite, self.hints = session, rights, overwrite, hints
        self.cache = ParentCache()
        self.series_of: dict[Parents, int] = {}  # series pk of parents written in this batch
        self.fresh: list[PreparedInstance] = []  # to insert together
        self.seen: set[str] = set()

    def write(self, items: list[PreparedInstance]) -> None:
        stored = self._stored([p.facts.sop_instance_uid for p in items if p.facts is not None])
        for item in items:
            facts = item.facts
            assert facts is not None
            sop = facts.sop_instance_uid
            if sop in self.seen:  # sent twice: the second must find the first
                self._insert_fresh()
            maybe_stored = sop in stored or sop in self.seen
            if not maybe_stored and self._known_series(facts) is not None:
                self.fresh.append(item)
            else:
                self._write_one(item, maybe_stored)
                if item.publish:
                    series_pk = self.cache.series[facts.series_uid][0]
                    self.series_of[_parents(facts)] = series_pk
                    self.hints.put(_parents(facts), series_pk)
            self.seen.add(sop)
        self._insert_fresh()

    def _known_series(self, facts: InstanceFacts) -> int | None:
        """The series pk an instance of these parents goes into with no further check, if known."""
        parents = _parents(facts)
        known = self.series_of.get(parents)
        if known is None:
            hint = self.hints.get(parents)
            if hint is not None and self._still_valid(hint, facts):
                known = self.series_of[parents] = hint
        return known

    def _still_valid(self, series_pk: int, facts: InstanceFacts) -> bool:
        """The hinted series is still this instance's, under the same record, whose stored
        demographics it would not change, and this source may add to that record: what
        `write_instance` would find and check, in one lookup."""
        record = (facts.patient["patient_id"], facts.patient["issuer"])
        if self.rights.screened and not self.rights.may_join(record):
            return False
        row = self.session.connection().execute(SERIES_PARENTS, {"series_pk": series_pk}).first()
        return row is not None and tuple(row) == (
            facts.series_uid, facts.study_uid, *record, orjson.dumps(facts.patient_attrs).decode())

    def _stored(self, sops: list[str]) -> set[str]:
        found: set[str] = set()
        connection = self.session.connection()
        for start in range(0, len(sops), LOOKUP_CHUNK):
            found.update(connection.execute(
                STORED_SOPS, {"sops": sops[start:start + LOOKUP_CHUNK]}).scalars())
        return found

    def _insert_fresh(self) -> None:
        items, self.fresh = self.fresh, []
        if not items:
            return
        savepoint = self.session.begin_nested()
        try:
            self.session.connection().execute(INSERT_INSTANCES, [_row(item, self.series_of[
                _parents(item.facts)]) for item in items if item.facts is not None])
            savepoint.commit()
        except IntegrityError:
            savepoint.rollback()
            for item in items:
                assert item.facts is not None
                self.series_of.pop(_parents(item.facts), None)
                self._write_one(item, maybe_stored=True)
            return
        for item in items:
            assert item.facts is not None
            item.outcome = success(STORED, item.facts)
            item.publish = True

    def _write_one(self, item: PreparedInstance, maybe_stored: bool) -> None:
        """The instance alone: duplicate, conflict, refusal, or a row in its own SAVEPOINT.
        Unless ``maybe_stored``, the batch's lookup found no row for it; should another
        writer have stored it since (PostgreSQL), the INSERT fails and it is written again
        as one that may be stored."""
        facts, rights, session = item.facts, self.rights, self.session
        assert facts is not None
        existing = find_instance(session, facts.sop_instance_uid) if maybe_stored else None
        if existing is not None and rights.screened and not may_add_to(
                rights, self.cache, instance_record(session, facts.sop_instance_uid)):
            item.outcome = not_addable_here(facts)  # not even "duplicate": that tells
            return
        if existing is not None and existing.sha256 == item.staged.sha256:
            item.outcome = success(DUPLICATE, facts)
            return
        if existing is not None and not self.overwrite:
            item.outcome = failure(facts, "an instance with this SOP Instance UID is already "
                                   "stored with different content", CONFLICT)
            return
        savepoint = session.begin_nested()
        try:
            write_instance(session, facts, blob_key=item.staged.key,
                           size=item.staged.size, sha256=item.staged.sha256, cache=self.cache,
                           replace=existing, rights=rights)
            savepoint.commit()
        except (IndexConflict, IntegrityError) as exc:
            savepoint.rollback()
            self.cache.forget(facts)
            if isinstance(exc, IntegrityError) and not maybe_stored:
                self._write_one(item, maybe_stored=True)
                return
            item.outcome = _conflict(facts, exc, rights)
            return
        item.outcome = success(STORED, facts)
        item.publish = True
        if existing is not None and existing.blob_key != item.staged.key:
            item.replaces = existing.blob_key


def _row(item: PreparedInstance, series_pk: int) -> dict[str, Any]:
    """The instance's row, as `writer.write_instance` would write it."""
    assert item.facts is not None
    return instance_values(item.facts, series_pk, item.staged.key, item.staged.size,
                           item.staged.sha256)


def _conflict(facts: InstanceFacts, exc: Exception, rights: WriteRights) -> IngestOutcome:
    """A hospital source is told which UID clashes; anyone else gets the uniform refusal."""
    if isinstance(exc, IndexConflict):
        return not_addable_here(facts) if rights.screened \
            else failure(facts, str(exc), CONFLICT)
    return failure(facts, "concurrent conflicting write", CONFLICT)
