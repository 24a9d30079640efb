"""The read path's access checks in one place: one epoch read per request, then memory.

A frame, metadata or rendered request asks two things: who is this (the credential) and
may they see this study (the policy). Both answers are remembered per process under
the access epoch (services/access/epoch.py), which the request reads once, before
anything else; the authentication middleware keeps it in the request's state for the
study check. So a request costs one small query however much is remembered, and a
change that narrows access is seen by every node at its next request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cloudfilm.domain.access import Principal
from cloudfilm.services.access.accounts import ResolvedSession
from cloudfilm.services.access.credential_cache import CredentialCache
from cloudfilm.services.access.epoch import AccessEpoch
from cloudfilm.services.access.policy import StudyChecks
from cloudfilm.services.access.usage import UsageWriter
from cloudfilm.storage.index.db import Index

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive


class ReadAccess:
    def __init__(self, index: Index) -> None:
        self.epoch = AccessEpoch(index)
        self.usage = UsageWriter(index)
        self.credentials = CredentialCache(index, self.usage)
        self.studies = StudyChecks(index)
        # A SQLite read of one row takes microseconds and never waits for a writer (WAL):
        # less than handing it to a thread. A PostgreSQL read is a network round trip.
        self.inline = index.is_sqlite

    def token(self, token: str) -> tuple[Principal | None, int]:
        """The bearer token's principal (None: not live) and the epoch it was judged under."""
        epoch = self.epoch.current()
        return self.credentials.token(token, epoch), epoch

    def session(self, session_id: str) -> tuple[ResolvedSession | None, int]:
        """The session cookie's live session (None: not live) and the epoch."""
        epoch = self.epoch.current()
        return self.credentials.session(session_id, epoch), epoch

    def remembered_token(self, token: str) -> tuple[Principal, int] | None:
        """``token`` without a thread, when the index is local and the token remembered;
        None: ask ``token`` (in a thread)."""
        if not self.inline:
            return None
        epoch = self.epoch.current()
        who = self.credentials.token(token, epoch, remembered_only=True)
        return (who, epoch) if who is not None else None

    def remembered_session(self, session_id: str) -> tuple[ResolvedSession, int] | None:
        """``session`` without a thread, as ``remembered_token``."""
        if not self.inline:
            return None
        epoch = self.epoch.current()
        found = self.credentials.session(session_id, epoch, remembered_only=True)
        return (found, epoch) if found is not None else None

    def close(self) -> None:
        """Write the uses still pending."""
        self.usage.close()


def read_access_of(archive: Archive) -> ReadAccess:
    """The archive's read-path checks, made on first use."""
    existing = getattr(archive, "read_access", None)
    if isinstance(existing, ReadAccess):
        return existing
    made = ReadAccess(archive.index)
    archive.read_access = made
    return made
