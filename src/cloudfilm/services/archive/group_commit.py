"""Group commit: the batches of concurrent callers share one commit.

An fsync and an index transaction cost about the same for one instance as for fifty,
so ingest (services/archive/ingest.py) does not run them per request. Each caller
hands its batch to `GroupCommit.submit` and waits. The first caller to find no group
in progress becomes the leader: it takes every batch queued so far (its own among
them), runs the commit for all of them at once, and wakes their callers. Batches that
arrive meanwhile queue up for the next group, which one of their callers leads.

There is no committer thread to start or stop, and a caller never returns before the
group holding its batch has finished, so the acknowledgement rule stays the caller's:
whatever `submit` returned from is durable. When the commit raises, every caller of
that group gets the exception.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

Batch = TypeVar("Batch")

MAX_BATCHES = 64  # per group: bounds one transaction's length while others queue


@dataclass
class _Slot(Generic[Batch]):
    batch: Batch
    done: bool = False
    error: BaseException | None = None


class GroupCommit(Generic[Batch]):
    """Runs ``commit(batches)`` for groups of concurrently submitted batches."""

    def __init__(self, commit: Callable[[list[Batch]], None],
                 max_batches: int = MAX_BATCHES) -> None:
        self._commit = commit
        self._max = max_batches
        self._queue: list[_Slot[Batch]] = []
        self._leading = False
        self._changed = threading.Condition()

    @property
    def waiting(self) -> int:
        """Batches queued for the next group."""
        with self._changed:
            return len(self._queue)

    def submit(self, batch: Batch) -> None:
        """Return once a group holding ``batch`` is committed; raise what its commit raised."""
        slot = _Slot(batch)
        with self._changed:
            self._queue.append(slot)
        while True:
            with self._changed:
                while not slot.done and self._leading:
                    self._changed.wait()
                if slot.done:
                    break
                self._leading = True  # nobody leads and ours is still queued: lead, oldest first
                group, self._queue = self._queue[:self._max], self._queue[self._max:]
            self._lead(group)
        if slot.error is not None:
            raise slot.error

    def _lead(self, group: list[_Slot[Batch]]) -> None:
        error: BaseException | None = None
        try:
            self._commit([s.batch for s in group])
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the group
            error = exc
        with self._changed:
            for slot in group:
                slot.done, slot.error = True, error
            self._leading = False
            self._changed.notify_all()
