"""The audit log: append-only records in a keyed hash chain, anchored outside the index.

Appends are serialised (SQLite's write lock; a PostgreSQL advisory lock) so two
writers can never fork the chain. After each append, listeners on ``on_record``
see the new record (e.g. the RFC 5424 syslog forwarder of IHE ATNA, ITI-20);
a failing listener is logged and never fails the append.

Each record's hash is HMAC-SHA256 under the audit key (derived from the server
key, see ``domain.audit``). Checkpoints -- the record count and head hash, signed
with the same key -- go to an append-only anchor file in the data directory
(``audit-anchor.jsonl``, 0600, fsynced) and to syslog when ``CLOUDFILM_SYSLOG`` is
set: at a process's first append, then after ``CHECKPOINT_EVERY`` records or
``CHECKPOINT_SECONDS`` seconds (a timer catches a quiet tail), and at ``close``.
So ``verify`` finds records edited, removed, reordered, the newest ones or all of
them removed, and a chain rewritten with recomputed plain hashes.

What it cannot find: removing the records written since the last checkpoint (at most
``CHECKPOINT_EVERY`` records or ``CHECKPOINT_SECONDS`` seconds, or what a crash left
unanchored); truncating the index *and* the anchor file back to an earlier checkpoint
(the syslog copy still shows it); anything done by a person holding the server key.
Records written before the keyed chain (version 1, plain SHA-256) are verified as
such; they are protected once a keyed record follows them.

Views are aggregated: ``record_view`` writes at most one ``view`` record per
(session, study) per hour, so a viewer fetching hundreds of frames leaves one line;
``record_once`` does the same for other per-instance events (a C-STORE association).
``queue_view`` is the same without waiting for the index (issue 14: no synchronous write
on the read path): the view goes to this process's journal file before the request is
answered, and a background thread appends it to the chain within ``VIEW_FLUSH_SECONDS``
(see ``_ViewJournal``), so a killed process loses none.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Select, func, select, text
from sqlalchemy.orm import Session

from cloudfilm.domain.audit import GENESIS, KEYED, PLAIN, AuditEntry, Checkpoint, chain_hash
from cloudfilm.domain.clock import as_utc
from cloudfilm.services.audit.record import AuditRecord, Forwarder, Listener
from cloudfilm.storage.index.access_models import AuditEventRow
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.staging import ProcessClaim

log = logging.getLogger(__name__)

CHAIN_LOCK = 0x0C10DF11  # PostgreSQL advisory lock id for the audit chain
VIEW_WINDOW_SECONDS = 3600.0  # one `view` record per (session, study) per hour
VIEW_DEDUPE_MAX = 10_000  # LRU bound; an evicted key may be recorded again (errs on over-recording)
ANCHOR_FILE = "audit-anchor.jsonl"
CHECKPOINT_EVERY = 64  # records between checkpoints, at most
CHECKPOINT_SECONDS = 5.0  # and at most this long before a quiet tail is anchored
VIEW_JOURNAL_DIR = "audit-views"  # in the data directory, beside the anchor file
VIEW_FLUSH_SECONDS = 0.2  # a queued view reaches the chain within about this
VIEW_ADOPT_SECONDS = 60.0  # how often journals of dead processes are looked for
VIEW_RETRY_SECONDS = 1.0  # after a failed append (the index unreachable)
VIEW_LATE = timedelta(minutes=1)  # a journalled record appended later keeps its time in detail

# Failure records written while serving one request, so the refusal auditor of the
# authentication layer does not record a refusal twice (see ``failures_recorded``).
_request_failures: ContextVar[list[int] | None] = ContextVar("audit_request_failures",
                                                            default=None)


@contextmanager
def failures_recorded() -> Iterator[list[int]]:
    """Collect the ids of ``failure`` records appended in this context (threads started by
    ``run_in_threadpool`` inherit it), e.g. to audit a refusal once."""
    seen: list[int] = []
    token = _request_failures.set(seen)
    try:
        yield seen
    finally:
        _request_failures.reset(token)


@dataclass(frozen=True)
class ChainReport:
    records: int
    first_bad_id: int | None = None
    problem: str = ""
    head: str = ""  # the newest record's hash when intact
    checkpoints: int = 0  # anchor checkpoints checked
    note: str = ""  # what could not be checked, when intact

    @property
    def intact(self) -> bool:
        return not self.problem




class AnchorFile:
    """Checkpoints outside the index: one signed JSON line each, appended, never rewritten.

    Opened with O_APPEND (concurrent writers never overwrite each other's lines) and
    fsynced before the writer goes on; mode 0600, as it tells how busy the archive is.
    """

    def __init__(self, path: Path, key: bytes) -> None:
        self.path, self.key = path, key

    def append(self, point: Checkpoint) -> str:
        line = point.line(self.key)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, (line + "\n").encode("ascii"))
            os.fsync(fd)
        finally:
            os.close(fd)
        return line

    def read(self) -> tuple[list[Checkpoint], str]:
        """The checkpoints, or the problem with the file (a forged or damaged line)."""
        if not self.path.exists():
            return [], ""
        raw = self.path.read_text("ascii", "replace")
        lines = raw.splitlines()
        points = []
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                points.append(Checkpoint.parse(line, self.key))
            except ValueError as exc:
                if number == len(lines) and not raw.endswith("\n"):
                    continue  # a last line cut short by a crash mid-write
                return points, f"anchor file line {number}: {exc}"
        return points, ""


def _entry(row: AuditEventRow) -> AuditEntry:
    return AuditEntry(actor=row.actor, action=row.action, outcome=row.outcome,
                      actor_role=row.actor_role, on_behalf_of=row.on_behalf_of,
                      person_id=row.person_id, patient_ref=row.patient_ref,
                      study_uid=row.study_uid, source=row.source, detail=json.loads(row.detail))


@dataclass
class _CheckpointSchedule:
    """When the next checkpoint is due: at a process's first append, after ``every``
    records or ``seconds`` seconds; a timer anchors a tail that no later append will."""

    every: int = CHECKPOINT_EVERY
    seconds: float = CHECKPOINT_SECONDS
    pending: int = 0
    last: float | None = None  # monotonic time of this process's last checkpoint
    timer: threading.Timer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, count: int, now: float) -> bool:
        """Count appended records; True if a checkpoint is due now."""
        with self.lock:
            self.pending += count
            return (self.last is None or self.pending >= self.every
                    or now - self.last >= self.seconds)

    def reset(self, now: float) -> None:
        with self.lock:
            self.pending, self.last = 0, now

    def arm(self, callback: Callable[[], None]) -> None:
        with self.lock:
            if self.timer is None or not self.timer.is_alive():
                self.timer = threading.Timer(self.seconds, callback)
                self.timer.daemon = True
                self.timer.start()

    def cancel(self) -> None:
        with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None


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


class _ViewJournal:
    """Views (and QIDO searches, `AuditLog.queue`) on their way to the chain, kept in files
    so that a crash loses none.

    ``add`` appends one JSON line to this process's open journal file
    (``<data>/audit-views/<owner>.<n>.jsonl``, 0600) before the request is answered; the
    kernel keeps it even if the process is killed the next instant. ``flush`` seals the
    open file, appends the views of every sealed file to the chain in one transaction per
    file, then removes it. Files of dead processes (their ``flock`` is gone, as for
    staged blobs) are adopted by renaming them to the adopter's name, so two survivors
    never both take one. A crash after the append but before the removal records those
    views twice, never none; a power cut can lose the last ``VIEW_FLUSH_SECONDS``.
    """

    def __init__(self, log: AuditLog, directory: Path) -> None:
        self.log, self.directory = log, directory
        self.claim = ProcessClaim(directory / "locks")
        self._lock = threading.Lock()  # the open file
        self._flushing = threading.Lock()  # one flush at a time
        self._fd: int | None = None
        self._serials = itertools.count(1)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, entry: AuditEntry) -> None:
        line = json.dumps({"at": datetime.now(UTC).isoformat(), "entry": asdict(entry)})
        with self._lock:
            if self._fd is None:
                self._fd = self._open()
            os.write(self._fd, (line + "\n").encode("utf-8"))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="audit-views",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def _open(self) -> int:
        self.directory.mkdir(mode=0o700, exist_ok=True)
        path = self.directory / f"{self.claim.owner}.{next(self._serials)}.jsonl"
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)

    def _run(self) -> None:
        adopted = -VIEW_ADOPT_SECONDS  # at start: whatever a crashed process left
        while not self._stopping.is_set():
            wait = VIEW_ADOPT_SECONDS
            try:
                if time.monotonic() - adopted >= VIEW_ADOPT_SECONDS:
                    adopted = time.monotonic()
                    self.flush(adopt=True)
                else:
                    self.flush()
            except Exception:  # the files stay; try again soon
                log.exception("audit: queued views not yet appended; will retry")
                wait = VIEW_RETRY_SECONDS
            if self._wake.wait(wait):
                self._wake.clear()
                self._stopping.wait(VIEW_FLUSH_SECONDS)  # gather a batch

    def flush(self, *, adopt: bool = False) -> int:
        """Append every sealed view to the chain (``adopt``: dead processes' too); returns
        how many were appended."""
        with self._flushing:
            with self._lock:
                if self._fd is not None:
                    os.close(self._fd)
                    self._fd = None
            appended = 0
            for path in self._sealed(adopt):
                appended += self._append_file(path)
            return appended

    def _sealed(self, adopt: bool) -> list[Path]:
        if not self.directory.is_dir():
            return []
        mine = f"{self.claim.owner}."
        found = []
        for path in sorted(self.directory.glob("*.jsonl")):
            if path.name.startswith(mine):
                found.append(path)
            elif adopt and not self.claim.is_live(path.name.partition(".")[0]):
                taken = self.directory / f"{mine}{next(self._serials)}.jsonl"
                try:
                    os.rename(path, taken)
                except FileNotFoundError:
                    continue  # another process adopted it first
                found.append(taken)
        return found

    def _append_file(self, path: Path) -> int:
        entries = _journal_entries(path)
        if entries:
            self.log.record_many(entries)
        path.unlink()
        return len(entries)

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()
        self.claim.release()


def _journal_entries(path: Path) -> list[AuditEntry]:
    """The entries of a journal file; a last line cut short by a crash is left out."""
    entries = []
    now = datetime.now(UTC)
    for number, line in enumerate(path.read_bytes().splitlines(), 1):
        try:
            item = json.loads(line)
            entry = AuditEntry(**item["entry"])
            at = datetime.fromisoformat(item["at"])
        except (ValueError, KeyError, TypeError):
            log.warning("audit: %s line %d is not a whole view record; skipped", path.name, number)
            continue
        if now - at > VIEW_LATE:  # adopted after a crash: say when it happened
            entry = replace(entry, detail=entry.detail | {"occurred_at": at.isoformat()})
        entries.append(entry)
    return entries


class AuditLog:
    def __init__(self, index: Index, *, key: bytes | None = None, anchor_dir: Path | None = None,
                 forwarder: Forwarder | None = None) -> None:
        """``key``: the audit key (``domain.audit.audit_key``); ``anchor_dir``: where the anchor
        file lives; ``forwarder``: where each record also goes (the syslog forwarder the
        archive builds from ``CLOUDFILM_SYSLOG``). Without a key the log can only write and
        check plain (version 1) hashes: the archive always passes one; a keyless log is for
        tests and tools reading the index.
        """
        self.index = index
        self.key = key
        self.anchor = AnchorFile(anchor_dir / ANCHOR_FILE, key) if key and anchor_dir else None
        self.on_record: list[Listener] = []
        self._views = _ViewDedupe()
        self._anchoring = _CheckpointSchedule()
        self._journal = _ViewJournal(self, anchor_dir / VIEW_JOURNAL_DIR) if anchor_dir else None
        self.forwarder = forwarder
        if self.forwarder is not None:
            self.on_record.append(self.forwarder)

    def anchor_pending(self) -> None:
        """Checkpoint the records not yet anchored (at a clean shutdown)."""
        self._anchoring.cancel()
        if self._anchoring.pending:
            try:
                self.checkpoint()
            except Exception:  # shutting down must go on (e.g. the database is already gone)
                log.exception("audit: the closing checkpoint could not be written")

    def close(self) -> None:
        """Append queued views, anchor what is not yet anchored, then flush and stop the
        syslog forwarder."""
        if self._journal is not None:
            try:
                self._journal.close()
            except Exception:  # they stay in the journal; the next start appends them
                log.exception("audit: queued views could not be appended at close")
        self.anchor_pending()
        if self.forwarder is not None:
            self.forwarder.close()

    def record(self, entry: AuditEntry) -> int:
        """Append one record; returns its id."""
        return self.record_many([entry])[0]

    def record_many(self, entries: list[AuditEntry]) -> list[int]:
        """Append several records in one transaction (one commit for a batch upload)."""
        if not entries:
            return []
        at = datetime.now(UTC).replace(microsecond=0)
        with self.index.write_session() as session:
            self._lock_chain(session)
            last = session.scalars(select(AuditEventRow.hash).order_by(AuditEventRow.id.desc())
                                   .limit(1)).first()
            rows = self._append(session, entries, at, last or GENESIS)
            session.commit()
            ids = [row.id for row in rows]
        failures = _request_failures.get()
        if failures is not None:
            failures.extend(i for i, e in zip(ids, entries, strict=True) if e.outcome == "failure")
        for record_id, entry in zip(ids, entries, strict=True):
            self._notify(AuditRecord(record_id, at, entry))
        self._after_append(len(ids))
        return ids

    def _lock_chain(self, session: Session) -> None:
        if not self.index.is_sqlite:
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": CHAIN_LOCK})

    def _append(self, session: Session, entries: list[AuditEntry], at: datetime,
                prev: str) -> list[AuditEventRow]:
        rows = []
        version = KEYED if self.key else PLAIN
        for entry in entries:
            row = AuditEventRow(
                at=at, actor=entry.actor, actor_role=entry.actor_role,
                on_behalf_of=entry.on_behalf_of, action=entry.action, outcome=entry.outcome,
                person_id=entry.person_id, patient_ref=entry.patient_ref,
                study_uid=entry.study_uid, source=entry.source,
                detail=json.dumps(entry.detail, sort_keys=True), prev_hash=prev,
                hash=chain_hash(entry, at, prev, key=self.key), chain_version=version)
            session.add(row)
            session.flush()
            rows.append(row)
            prev = row.hash
        return rows

    # --- checkpoints --------------------------------------------------------------------

    def _after_append(self, count: int) -> None:
        """Checkpoint now when due, else make sure a timer anchors the tail soon."""
        if self.anchor is None:
            return
        if self._anchoring.add(count, time.monotonic()):
            try:
                self.checkpoint()
            except Exception:  # the record stands; the next checkpoint covers it
                log.exception("audit: checkpoint failed; records are not yet anchored")
        else:
            self._anchoring.arm(self._timer_checkpoint)

    def _timer_checkpoint(self) -> None:
        try:
            self.checkpoint()
        except Exception:
            log.exception("audit: timed checkpoint failed; records are not yet anchored")

    def checkpoint(self) -> Checkpoint | None:
        """Write the current count and head to the anchor file (and syslog); None if there is
        no anchor or no record. Taken under the chain lock, so it describes a real state."""
        if self.anchor is None:
            return None
        with self.index.write_session() as session:
            self._lock_chain(session)
            head = session.execute(select(AuditEventRow.id, AuditEventRow.hash)
                                   .order_by(AuditEventRow.id.desc()).limit(1)).first()
            count = session.scalar(select(func.count()).select_from(AuditEventRow)) or 0
            self._anchoring.reset(time.monotonic())
            if head is None:
                return None
            point = Checkpoint(count, head.id, head.hash,
                               datetime.now(UTC).replace(microsecond=0).isoformat())
            line = self.anchor.append(point)
            session.commit()
        if self.forwarder is not None:
            self.forwarder.send_checkpoint(line)
        return point

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

    def queue_view(self, entry: AuditEntry, session_key: str) -> None:
        """``record_once`` for a ``view``, without waiting for the index: the entry is in
        this process's journal file when this returns, and in the chain within
        ``VIEW_FLUSH_SECONDS``. Costs a dictionary lookup when the view was already
        recorded within the hour, else one small file append. A log without a data
        directory (tools, tests) records at once."""
        key = self._claim_once(entry, session_key, None)
        if key is None:
            return
        try:
            self.queue(entry)
        except Exception:
            self._views.forget(key)
            raise

    def queue(self, entry: AuditEntry) -> None:
        """Append ``entry`` without waiting for the index: a successful read that is recorded
        every time (a QIDO search). It goes through the same journal as views, so it is in a
        file when this returns and in the chain within ``VIEW_FLUSH_SECONDS``; a log without
        a data directory records at once."""
        if self._journal is None:
            self.record(entry)
            return
        self._journal.add(entry)

    def flush_views(self, *, adopt: bool = False) -> int:
        """Append the views queued by this process now (``adopt``: and those a crashed
        process left in the same data directory); returns how many."""
        return self._journal.flush(adopt=adopt) if self._journal is not None else 0

    def record_once(self, entry: AuditEntry, session_key: str, *,
                    now: float | None = None) -> int | None:
        """Record ``entry`` unless the same action on the same study was recorded for this
        session (or association) within the hour; returns the new id, or None.

        Deduplication is in memory, per process (a bounded LRU): a restart or an eviction
        may record one more, never one fewer.
        """
        key = self._claim_once(entry, session_key, now)
        if key is None:
            return None
        try:
            return self.record(entry)
        except Exception:
            self._views.forget(key)
            raise

    def _claim_once(self, entry: AuditEntry, session_key: str,
                    now: float | None) -> tuple[str, str] | None:
        """The dedupe key if ``entry`` is due for recording (and now claimed), else None."""
        key = (f"{entry.action}:{session_key}", entry.study_uid)
        return key if self._views.claim(key, time.monotonic() if now is None else now) else None

    def query(self, *, since: datetime | None = None, until: datetime | None = None,
              person_ids: Collection[int] | None = None, limit: int = 1000,
              newest_first: bool = False) -> list[AuditRecord]:
        """Records with ``since <= at < until`` about any of ``person_ids`` (None: everyone),
        views this process queued included."""
        self.flush_views()
        stmt: Select[AuditEventRow] = select(AuditEventRow)
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
        """Walk the chain in id order; report the first record that does not fit, a
        checkpoint it contradicts, or records missing after the newest checkpoint."""
        self.flush_views()
        checkpoints, problem = self.anchor.read() if self.anchor else ([], "")
        if problem:
            return ChainReport(0, problem=problem)
        walk = _ChainWalk(self.key, checkpoints)
        with self.index.session() as session:
            rows = session.scalars(select(AuditEventRow).order_by(AuditEventRow.id))
            for row in rows.yield_per(1000):
                if (bad := walk.step(row)) is not None:
                    return bad
        return walk.finish(anchored=self.anchor is not None)


@dataclass
class _ChainWalk:
    """The state of ``verify``'s walk: the previous hash, the position, the checkpoints."""

    key: bytes | None
    checkpoints: list[Checkpoint]
    prev: str = GENESIS
    count: int = 0
    keyed_seen: bool = False
    unchecked: int = 0  # keyed records a keyless log could not check
    at_position: dict[int, list[Checkpoint]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for point in self.checkpoints:
            self.at_position.setdefault(point.count, []).append(point)

    def step(self, row: AuditEventRow) -> ChainReport | None:
        self.count += 1
        if row.prev_hash != self.prev:
            return self._bad(row, "previous-hash link broken (a record was removed or "
                                  "reordered before it)")
        if row.chain_version == PLAIN and self.keyed_seen:
            return self._bad(row, "an unkeyed record after keyed ones (the chain was rewritten "
                                  "without the key)")
        self.keyed_seen |= row.chain_version == KEYED
        if row.chain_version == KEYED and self.key is None:
            self.unchecked += 1
        else:
            key = self.key if row.chain_version == KEYED else None
            try:
                intact = chain_hash(_entry(row), as_utc(row.at), row.prev_hash, key=key) == row.hash
            except (ValueError, TypeError) as exc:  # e.g. detail no longer JSON, unknown action
                return self._bad(row, f"record cannot be read ({exc}) (edited)")
            if not intact:
                return self._bad(row, "record content does not match its hash (edited)")
        for point in self.at_position.get(self.count, []):
            if (point.head_id, point.head) != (row.id, row.hash):
                return self._bad(row, f"record does not match the checkpoint of {point.at} "
                                      "(the chain was rewritten)")
        self.prev = row.hash
        return None

    def _bad(self, row: AuditEventRow, problem: str) -> ChainReport:
        return ChainReport(self.count, row.id, problem, checkpoints=len(self.checkpoints))

    def finish(self, *, anchored: bool) -> ChainReport:
        newest = max(self.checkpoints, key=lambda p: p.count, default=None)
        if newest is not None and newest.count > self.count:
            return ChainReport(self.count, problem=(
                f"the checkpoint of {newest.at} counted {newest.count} records, only "
                f"{self.count} remain (the newest records were removed)"),
                checkpoints=len(self.checkpoints))
        if anchored and self.keyed_seen and newest is None:
            return ChainReport(self.count, problem="keyed records but no checkpoint: the anchor "
                                                   "file is missing or was emptied")
        return ChainReport(self.count, head=self.prev if self.count else "",
                           checkpoints=len(self.checkpoints), note=self._note(anchored))

    def _note(self, anchored: bool) -> str:
        if self.unchecked:
            return f"{self.unchecked} keyed records not checked (no key)"
        if not anchored:
            return "no anchor file checked: removing the newest records would not show"
        if self.count and not self.keyed_seen:
            return "only unkeyed records (before the keyed chain); not yet anchored"
        return ""
