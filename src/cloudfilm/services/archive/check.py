"""Consistency check: every index row has its blob with the right size and SHA-256, and
every blob has its row. It reports; the one repair it makes, when asked, is to remove
orphan blobs older than a given age.

Why that one: a node killed between an upload and its index commit leaves an object no
row names, and the node's own recovery removes it from the staged file in its data
directory. When that directory is lost with the node, nothing else names the object.
No upload is in flight for hours (an instance is indexed seconds after its upload), so
an orphan older than that can be removed safely by any node.

The same check runs on any blob store: the store lists its keys with their sizes (a
directory walk, or ListObjectsV2 on S3), and hashing reads each blob as a stream.
``hashes=False`` compares sizes only, for an object store too large to read back whole.
Writes that land while the check runs are not reported: a row without a listed blob is
asked about again, and so is a blob without a row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from cloudfilm.storage.blobs import BlobStore, stored_sha256
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow
from cloudfilm.storage.index.research_models import ResearchExportRow


@dataclass
class CheckReport:
    instances: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # orphan blobs removed on request

    @property
    def clean(self) -> bool:
        return not self.problems


def _size(blobs: BlobStore, listed: dict[str, int], key: str) -> int | None:
    """The listed size, or the store's answer now for a blob written after the listing."""
    if key in listed:
        return listed[key]
    try:
        return blobs.size(key)
    except FileNotFoundError:
        return None


def _old_enough(blobs: BlobStore, key: str, age: timedelta | None) -> bool:
    if age is None:
        return False
    try:
        return blobs.written_at(key) <= datetime.now(UTC) - age
    except FileNotFoundError:
        return False


def check_archive(index: Index, blobs: BlobStore, *, hashes: bool = True,
                  remove_orphans_older_than: timedelta | None = None) -> CheckReport:
    """Compare index and store; with ``remove_orphans_older_than``, orphan blobs written
    longer ago than that are deleted (and listed in ``removed``), not reported."""
    report = CheckReport()
    listed = dict(blobs.listing())
    report.blobs = len(listed)
    indexed: set[str] = set()
    with index.session() as session:
        rows = session.execute(select(InstanceRow.sop_uid, InstanceRow.blob_key, InstanceRow.size,
                                      InstanceRow.sha256)).yield_per(1000)
        for sop_uid, key, size, sha in rows:
            report.instances += 1
            indexed.add(key)
            found = _size(blobs, listed, key)
            if found is None:
                report.problems.append(f"missing blob: instance {sop_uid} (blob {key})")
            elif found != size:
                report.problems.append(f"size mismatch: instance {sop_uid} (blob {key})")
            elif hashes and stored_sha256(blobs, key) != sha:
                report.problems.append(f"SHA-256 mismatch: instance {sop_uid} (blob {key})")
    with index.session() as session:  # a new snapshot: rows committed while the check ran
        for key in sorted(set(listed) - indexed):
            named = select(InstanceRow.id).where(InstanceRow.blob_key == key)
            if session.execute(named).first():
                continue
            export = select(ResearchExportRow.id).where(ResearchExportRow.blob_key == key)
            if session.execute(export).first():  # a research export's zip (issue 15)
                continue
            if _old_enough(blobs, key, remove_orphans_older_than):
                blobs.delete([key])
                report.removed.append(key)
            else:
                report.problems.append(f"orphan blob: {key} has no index row")
    for path in blobs.staged():
        report.problems.append(f"interrupted ingest awaiting recovery: {path.name}")
    for _, key in blobs.trashed():
        report.problems.append(f"interrupted delete awaiting recovery: {key}")
    return report
