"""Consistency check: every index row has its blob with the right SHA-256 and size,
and every blob has its row. Read-only; it reports, it never repairs."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from sqlalchemy import select

from cloudfilm.storage.blobs import FileSystemBlobStore
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow


@dataclass
class CheckReport:
    instances: int = 0
    blobs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def _sha256(blobs: FileSystemBlobStore, key: str) -> str:
    digest = hashlib.sha256()
    for chunk in blobs.iter_bytes(key):
        digest.update(chunk)
    return digest.hexdigest()


def check_archive(index: Index, blobs: FileSystemBlobStore) -> CheckReport:
    report = CheckReport()
    indexed: set[str] = set()
    with index.session() as session:
        rows = session.execute(select(InstanceRow.sop_uid, InstanceRow.blob_key, InstanceRow.size,
                                      InstanceRow.sha256)).yield_per(1000)
        for sop_uid, key, size, sha in rows:
            report.instances += 1
            indexed.add(key)
            if not blobs.exists(key):
                report.problems.append(f"missing blob: instance {sop_uid} (blob {key})")
            elif blobs.path(key).stat().st_size != size:
                report.problems.append(f"size mismatch: instance {sop_uid} (blob {key})")
            elif _sha256(blobs, key) != sha:
                report.problems.append(f"SHA-256 mismatch: instance {sop_uid} (blob {key})")
    for key in blobs.keys():
        report.blobs += 1
        if key not in indexed:
            report.problems.append(f"orphan blob: {key} has no index row")
    for path in blobs.staged():
        report.problems.append(f"interrupted ingest awaiting recovery: {path.name}")
    for path, key in blobs.trashed():
        report.problems.append(f"interrupted delete awaiting recovery: {key}")
    return report
