"""Staging: the one place where received bytes are written, hashed, sealed and cleaned up.

Every blob store stages on local disk, under the data directory (scratch on a node of an
object-store deployment): ``incoming/<owner>.<random>.part``. A `StagingWriter` writes
the chunks as they arrive and hashes them; `seal` fsyncs the file so it survives a crash;
anything that fails on the way removes its file. Only then may a store publish it
(storage/blobs.py, storage/s3.py).

Each process stages under a name of its own and holds an ``flock`` on
``locks/<owner>.lock`` for as long as it lives (the kernel drops it when the process
dies, even by kill -9). Recovery only touches files whose owner's lock it can take, so a
CLI command run beside a live server never sees, let alone deletes, what the server is
receiving. Trash works the same way. Files and folders are created owner-only (0600,
0700): they hold patients' images.

For group commit (services/archive/ingest.py) `sync_staging` fsyncs ``incoming/`` once
for many files: POSIX does not promise that fsyncing a file saves its name, and one
directory fsync covers every name made before it began. `receiving_file` and `adopt`
let a protocol library write a received data set straight into staging (pynetdicom's
file-based C-STORE receive). ``CLOUDFILM_DURABILITY_LOG`` (set by `log_durability_to`) names a file where every
staging name made, fsync (begun and returned), index commit, publishing rename and
acknowledgement is appended in order (`durability_event`): tests/test_group_commit.py
reads it to check that nothing is acknowledged before it is durable. Unset (the
default), it costs one comparison per event.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import secrets
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from tempfile import NamedTemporaryFile
from types import TracebackType
from typing import IO, BinaryIO

CHUNK = 1 << 20
FILE_MODE, DIR_MODE = 0o600, 0o700


@dataclass(frozen=True)
class StagedBlob:
    """Bytes on local disk that no index row points at yet.

    ``key`` is where the index row will point once a store has placed the blob
    (`BlobStore.place`); "" until then.
    """

    path: Path
    size: int
    sha256: str
    key: str = ""


_DURABILITY_LOG = ""


def log_durability_to(path: str) -> None:
    """Log durability events to ``path`` from now on in this process ("" = off)."""
    global _DURABILITY_LOG
    _DURABILITY_LOG = path


def durability_event(what: str, *subjects: object) -> None:
    """Append ``what subject…`` to the durability log, if one is configured.

    Each line is one ``write`` to a file opened with O_APPEND, so lines from many
    threads never interleave, and their order is the order the events happened in.
    """
    if not _DURABILITY_LOG:
        return
    line = " ".join([what, *map(str, subjects)]).replace("\n", " ") + "\n"
    fd = os.open(_DURABILITY_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


_FSYNCS = itertools.count(1)


def fsync_fd(fd: int, path: Path) -> None:
    """fsync an open file: its bytes (and, on ext4, its name) survive a crash from now on.

    Logged as ``fsync-begin N path``, then ``fsync N path`` once it returned: an fsync of
    a directory covers the names made before it began."""
    number = next(_FSYNCS) if _DURABILITY_LOG else 0
    durability_event("fsync-begin", number, path)
    os.fsync(fd)
    durability_event("fsync", number, path)


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by name (a directory's fsync makes a rename durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        fsync_fd(fd, path)
    finally:
        os.close(fd)


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


def staging_token(path: Path) -> str:
    """The random part of a staged file's name (``<owner>.<token>.part``)."""
    return path.name.removesuffix(".part").rpartition(".")[2]


class StagingWriter:
    """One staged file being written: chunks are hashed as they arrive.

    `close` ends the file (not yet durable), `seal` ends and fsyncs it, `abort` removes
    it. Used as a context manager, an exception inside the block aborts.
    """

    def __init__(self, path: Path, fh: BinaryIO) -> None:
        self.path, self._fh = path, fh
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self._fh.write(data)
        self._digest.update(data)
        self.size += len(data)
        return len(data)

    def close(self) -> StagedBlob:
        """The file is complete; `StagingArea.seal` must still make it durable."""
        if not self._fh.closed:
            self._fh.close()
        return StagedBlob(self.path, self.size, self._digest.hexdigest())

    def seal(self) -> StagedBlob:
        """Complete and durable: flushed and fsynced before it is closed."""
        if not self._fh.closed:
            self._fh.flush()
            fsync_fd(self._fh.fileno(), self.path)
        return self.close()

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> StagingWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if kind is not None:
            self.abort()


class StagingArea:
    """``incoming/``, ``trash/`` and ``locks/`` under ``root``: the local half of a blob store."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.trash = root / "trash"
        for directory in (self.incoming, self.trash):
            directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self.claim = ProcessClaim(root / "locks")
        self._named = 0  # names this store has made in incoming/
        self._durable = 0  # of those, how many an fsync of incoming/ has covered
        self._counting = threading.Lock()

    def _made_name(self, path: Path) -> None:
        durability_event("staged", path)
        with self._counting:
            self._named += 1

    def close(self) -> None:
        """Release this store's claim; whatever it left staged is recovered later."""
        self.claim.release()

    # -- writing -----------------------------------------------------------
    def new_staging_file(self) -> tuple[Path, BinaryIO]:
        path = self.incoming / f"{self.claim.owner}.{secrets.token_hex(16)}.part"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self._made_name(path)
        return path, os.fdopen(fd, "wb")

    def staging_writer(self) -> StagingWriter:
        return StagingWriter(*self.new_staging_file())

    def stage_chunks(self, chunks: Iterable[bytes]) -> StagedBlob:
        """Write chunks into staging, hashing as they go, and seal: durable when it returns."""
        with self.staging_writer() as writer:
            for chunk in chunks:
                writer.write(chunk)
            return writer.seal()

    def stage_reader(self, source: BinaryIO) -> StagedBlob:
        """Copy a readable stream (a file, a zip member) into staging."""
        return self.stage_chunks(iter(lambda: source.read(CHUNK), b""))

    def stage_bytes(self, data: bytes) -> StagedBlob:
        return self.stage_chunks([data])

    def stage_file(self, source: Path) -> StagedBlob:
        with open(source, "rb") as src:
            return self.stage_reader(src)

    def receiving_file(self) -> IO[bytes]:
        """A staging file for a library that writes received bytes itself; `identify`
        then hashes it and `seal` makes it durable. Named like every staged file, so
        whatever a crash leaves half-written is recovered (deleted) like the others."""
        made = NamedTemporaryFile(  # noqa: SIM115 - the library writes and closes it
            mode="wb", dir=self.incoming, delete=False, prefix=f"{self.claim.owner}.",
            suffix=".part")
        self._made_name(Path(made.name))
        return made

    def adopt(self, path: Path) -> Path:
        """A complete file another writer left, under a staging name of our own, not yet
        hashed nor sealed (`identify`, `seal`): one in ``incoming/`` (a `receiving_file`)
        is renamed, so its writer's clean-up finds nothing to remove; one elsewhere is
        copied in."""
        if path.parent != self.incoming:
            with open(path, "rb") as source:
                return self.stage_reader(source).path
        own = self.incoming / f"{self.claim.owner}.{secrets.token_hex(16)}.part"
        os.rename(path, own)
        self._made_name(own)
        return own

    def seal(self, staged: StagedBlob) -> StagedBlob:
        """fsync a staged file written and closed elsewhere: now it survives a crash."""
        fsync_path(staged.path)
        return staged

    def sync_staging(self) -> None:
        """fsync ``incoming/``: every file staged before this call can be found after a
        crash. One call covers a whole group of instances, and a call finds nothing to do
        when an fsync that started after its files were named has finished already (the
        C-STORE handler issues one beside each file's own fsync, so they share a commit)."""
        with self._counting:
            named = self._named
            if self._durable >= named:
                return
        fsync_path(self.incoming)
        with self._counting:
            self._durable = max(self._durable, named)

    def drop_staged(self, staged: StagedBlob) -> None:
        staged.path.unlink(missing_ok=True)

    # -- what crashes left -------------------------------------------------
    def staged(self) -> list[Path]:
        """Staged files no live process owns (a crash left them); never another's in-flight ones."""
        return self._orphans(self.incoming.glob("*.part"))

    def identify(self, path: Path) -> StagedBlob:
        """A staged file with its size and SHA-256 (recovery; files written by others)."""
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256")
            size = os.fstat(fh.fileno()).st_size
        return StagedBlob(path, size, digest.hexdigest())

    def trash_entry(self, key: str) -> Path:
        """This process's name in ``trash/`` for a blob being deleted."""
        return self.trash / f"{self.claim.owner}.{key.replace('/', '~')}"

    def trash_entries(self) -> list[tuple[Path, str]]:
        """Trash entries of deletes no live process is finishing, with their keys."""
        return [(path, trashed_key(path))
                for path in self._orphans(p for p in self.trash.iterdir() if p.is_file())]

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


def trashed_key(path: Path) -> str:
    """The key a trash entry stands for: its name after ``<owner>.``, ``~`` for ``/``."""
    name = path.name
    if owner_of(path):
        name = name.partition(".")[2]
    return name.replace("~", "/")
