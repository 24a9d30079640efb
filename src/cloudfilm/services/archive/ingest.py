"""Ingest: the one path by which instances enter the archive (STOW, import, DIMSE).

Durability protocol, per batch (see storage/blobs.py):
stage every file (fsync) → parse → place (an object store uploads here and confirms)
→ one index transaction (a SAVEPOINT per instance, so a bad one fails alone) → commit
→ publish blobs (file system: rename + fsync dir) → only then report success. No row
ever names bytes that exist nowhere; `recover()` finishes or discards whatever a crash
left in staging, so the index and the blobs never disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import pydicom
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain.instance_facts import InstanceFacts, InvalidInstance
from cloudfilm.services.archive.part10 import parse_instance
from cloudfilm.storage.blobs import BlobStore, BlobStoreError, StagedBlob, stored_sha256
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow
from cloudfilm.storage.index.writer import (
    HOSPITAL,
    IndexConflict,
    ParentCache,
    WriteRights,
    find_instance,
    instance_record,
    may_add_to,
    write_instance,
)

log = logging.getLogger(__name__)

STORED, DUPLICATE, FAILED = "stored", "duplicate", "failed"
CONFLICT = 0xA900  # PS3.18 Table 10.5.3-1: the data set does not match what is stored
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700  # PS3.18 Table 10.5.3-1 and PS3.4 B.2.3: the blob store did not confirm
NOT_AUTHORIZED = 0x0124  # PS3.7 Annex C.4: Refused, Not Authorized
# Issue 11: one reason for every refusal that would tell an uploader whether another
# patient's record, study, series or instance is stored here.
NOT_ADDABLE_HERE = "this hospital record cannot be added here; ask the hospital for its claim code"


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one submitted object; failures carry a reason and a STOW code."""

    status: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    reason: str = ""
    code: int | None = None

    @property
    def ok(self) -> bool:
        return self.status != FAILED


@dataclass
class PreparedInstance:
    """A staged blob after parsing: facts to index, or the reason it failed."""

    staged: StagedBlob
    facts: InstanceFacts | None = None
    outcome: IngestOutcome | None = None
    publish: bool = False
    replaces: str = ""  # the key of the row this one overwrites, when it differs
    in_doubt: bool = False  # its row may or may not be committed: left staged for recover()


def _failure(facts: InstanceFacts | None, reason: str, code: int) -> IngestOutcome:
    if facts is None:
        return IngestOutcome(FAILED, reason=reason, code=code)
    return IngestOutcome(FAILED, facts.sop_instance_uid, facts.sop_class_uid, facts.study_uid,
                         facts.series_uid, reason, code)


def not_addable_here(facts: InstanceFacts) -> IngestOutcome:
    """The uniform refusal (0124H) of an instance that would join what is not the uploader's."""
    return _failure(facts, NOT_ADDABLE_HERE, NOT_AUTHORIZED)


def _success(status: str, facts: InstanceFacts) -> IngestOutcome:
    return IngestOutcome(status, facts.sop_instance_uid, facts.sop_class_uid, facts.study_uid,
                         facts.series_uid)


class Admission(Protocol):
    """Screens a batch before indexing and settles it after (services/access/admission.py).

    ``rights`` (asked after ``screen``) says what the batch may do to records already
    indexed; without an admission a batch comes from a hospital source.
    """

    def screen(self, pending: list[PreparedInstance]) -> None: ...

    def rights(self) -> WriteRights: ...

    def settle(self, pending: list[PreparedInstance]) -> None: ...


class DerivedObjectAdmission:
    """Objects the archive writes itself (attached documents, nodule SRs).

    Their patient attributes are a subset copied from the stored record, so they may join
    any record the caller was already allowed to write to, but never rewrite its
    demographics with that subset.
    """

    def screen(self, pending: list[PreparedInstance]) -> None:
        return None

    def rights(self) -> WriteRights:
        return WriteRights(changes_demographics=False, source="derived")

    def settle(self, pending: list[PreparedInstance]) -> None:
        return None


DERIVED = DerivedObjectAdmission()


# Uploads of one batch to an object store run side by side (placing on a file system is
# only naming a key, so the pool is never used there).
_PLACING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-place")


class IngestService:
    """Stores instances durably and indexes them; safe to call from many threads."""

    def __init__(self, index: Index, blobs: BlobStore, *, overwrite: bool = False) -> None:
        self.index = index
        self.blobs = blobs
        self.overwrite = overwrite

    def ingest_files(self, paths: Sequence[Path]) -> list[IngestOutcome]:
        """Copy files into staging and ingest them as one batch."""
        staged: list[StagedBlob] = []
        for path in paths:
            staged.append(self.blobs.stage_file(path))
        return self.ingest_staged(staged)

    def ingest_staged(self, staged: Sequence[StagedBlob], expected_study_uid: str | None = None,
                      admission: Admission | None = None) -> list[IngestOutcome]:
        """Parse, index and publish staged blobs; one outcome per blob, in order."""
        return self.index_and_publish([self.prepare(item, expected_study_uid) for item in staged],
                                      admission)

    def prepare(self, staged: StagedBlob, expected_study_uid: str | None = None) -> PreparedInstance:
        """Parse one staged blob (thread-safe: STOW prepares parts while the body arrives)."""
        item = PreparedInstance(staged)
        try:
            item.facts = parse_instance(staged.path)
        except InvalidInstance as exc:
            item.outcome = _failure(None, str(exc), exc.code)
            return item
        if expected_study_uid and item.facts.study_uid != expected_study_uid:
            item.outcome = _failure(
                item.facts, f"StudyInstanceUID {item.facts.study_uid} does not match the "
                f"study in the request URL ({expected_study_uid})", CONFLICT)
        return item

    def index_and_publish(self, pending: list[PreparedInstance],
                          admission: Admission | None = None) -> list[IngestOutcome]:
        """One index transaction for the batch, then publish; only then may the caller answer.

        ``admission`` screens the parsed instances first (a refused one fails alone and
        its staged file is discarded) and settles after publishing (links, audit).
        """
        if admission is not None:
            admission.screen(pending)
        try:
            self._place(pending)
            self._index(pending, admission.rights() if admission is not None else HOSPITAL)
        finally:
            for item in pending:
                if item.in_doubt:
                    continue
                if item.publish and item.facts is not None:
                    self.blobs.commit(item.staged, item.staged.key)
                else:
                    self.blobs.discard(item.staged)
        outcomes = [item.outcome or _failure(item.facts, "not processed", PROCESSING_FAILURE)
                    for item in pending]
        if admission is not None:
            admission.settle(pending)
        return outcomes

    def _place(self, pending: list[PreparedInstance]) -> None:
        """Give each blob its key before any row names it; an object store uploads now, and
        an upload it does not confirm fails that instance alone."""
        todo = [p for p in pending if p.outcome is None and p.facts is not None]
        if len(todo) == 1:
            self._place_one(todo[0])
            return
        placing = [_PLACING.submit(self._place_one, item) for item in todo]
        wait(placing)  # all of them: nothing may still be uploading while the batch is discarded
        for future in placing:
            future.result()

    def _place_one(self, item: PreparedInstance) -> None:
        assert item.facts is not None
        try:
            item.staged = self.blobs.place(item.staged, item.facts.sop_instance_uid)
        except BlobStoreError as exc:  # the details name the store: for the log, not the sender
            log.error("blob store did not confirm %s: %s", item.facts.sop_instance_uid, exc)
            item.outcome = _failure(item.facts, "not stored: the blob store did not confirm "
                                    "the write; send it again", OUT_OF_RESOURCES)

    def _index(self, pending: list[PreparedInstance], rights: WriteRights) -> None:
        todo = [p for p in pending if p.outcome is None]
        if not todo:
            return
        committed = False
        try:
            with self.index.write_session() as session:
                cache = ParentCache()
                for item in todo:
                    self._index_one(session, item, cache, rights)
                replaced = [p.replaces for p in todo if p.publish and p.replaces]
                self.blobs.move_to_trash(replaced)  # recovery restores them if the commit fails
                session.commit()
                committed = True
        except BaseException:
            if not committed:
                self._settle([p for p in todo if p.publish])
            raise
        if replaced:
            self.blobs.delete(replaced)

    def _settle(self, written: list[PreparedInstance]) -> None:
        """A commit that raised may still have happened: ask the index, as `recover` would.
        When the index cannot answer either, the blobs stay staged for the next start."""
        try:
            with self.index.session() as session:
                for item in written:
                    assert item.facts is not None
                    row = find_instance(session, item.facts.sop_instance_uid)
                    item.publish = row is not None and row.blob_key == item.staged.key \
                        and row.sha256 == item.staged.sha256
        except Exception:
            log.exception("cannot tell whether %d instances were indexed", len(written))
            for item in written:
                item.in_doubt = True

    def _index_one(self, session: Session, item: PreparedInstance, cache: ParentCache,
                   rights: WriteRights) -> None:
        facts = item.facts
        assert facts is not None
        existing = find_instance(session, facts.sop_instance_uid)
        if existing is not None and rights.screened and not may_add_to(
                rights, cache, instance_record(session, facts.sop_instance_uid)):
            item.outcome = not_addable_here(facts)  # not even "duplicate": that tells
            return
        if existing is not None and existing.sha256 == item.staged.sha256:
            item.outcome = _success(DUPLICATE, facts)
            return
        if existing is not None and not self.overwrite:
            item.outcome = _failure(facts, "an instance with this SOP Instance UID is already "
                                    "stored with different content", CONFLICT)
            return
        savepoint = session.begin_nested()
        try:
            write_instance(session, facts, blob_key=item.staged.key,
                           size=item.staged.size, sha256=item.staged.sha256, cache=cache,
                           replace=existing, rights=rights)
            savepoint.commit()
        except (IndexConflict, IntegrityError) as exc:
            savepoint.rollback()
            cache.forget(facts)
            item.outcome = _conflict(facts, exc, rights)
            return
        item.outcome = _success(STORED, facts)
        item.publish = True
        if existing is not None and existing.blob_key != item.staged.key:
            item.replaces = existing.blob_key

    # -- crash recovery ----------------------------------------------------
    def recover(self) -> dict[str, int]:
        """Finish what a crash interrupted: publish indexed staged files, drop the rest."""
        report = {"published": 0, "discarded": 0, "restored": 0, "purged": 0}
        with self.index.session() as session:
            for path in self.blobs.staged():
                staged, row = self._row_for_staged(session, path)
                if row is None:  # no row names this write: drop it, and any upload of it
                    self.blobs.discard(staged)
                    report["discarded"] += 1
                elif self._blob_matches(row):  # the row's bytes are published already
                    self.blobs.discard(replace(staged, key=""))
                    report["discarded"] += 1
                else:
                    self.blobs.commit(replace(staged, key=""), row.blob_key)
                    report["published"] += 1
            for trashed, key in self.blobs.trashed():
                if session.query(InstanceRow.id).filter(InstanceRow.blob_key == key).first():
                    self.blobs.restore(trashed, key)
                    report["restored"] += 1
                else:
                    self.blobs.purge(trashed)
                    report["purged"] += 1
        if any(report.values()):
            log.warning("recovered interrupted writes: %s", report)
        return report

    def _row_for_staged(self, session: Session,
                        path: Path) -> tuple[StagedBlob, InstanceRow | None]:
        """The staged file with the key its write had (or would have had), and the row
        that names exactly that write: same key, same SHA-256."""
        staged = self.blobs.identify(path)
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
            sop_uid = str(ds.SOPInstanceUID)
        except Exception:  # noqa: BLE001 - an incomplete staged file was never indexed
            return staged, None
        staged = replace(staged, key=self.blobs.key_for(staged, sop_uid))
        row = find_instance(session, sop_uid)
        if row is None or row.sha256 != staged.sha256 or row.blob_key != staged.key:
            return staged, None
        return staged, row

    def _blob_matches(self, row: InstanceRow) -> bool:
        key = row.blob_key
        return self.blobs.exists(key) and stored_sha256(self.blobs, key) == row.sha256


def _conflict(facts: InstanceFacts, exc: Exception, rights: WriteRights) -> IngestOutcome:
    """A hospital source is told which UID clashes; anyone else gets the uniform refusal."""
    if isinstance(exc, IndexConflict):
        return not_addable_here(facts) if rights.screened \
            else _failure(facts, str(exc), CONFLICT)
    return _failure(facts, "concurrent conflicting write", CONFLICT)

