"""A bounded local cache of what was read from an object store (least recently used out).

Object keys are never rewritten: every write gets a fresh key (storage/s3.py), so an
entry can never be stale and nodes need no invalidation. Whole objects (``objects/``)
and the byte ranges frames were read from (``ranges/``) are kept as files under the
data directory, which is scratch on a node; the total stays under ``max_bytes``.
"""

from __future__ import annotations

import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cloudfilm.storage.staging import DIR_MODE, FILE_MODE


class ReadCache:
    """Files named after object keys, evicted oldest-first past ``max_bytes``."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory, self.max_bytes = directory, max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self._total = 0
        self._lock = threading.Lock()
        directory.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        self._load()

    def _load(self) -> None:
        """Entries left by an earlier run count against the bound, oldest first."""
        found = [(p.stat().st_mtime, p) for p in self.directory.rglob("*")
                 if p.is_file() and not p.name.startswith(".")]
        for _, path in sorted(found):
            self._sizes[path.relative_to(self.directory).as_posix()] = path.stat().st_size
        self._total = sum(self._sizes.values())
        with self._lock:
            self._evict()
        for leftover in self.directory.rglob(".*.tmp"):
            leftover.unlink(missing_ok=True)

    @staticmethod
    def object_name(key: str) -> str:
        return f"objects/{key}"

    @staticmethod
    def range_name(key: str, offset: int, length: int) -> str:
        return f"ranges/{key}@{offset}+{length}"

    def fits(self, size: int) -> bool:
        """Whether an object of ``size`` bytes is worth caching (an eighth of the bound)."""
        return 0 < size <= self.max_bytes // 8

    def get(self, name: str) -> Path | None:
        """The cached file, marked as just used; None when it is not (or no longer) here."""
        with self._lock:
            if name not in self._sizes:
                return None
            self._sizes.move_to_end(name)
        path = self.directory / name
        return path if path.is_file() else None

    def put(self, name: str, data: bytes) -> None:
        if not self.fits(len(data)):
            return
        with self.writing(name) as fh:
            fh.write(data)

    @contextmanager
    def writing(self, name: str) -> Iterator[_Fill]:
        """Write an entry; it appears only when the block ends without an error."""
        target = self.directory / name
        target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        temporary = target.parent / f".{secrets.token_hex(8)}.tmp"
        fill = _Fill(temporary)
        try:
            yield fill
            fill.close()
            os.replace(temporary, target)
        except BaseException:
            fill.close()
            temporary.unlink(missing_ok=True)
            raise
        with self._lock:
            self._total += fill.size - self._sizes.pop(name, 0)
            self._sizes[name] = fill.size
            self._evict()

    def _evict(self) -> None:
        while self._total > self.max_bytes and self._sizes:
            name, size = self._sizes.popitem(last=False)
            self._total -= size
            (self.directory / name).unlink(missing_ok=True)


class _Fill:
    """The file an entry is written to, counting its bytes."""

    def __init__(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        self._fh = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        self._fh.write(data)
        self.size += len(data)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
