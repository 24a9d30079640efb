"""Bearer tokens and session ids as principals, remembered per process and trusted only
under the access epoch they were loaded in (issue 14: one cached check per request).

Why: resolving a credential costs three or four queries (the token or session, its user
or share grant, the user's caregiver links) and, once a minute, a write. A viewer sends
hundreds of requests a minute with the same credential. Here a request costs the epoch
read (services/access/epoch.py) and a dictionary lookup; the credential's own end
(``expires_at``) is checked against the clock every time, so an expired token or
session is refused at its first request after the end, and a revoked one (or a
disabled user, a removed caregiver link, a revoked share) at the first request after
the change committed, on every node. Uses are recorded off the request path
(services/access/usage.py).

The rules of a live credential are those of ``AccountService.principal_for_token`` and
``resolve_session``; this module is their read-only form.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Principal
from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.services.access import credentials
from cloudfilm.services.access.accounts import (
    SESSION_LIFETIME,
    ResolvedSession,
    live_token,
    principal_for_user,
    session_principal,
)
from cloudfilm.services.access.usage import UsageWriter
from cloudfilm.storage.index.access_models import WebSessionRow
from cloudfilm.storage.index.db import Index

Loader = Callable[[Session, datetime], "LiveCredential | None"]
MAX_ENTRIES = 10_000  # past this the memo starts over (an attacker's junk tokens are never kept)


@dataclass
class LiveCredential:
    """A credential found live in the index, under ``epoch``."""

    kind: str  # token | session
    row_id: int
    principal: Principal
    expires_at: datetime | None
    csrf_hash: str  # sessions only
    epoch: int
    last_use: datetime | None  # the last use written (or queued) for it

    def live(self, epoch: int, now: datetime) -> bool:
        return self.epoch == epoch and (self.expires_at is None or now < self.expires_at)


def load_token(session: Session, token: str, epoch: int, now: datetime) -> LiveCredential | None:
    """The live token's user as a principal; None for unknown, revoked or expired tokens
    and disabled users."""
    found = live_token(session, token, now)
    if found is None:
        return None
    row, user = found
    return LiveCredential("token", row.id, principal_for_user(session, user),
                          as_utc(row.expires_at), "", epoch, as_utc(row.last_used_at))


def load_session(session: Session, session_id: str, epoch: int,
                 now: datetime) -> LiveCredential | None:
    """A live browser session's principal: a user (not disabled) or an unrevoked share."""
    row = session.scalars(select(WebSessionRow).where(
        WebSessionRow.session_hash == credentials.token_hash(session_id))).first()
    if row is None or not credentials.same_hash(row.session_hash, session_id):
        return None
    expires = as_utc(row.expires_at)
    if row.revoked_at is not None or expires <= now:
        return None
    principal = session_principal(session, row)
    if principal is None:
        return None
    return LiveCredential("session", row.id, principal, expires, row.csrf_hash, epoch,
                          expires - SESSION_LIFETIME)


class CredentialCache:
    """``token`` and ``session``: what the authentication middleware asks per request."""

    def __init__(self, index: Index, usage: UsageWriter, *, max_entries: int = MAX_ENTRIES) -> None:
        self.index = index
        self.usage = usage
        self.max_entries = max_entries
        self._memo: dict[str, LiveCredential] = {}
        self._lock = threading.Lock()

    def token(self, token: str, epoch: int, now: datetime | None = None, *,
              remembered_only: bool = False) -> Principal | None:
        """The live token's principal, else None. ``remembered_only``: no I/O at all (None
        also when it would have to be loaded)."""
        loader = None if remembered_only else (
            lambda session, at: load_token(session, token, epoch, at))
        found = self._find("token:" + credentials.token_hash(token), epoch, now or utcnow(),
                           loader)
        return found.principal if found else None

    def session(self, session_id: str, epoch: int, now: datetime | None = None, *,
                remembered_only: bool = False) -> ResolvedSession | None:
        """The live session, else None (``remembered_only`` as for ``token``)."""
        loader = None if remembered_only else (
            lambda session, at: load_session(session, session_id, epoch, at))
        found = self._find("session:" + credentials.token_hash(session_id), epoch,
                           now or utcnow(), loader)
        return ResolvedSession(found.row_id, found.principal, found.csrf_hash) if found else None

    def _find(self, key: str, epoch: int, now: datetime,
              load: Loader | None) -> LiveCredential | None:
        found = self._memo.get(key)
        if found is None or not found.live(epoch, now):
            if load is None:
                return None
            with self.index.session() as session:
                found = load(session, now)
            self._remember(key, found)
            if found is None:
                return None
        self._record_use(found, now)
        return found

    def _remember(self, key: str, found: LiveCredential | None) -> None:
        with self._lock:
            if found is None:
                self._memo.pop(key, None)
                return
            if len(self._memo) >= self.max_entries:
                self._memo.clear()
            self._memo[key] = found

    def _record_use(self, found: LiveCredential, now: datetime) -> None:
        if not self.usage.due(found.last_use, now):
            return
        found.last_use = now
        if found.kind == "token":
            self.usage.token_used(found.row_id, now)
        else:
            self.usage.session_used(found.row_id, now)
