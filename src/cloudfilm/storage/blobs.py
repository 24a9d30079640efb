"""Blob storage: the received Part-10 bytes, stored unchanged.

The ingest protocol is *stage → index → commit*:

1. Bytes go into ``incoming/`` (hashed as they arrive) and are fsynced.
2. The caller records the index row (one transaction).
3. `commit()` renames the staged file to its key and fsyncs the directory.

A crash between 2 and 3 leaves a staged file that `staged()` lists, so recovery
can finish the rename. Deletion mirrors it through ``trash/``. Everything here
sits behind `BlobStore` so an object store can replace the file system later
without touching callers.

Each process stages under a name of its own, ``incoming/<owner>.<random>.part``,
and holds an ``flock`` on ``locks/<owner>.lock`` for as long as it lives (the kernel
drops it when the process dies, even by kill -9). Recovery only touches files whose
owner's lock it can take, so a CLI command run beside a live server never sees, let
alone deletes, what the server is receiving. Trash works the same way. Files and
folders are created owner-only (0600, 0700): they hold patients' images.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1 << 20


@dataclass(frozen=True)
class StagedBlob:
    """Bytes that are durable on disk but not yet visible under a key."""

    path: Path
    size: int
    sha256: str


class BlobStore(Protocol):
    """What the services need from a blob store."""

    def new_staging_file(self) -> tuple[Path, BinaryIO]: ...
    def seal(self, path: Path, size: int, sha256: str) -> StagedBlob: ...
    def stage_file(self, source: Path) -> StagedBlob: ...
    def stage_reader(self, source: BinaryIO) -> StagedBlob: ...
    def commit(self, staged: StagedBlob, key: str) -> None:
        """Atomically publish the staged bytes under ``key``.

        No directory fsync: the bytes were fsynced in staging and the index row is
        committed, so if a crash loses the rename the file is still in ``incoming/``
        and `IngestService.recover()` publishes it at the next start.
        """
        target = self.path(key)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.replace(staged.path, target)

    def discard(self, staged: StagedBlob) -> None: ...
    def staged(self) -> list[Path]: ...
    def exists(self, key: str) -> bool: ...
    def path(self, key: str) -> Path: ...
    def read_range(self, key: str, offset: int, length: int) -> bytes: ...
    def iter_bytes(self, key: str, chunk: int = 4 * CHUNK) -> Iterator[bytes]: ...
    def keys(self) -> Iterator[str]: ...
    def move_to_trash(self, keys: list[str]) -> None: ...
    def delete(self, keys: list[str]) -> None: ...
    def trashed(self) -> list[tuple[Path, str]]: ...
    def restore(self, trashed: Path, key: str) -> None: ...
    def purge(self, trashed: Path) -> None: ...


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def blob_key_for(sop_instance_uid: str) -> str:
    """A stable, evenly spread key: two fan-out levels then a UID digest."""
    digest = hashlib.sha256(sop_instance_uid.encode("ascii")).hexdigest()[:40]
    return f"{digest[:2]}/{digest[2:4]}/{digest}"


FILE_MODE, DIR_MODE = 0o600, 0o700


class ProcessClaim:
    """This store's claim on the files it stages and trashes while it lives.

    ``<root>/locks/<owner>.lock`` is ``flock``ed from the first staged file on; staged
    and trashed files carry ``<owner>.`` in their names. The lock file is created
    under a temporary name, locked, then renamed, so no file ever names an owner whose
    lock is not yet held; the kernel drops the lock when the process dies (kill -9 too).
    """

    def __init__(self, locks: Path) -> None:
        self.locks = locks
        self._owner: str | None = None
        self._fd: int | None = None
        self._making = threading.Lock()

    @property
    def owner(self) -> str:
        with self._making:
            return self._owner or self._claim()

    def _claim(self) -> str:
        self.locks.mkdir(mode=DIR_MODE, exist_ok=True)
        owner = f"{os.getpid()}-{secrets.token_hex(8)}"
        pending = self.locks / f".{owner}.lock"
        fd = os.open(pending, os.O_RDWR | os.O_CREAT | os.O_EXCL, FILE_MODE)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(pending, self.locks / f"{owner}.lock")
        self._owner, self._fd = owner, fd
        return owner

    def release(self) -> None:
        """A clean close: whatever is still named after this owner becomes an orphan."""
        with self._making:
            if self._fd is not None and self._owner is not None:
                (self.locks / f"{self._owner}.lock").unlink(missing_ok=True)
                os.close(self._fd)
            self._owner, self._fd = None, None

    def is_live(self, owner: str) -> bool:
        """True while some process holds ``owner``'s lock; a dead owner's lock file is removed."""
        if owner == self._owner:
            return True
        path = self.locks / f"{owner}.lock"
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            path.unlink(missing_ok=True)
            return False
        finally:
            os.close(fd)


def owner_of(path: Path) -> str:
    """The owner named in a staged or trashed file name; "" for names before owners existed."""
    head, dot, _ = path.name.partition(".")
    return head if dot and "-" in head else ""


class FileSystemBlobStore:
    """Blobs as files under ``<root>/blobs``; staging and trash beside them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.blobs = root / "blobs"
        self.incoming = root / "incoming"
        self.trash = root / "trash"
        for directory in (self.blobs, self.incoming, self.trash):
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.claim = ProcessClaim(root / "locks")

    def close(self) -> None:
        """Release this store's claim; whatever it left staged is recovered later."""
        self.claim.release()

    def _orphans(self, paths: Iterator[Path]) -> list[Path]:
        live: dict[str, bool] = {}
        found = []
        for path in paths:
            owner = owner_of(path)
            if owner not in live:
                live[owner] = bool(owner) and self.claim.is_live(owner)
            if not live[owner]:
                found.append(path)
        return sorted(found)

    # -- staging -----------------------------------------------------------
    def new_staging_file(self) -> tuple[Path, BinaryIO]:
        path = self.incoming / f"{self.claim.owner}.{secrets.token_hex(16)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        return path, os.fdopen(fd, "wb")

    def seal(self, path: Path, size: int, sha256: str) -> StagedBlob:
        """fsync a staged file written and closed elsewhere: now it survives a crash."""
        _fsync_path(path)
        return StagedBlob(path=path, size=size, sha256=sha256)

    def stage_file(self, source: Path) -> StagedBlob:
        with open(source, "rb") as src:
            return self.stage_reader(src)

    def stage_reader(self, source: BinaryIO) -> StagedBlob:
        """Copy a readable stream (a file, a zip member) into staging, hashing as it goes."""
        path, fh = self.new_staging_file()
        digest = hashlib.sha256()
        size = 0
        try:
            with fh:
                while chunk := source.read(CHUNK):
                    fh.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return StagedBlob(path=path, size=size, sha256=digest.hexdigest())

    def commit(self, staged: StagedBlob, key: str) -> None:
        """Atomically publish the staged bytes under ``key`` and make the rename durable."""
        target = self.path(key)
        created = not target.parent.exists()
        target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.replace(staged.path, target)
        _fsync_path(target.parent)
        if created:
            _fsync_path(target.parent.parent)
            _fsync_path(target.parent.parent.parent)

    def discard(self, staged: StagedBlob) -> None:
        staged.path.unlink(missing_ok=True)

    def staged(self) -> list[Path]:
        """Staged files no live process owns (a crash left them); never another's in-flight ones."""
        return self._orphans(self.incoming.glob("*.part"))

    # -- reading -----------------------------------------------------------
    def path(self, key: str) -> Path:
        return self.blobs / key

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        fd = os.open(self.path(key), os.O_RDONLY)
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def iter_bytes(self, key: str, chunk: int = 4 * CHUNK) -> Iterator[bytes]:
        """The blob in pread chunks (a typical CT instance is one chunk)."""
        fd = os.open(self.path(key), os.O_RDONLY)
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

    def keys(self) -> Iterator[str]:
        for path in self.blobs.rglob("*"):
            if path.is_file():
                yield path.relative_to(self.blobs).as_posix()

    # -- deletion ----------------------------------------------------------
    def _trash_name(self, key: str) -> Path:
        return self.trash / f"{self.claim.owner}.{key.replace('/', '~')}"

    def move_to_trash(self, keys: list[str]) -> None:
        """First half of a delete: blobs leave their keys but stay recoverable."""
        for key in keys:
            source = self.path(key)
            if source.exists():
                os.replace(source, self._trash_name(key))
        _fsync_path(self.trash)

    def delete(self, keys: list[str]) -> None:
        for key in keys:
            self._trash_name(key).unlink(missing_ok=True)

    def trashed(self) -> list[tuple[Path, str]]:
        """Trashed blobs of deletes no live process is finishing (see `staged`)."""
        orphans = self._orphans(p for p in self.trash.iterdir() if p.is_file())
        return [(p, p.name.rpartition(".")[2].replace("~", "/")) for p in orphans]

    def restore(self, trashed: Path, key: str) -> None:
        target = self.path(key)
        target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.replace(trashed, target)
        _fsync_path(target.parent)

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
