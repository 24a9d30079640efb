"""Blob storage: the received Part-10 bytes, stored unchanged, behind one interface.

Callers get streams, bytes and byte ranges, never a path: the same code runs on the
local file system (`FileSystemBlobStore`, the default) and on any S3-compatible object
store (storage/s3.py). `open_blob_store` picks one from ``CLOUDFILM_BLOB_URL``.

The ingest protocol is *stage → place → index → commit* (services/archive/ingest.py,
services/archive/group_commit.py):

1. Bytes go into local staging (storage/staging.py), hashed as they arrive, and are
   fsynced; `sync_staging` then fsyncs ``incoming/`` once for a whole group of them, so
   their names survive a crash too.
2. `place` chooses the key the index row will name. The file system only names it; an
   object store uploads the bytes there now and returns once the store confirmed the write.
3. The caller records the index rows (one transaction for the group) and commits.
4. `commit` publishes: the file system renames the staged file to its key; an object
   store, which already holds the bytes, drops the local copy. Then success may be
   reported.

So the index never names bytes that exist nowhere, and what was acknowledged survives a
crash without an fsync of the directories renamed into: until a rename is durable the
file is still durable in ``incoming/`` (a journaling file system keeps a rename whole),
where `staged()` lists it after a crash and recovery finishes the rename. On an object
store the same staged file tells recovery which upload to delete when no row names it.
Deletion mirrors this through ``trash/``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from cloudfilm.storage.staging import (
    CHUNK,
    DIR_MODE,
    FILE_MODE,
    ProcessClaim,
    StagedBlob,
    StagingArea,
    StagingWriter,
    durability_event,
    fsync_path,
    owner_of,
)

__all__ = [
    "CHUNK",
    "DIR_MODE",
    "FILE_MODE",
    "BlobStore",
    "BlobStoreError",
    "FileSystemBlobStore",
    "ProcessClaim",
    "StagedBlob",
    "StagingWriter",
    "blob_key_for",
    "owner_of",
    "secure_data_dir",
    "stored_sha256",
]


class BlobStoreError(OSError):
    """The blob store did not confirm a write or cannot serve a read; the text says why."""


class BlobStore(Protocol):
    """What the services need from a blob store: staging, publishing, reading, deleting."""

    # -- staging (local, storage/staging.py) -----------------------------------------
    def new_staging_file(self) -> tuple[Path, BinaryIO]: ...
    def staging_writer(self) -> StagingWriter: ...
    def stage_chunks(self, chunks: Iterable[bytes]) -> StagedBlob: ...
    def stage_reader(self, source: BinaryIO) -> StagedBlob: ...
    def stage_bytes(self, data: bytes) -> StagedBlob: ...
    def stage_file(self, source: Path) -> StagedBlob: ...
    def seal(self, staged: StagedBlob) -> StagedBlob: ...
    def receiving_file(self) -> IO[bytes]: ...
    def adopt(self, path: Path) -> Path: ...
    def sync_staging(self) -> None:
        """fsync the staging directory: every file sealed before it survives a crash."""
        ...

    def staged(self) -> list[Path]: ...
    def identify(self, path: Path) -> StagedBlob: ...

    # -- publishing ------------------------------------------------------------------
    def place(self, staged: StagedBlob, sop_instance_uid: str) -> StagedBlob:
        """The staged blob with the key its index row will name; an object store has the
        bytes there, confirmed, when this returns (`BlobStoreError` otherwise)."""
        ...

    def key_for(self, staged: StagedBlob, sop_instance_uid: str) -> str:
        """The key `place` gives this staged file (recovery asks without placing)."""
        ...

    def commit(self, staged: StagedBlob, key: str) -> None:
        """The index row naming ``key`` is committed: make the bytes readable there."""
        ...

    def discard(self, staged: StagedBlob) -> None:
        """No index row names these bytes: drop the staged file and whatever `place` wrote."""
        ...

    # -- reading ---------------------------------------------------------------------
    def exists(self, key: str) -> bool: ...
    def size(self, key: str) -> int: ...
    def written_at(self, key: str) -> datetime:
        """When the blob was written: an orphan is removed only once no upload that
        could still name it is in flight (`cloudfilm check --remove-orphans-older-than`)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A seekable binary stream over the blob; close it (``with``) when done."""
        ...

    def local_file(self, key: str) -> BinaryIO | None:
        """The blob as a file of this node's own file system, which sendfile(2) can send
        straight from the page cache; None when the store keeps it elsewhere (S3)."""
        ...

    def read_bytes(self, key: str) -> bytes: ...
    def read_range(self, key: str, offset: int, length: int) -> bytes: ...
    def iter_bytes(self, key: str, chunk: int = 4 * CHUNK) -> Iterator[bytes]: ...
    def listing(self) -> Iterator[tuple[str, int]]:
        """Every stored blob's key and size, for `cloudfilm check`."""
        ...

    # -- deleting --------------------------------------------------------------------
    def move_to_trash(self, keys: list[str]) -> None: ...
    def delete(self, keys: list[str]) -> None: ...
    def trashed(self) -> list[tuple[Path, str]]: ...
    def restore(self, trashed: Path, key: str) -> None: ...
    def purge(self, trashed: Path) -> None: ...

    def close(self) -> None: ...


def stored_sha256(blobs: BlobStore, key: str) -> str:
    """The SHA-256 of a stored blob, read back as a stream (recovery and `cloudfilm check`)."""
    digest = hashlib.sha256()
    for chunk in blobs.iter_bytes(key):
        digest.update(chunk)
    return digest.hexdigest()


def blob_key_for(sop_instance_uid: str) -> str:
    """A stable, evenly spread key: two fan-out levels then a UID digest."""
    digest = hashlib.sha256(sop_instance_uid.encode("ascii")).hexdigest()[:40]
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


class FileSystemBlobStore(StagingArea):
    """Blobs as files under ``<root>/blobs``; staging and trash beside them, so that
    publishing is an atomic rename on one file system."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.blobs = root / "blobs"
        self.blobs.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)

    # -- publishing --------------------------------------------------------
    def key_for(self, staged: StagedBlob, sop_instance_uid: str) -> str:
        return blob_key_for(sop_instance_uid)

    def place(self, staged: StagedBlob, sop_instance_uid: str) -> StagedBlob:
        """Only names the key: the bytes stay in staging until `commit` renames them."""
        return replace(staged, key=self.key_for(staged, sop_instance_uid))

    def commit(self, staged: StagedBlob, key: str) -> None:
        """Atomically publish the staged bytes under ``key``.

        No directory fsync: the bytes and their name in ``incoming/`` are durable already
        and the row is committed, so a crash that loses the rename leaves the file where
        `IngestService.recover()` publishes it at the next start.
        """
        target = self._file(key)
        target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.replace(staged.path, target)
        durability_event("rename", staged.path, target)

    def discard(self, staged: StagedBlob) -> None:
        """The key is shared by every write of one instance, so only staging is dropped."""
        self.drop_staged(staged)

    # -- reading -----------------------------------------------------------
    def _file(self, key: str) -> Path:
        return self.blobs / key

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def size(self, key: str) -> int:
        return self._file(key).stat().st_size

    def written_at(self, key: str) -> datetime:
        return datetime.fromtimestamp(self._file(key).stat().st_mtime, UTC)

    def open(self, key: str) -> BinaryIO:
        return open(self._file(key), "rb")

    def local_file(self, key: str) -> BinaryIO | None:
        return self.open(key)

    def read_bytes(self, key: str) -> bytes:
        return self._file(key).read_bytes()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        fd = os.open(self._file(key), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def iter_bytes(self, key: str, chunk: int = 4 * CHUNK) -> Iterator[bytes]:
        """The blob in pread chunks (a typical CT instance is one chunk)."""
        fd = os.open(self._file(key), os.O_RDONLY)
        try:
            size, offset = os.fstat(fd).st_size, 0
            while offset < size:
                data = os.pread(fd, min(chunk, size - offset), offset)
                if not data:
                    break
                offset += len(data)
                yield data
        finally:
            os.close(fd)

    def listing(self) -> Iterator[tuple[str, int]]:
        for path in self.blobs.rglob("*"):
            if path.is_file():
                yield path.relative_to(self.blobs).as_posix(), path.stat().st_size

    # -- deletion ----------------------------------------------------------
    def move_to_trash(self, keys: list[str]) -> None:
        """First half of a delete: blobs leave their keys but stay recoverable."""
        for key in keys:
            source = self._file(key)
            if source.exists():
                os.replace(source, self.trash_entry(key))
        fsync_path(self.trash)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self.trash_entry(key).unlink(missing_ok=True)

    def trashed(self) -> list[tuple[Path, str]]:
        """Trashed blobs of deletes no live process is finishing (see `staged`)."""
        return self.trash_entries()

    def restore(self, trashed: Path, key: str) -> None:
        target = self._file(key)
        target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.replace(trashed, target)
        fsync_path(target.parent)

    def purge(self, trashed: Path) -> None:
        trashed.unlink(missing_ok=True)


def secure_data_dir(path: Path) -> None:
    """Make the data directory owner-only (0700): it holds patients' images and the index.

    An older, more open directory is tightened when this process may; otherwise a
    warning says so (a mounted volume owned by someone else).
    """
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        try:
            path.chmod(DIR_MODE)
        except PermissionError:
            logging.getLogger(__name__).warning("cannot make %s owner-only (0700)", path)
