"""The access epoch: one number in the index that grows with every change that can narrow
access (migration 0013's triggers: a revoked token, session or grant, a disabled user, a
caregiver removed, a record moved to another person, ...).

Why a number and not a time-to-live: a node may keep principals and study decisions in
memory only if it can tell, at every request, that nothing has revoked them since. One
primary-key read answers that for all of them at once, on every node, whoever made the
change (another node, the CLI, a SQL console). Read it *before* loading what you cache
under it: then a change that commits in between makes the cached copy look old, never
a stale copy look new.
"""

from __future__ import annotations

from sqlalchemy import select

from cloudfilm.services.archive.prepared import PreparedRead
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.read_models import EPOCH_ROW, AccessEpochRow

_CURRENT = select(AccessEpochRow.value).where(AccessEpochRow.id == EPOCH_ROW)


class AccessEpoch:
    """Reads the current epoch (one indexed row; no transaction is left open)."""

    def __init__(self, index: Index) -> None:
        self._current = PreparedRead(index, _CURRENT)

    def current(self) -> int:
        row = self._current.first()
        if row is None:
            raise RuntimeError("the index has no access_epoch row: run the migrations "
                               "(cloudfilm serve does at start)")
        return int(row[0])
