"""A SELECT compiled once, run on a driver connection kept for such reads: for the reads
made at every request of the read path (issue 14).

Why: SQLAlchemy's per-execution work (cache key, transaction events, result processing)
and its pool's checkout (a ping on PostgreSQL, a rollback at return) cost several times
what SQLite or PostgreSQL spend answering a primary-key lookup, and a frame request makes
two such lookups. The statement is still written with SQLAlchemy, so it names the same
tables and columns as everything else, and compiled once for the index's dialect; it runs
in autocommit on one of a few connections the engine opened (same settings, schema and
pragmas) and then detached for this use. Select only plain columns (text, integers,
bytes): values come back as the driver gives them.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

from sqlalchemy import Engine, Select

from cloudfilm.storage.index.db import Index

KEEP = 4  # idle connections kept per index; more are opened while busy, then closed


class _Connections:
    """Driver connections of one engine, in autocommit, for prepared reads."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.errors: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def take(self) -> Any:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        pooled = self.engine.raw_connection()
        pooled.detach()  # ours from now on: no pool ping before use, no rollback after
        connection: Any = pooled.dbapi_connection
        if self.engine.dialect.name != "sqlite":  # SQLite connections are in autocommit
            connection.rollback()
            connection.autocommit = True
        return connection

    def give(self, connection: Any) -> None:
        with self._lock:
            if len(self._idle) < KEEP:
                self._idle.append(connection)
                return
        connection.close()

    def discard(self, connection: Any) -> None:
        """Close a failed connection and the idle ones: after a server restart they all are."""
        with self._lock:
            closing, self._idle = [connection, *self._idle], []
        for each in closing:
            with contextlib.suppress(self.errors):
                each.close()


_BY_ENGINE: weakref.WeakKeyDictionary[Engine, _Connections] = weakref.WeakKeyDictionary()
_MAKING = threading.Lock()


def _connections(engine: Engine) -> _Connections:
    with _MAKING:
        found = _BY_ENGINE.get(engine)
        if found is None:
            found = _BY_ENGINE[engine] = _Connections(engine)
        return found


class PreparedRead:
    def __init__(self, index: Index, statement: Select[*tuple[Any, ...]]) -> None:
        compiled = statement.compile(dialect=index.engine.dialect)
        self.sql = str(compiled)
        self.names: list[str] | None = list(compiled.positiontup or []) \
            if compiled.positional else None
        self.constants = {name: bind.value for name, bind in compiled.binds.items()
                          if not bind.required}
        self._connections = _connections(index.engine)

    def first(self, **params: Any) -> tuple[Any, ...] | None:
        """The first row (a plain tuple), or None. A connection the server closed (a
        restart, an idle timeout) is replaced and the read tried once more."""
        values = self.constants | params
        args: Any = tuple(values[name] for name in self.names) if self.names is not None else values
        for attempt in (1, 2):
            connection = self._connections.take()
            try:
                cursor = connection.cursor()
                try:
                    cursor.execute(self.sql, args)
                    row = cursor.fetchone()
                finally:
                    cursor.close()
            except self._connections.errors:
                self._connections.discard(connection)
                if attempt == 2:
                    raise
                continue
            self._connections.give(connection)
            return tuple(row) if row is not None else None
        raise AssertionError("unreachable")
