"""Ingest: the one path by which instances enter the archive (STOW, import, DIMSE).

Durability protocol (see storage/blobs.py): every staged file is fsynced as it is
received (STOW seals and parses parts while the body still arrives); each request's
batch is then parsed, screened and placed (an object store uploads here and confirms)
and handed to the group commit (services/archive/group_commit.py), which covers the
batches of every concurrent request, import and association at once:

1. one fsync of ``incoming/``: the names of all the group's staged files survive a crash;
2. one index transaction (services/archive/group_index.py), committed;
3. publish each written blob (file system: rename to its key).

Only then does `index_and_publish` return, so only then may its caller report success.
No row ever names bytes that exist nowhere, and nothing acknowledged is lost: a crash
before a rename is durable leaves the file in staging, and `recover()`, at every start,
finishes the renames of committed rows and discards what no row names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import pydicom
from sqlalchemy.orm import Session

from cloudfilm.domain.instance_facts import InvalidInstance
from cloudfilm.services.archive.group_commit import GroupCommit
from cloudfilm.services.archive.group_index import Batch, SeriesHints, write_batches
from cloudfilm.services.archive.outcomes import (
    CONFLICT,
    DUPLICATE,
    FAILED,
    NOT_ADDABLE_HERE,
    NOT_AUTHORIZED,
    OUT_OF_RESOURCES,
    PROCESSING_FAILURE,
    STORED,
    IngestOutcome,
    PreparedInstance,
    failure,
    not_addable_here,
)
from cloudfilm.services.archive.part10 import parse_instance
from cloudfilm.storage.blobs import BlobStore, BlobStoreError, StagedBlob, stored_sha256
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow
from cloudfilm.storage.index.writer import HOSPITAL, WriteRights, find_instance
from cloudfilm.storage.staging import durability_event

__all__ = [  # the outcome vocabulary is re-exported: callers import it from here
    "CONFLICT", "DERIVED", "DUPLICATE", "FAILED", "NOT_ADDABLE_HERE", "NOT_AUTHORIZED",
    "OUT_OF_RESOURCES", "PROCESSING_FAILURE", "STORED", "Admission", "DerivedObjectAdmission",
    "IngestOutcome", "IngestService", "PreparedInstance", "not_addable_here",
]

log = logging.getLogger(__name__)


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
# The staging fsync of a group commit, while its leader runs the index statements.
_SYNCING = ThreadPoolExecutor(max_workers=2, thread_name_prefix="staging-sync")
_PUBLISHING = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-publish")


class IngestService:
    """Stores instances durably and indexes them; safe to call from many threads."""

    def __init__(self, index: Index, blobs: BlobStore, *, overwrite: bool = False) -> None:
        self.index = index
        self.blobs = blobs
        self.overwrite = overwrite
        self._group: GroupCommit[Batch] = GroupCommit(self._commit_group)
        self._hints = SeriesHints()

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
            item.outcome = failure(None, str(exc), exc.code)
            return item
        if expected_study_uid and item.facts.study_uid != expected_study_uid:
            item.outcome = failure(
                item.facts, f"StudyInstanceUID {item.facts.study_uid} does not match the "
                f"study in the request URL ({expected_study_uid})", CONFLICT)
        return item

    def index_and_publish(self, pending: list[PreparedInstance],
                          admission: Admission | None = None) -> list[IngestOutcome]:
        """Index and publish in the next group commit; only then may the caller answer.

        ``admission`` screens the parsed instances first (a refused one fails alone and
        its staged file is discarded) and settles after publishing (links, audit).
        """
        if admission is not None:
            admission.screen(pending)
        try:
            self._place(pending)
            if any(item.outcome is None for item in pending):
                rights = admission.rights() if admission is not None else HOSPITAL
                self._group.submit(Batch(pending, rights))
        finally:  # what the group published is renamed already; drop what it did not index
            for item in pending:
                if not item.publish and not item.in_doubt:
                    self.blobs.discard(item.staged)
        outcomes = [item.outcome or failure(item.facts, "not processed", PROCESSING_FAILURE)
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
            item.outcome = failure(item.facts, "not stored: the blob store did not confirm "
                                   "the write; send it again", OUT_OF_RESOURCES)

    def _commit_group(self, batches: list[Batch]) -> None:
        """The group commit: one fsync of ``incoming/`` (beside the index statements; the
        transaction commits only once it is done), one transaction, then publish."""
        replaced: list[str] = []
        syncing: list[Future[object]] = [_SYNCING.submit(self.blobs.sync_staging)]
        syncing += [f for b in batches for p in b.pending for f in p.syncing]

        def staging_durable() -> None:
            for future in syncing:
                future.result()

        try:
            replaced = self._index(batches, staging_durable)
        finally:
            wait(syncing)
            self._publish([p for b in batches for p in b.pending if p.publish and not p.in_doubt])
        if replaced:
            self.blobs.delete(replaced)

    def _publish(self, written: list[PreparedInstance]) -> None:
        """Renames (each a journal update that may wait on a commit) run side by side; a
        crash before they are all done leaves the rest for recover()."""
        if len(written) <= 2:
            for item in written:
                self.blobs.commit(item.staged, item.staged.key)
            return
        publishing = [_PUBLISHING.submit(self.blobs.commit, item.staged, item.staged.key)
                      for item in written]
        wait(publishing)
        for future in publishing:
            future.result()

    def _index(self, batches: list[Batch], staging_durable: Callable[[], None]) -> list[str]:
        """One transaction for every batch of the group, committed once ``staging_durable``
        returns; returns the keys it replaced."""
        todo = [(b.rights, [p for p in b.pending if p.outcome is None]) for b in batches]
        committed = False
        try:
            with self.index.write_session() as session:
                write_batches(session, batches, overwrite=self.overwrite, hints=self._hints)
                replaced = [p.replaces for _, items in todo for p in items
                            if p.publish and p.replaces]
                if replaced:
                    self.blobs.move_to_trash(replaced)  # recovery restores them if the commit fails
                staging_durable()  # no row may name a staged file a crash could still lose
                session.commit()
                committed = True
        except BaseException:
            if not committed:
                self._settle([p for _, items in todo for p in items if p.publish])
            raise
        durability_event("commit", *(p.facts.sop_instance_uid for _, items in todo
                                     for p in items if p.publish and p.facts is not None))
        return replaced

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
