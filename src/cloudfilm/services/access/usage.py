"""Recording that a credential was used, off the request path (issue 14).

A bearer token's ``last_used_at`` and a web session's sliding end (``expires_at``, 12 h
after the last use) are written at most once a minute per credential, as before; but
by a background thread, so a read request never waits for a write. What a crash loses
is bounded and harmless: at most a minute's ``last_used_at``, and a session's end
moved up to a minute (plus one flush) earlier than it would have been.

Neither column narrows access, so migration 0013 leaves them out of the access epoch:
these writes do not invalidate the caches that trigger them.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from sqlalchemy import Update, update

from cloudfilm.services.access.accounts import SESSION_LIFETIME, TOUCH_EVERY
from cloudfilm.storage.index.access_models import ApiTokenRow, WebSessionRow
from cloudfilm.storage.index.db import Index

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class UsageWriter:
    """Pending uses, keyed by (kind, row id), written in one transaction per flush."""

    def __init__(self, index: Index, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self.index = index
        self.flush_seconds = flush_seconds
        self._pending: dict[tuple[str, int], datetime] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def token_used(self, token_id: int, now: datetime) -> None:
        self._add(("token", token_id), now)

    def session_used(self, session_id: int, now: datetime) -> None:
        self._add(("session", session_id), now)

    @staticmethod
    def due(last: datetime | None, now: datetime) -> bool:
        """Whether a use at ``now`` must be written, the last written one being ``last``."""
        return last is None or now - last >= TOUCH_EVERY

    def _add(self, key: tuple[str, int], now: datetime) -> None:
        with self._lock:
            self._pending[key] = max(now, self._pending.get(key, now))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="credential-usage",
                                                daemon=True)
                self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait()
            self._wake.clear()
            self._stopping.wait(self.flush_seconds)  # gather a second's worth
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # the uses stay pending; the next flush tries again
            log.exception("could not record credential use; will retry")
            self._wake.set()

    def flush(self) -> None:
        """Write every pending use now (also at close)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        try:
            with self.index.write_session() as session:
                for (kind, row_id), at in sorted(pending.items()):
                    session.execute(_statement(kind, row_id, at))
                session.commit()
        except Exception:
            with self._lock:
                for key, at in pending.items():
                    self._pending[key] = max(at, self._pending.get(key, at))
            raise

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._flush_logged()


def _statement(kind: str, row_id: int, at: datetime) -> Update:
    if kind == "token":
        return update(ApiTokenRow).where(ApiTokenRow.id == row_id).values(last_used_at=at)
    ends = at + SESSION_LIFETIME  # only ever moved later: another node may have gone further
    return update(WebSessionRow).where(WebSessionRow.id == row_id,
                                       WebSessionRow.revoked_at.is_(None),
                                       WebSessionRow.expires_at < ends).values(expires_at=ends)
