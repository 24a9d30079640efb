"""Engine, sessions and migrations for the index.

SQLite is the embedded default (WAL, synchronous=FULL so a commit survives power
loss); PostgreSQL is chosen by URL. Both run the same Alembic migrations.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept plain ``postgresql://`` URLs and use the psycopg 3 driver for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _configure_sqlite(engine: Engine) -> None:
    """Pragmas per connection, and explicit BEGIN so SAVEPOINT and BEGIN IMMEDIATE work.

    pysqlite's own transaction handling defeats both (SQLAlchemy docs,
    "Serializable isolation / Savepoints / Transactional DDL" for pysqlite).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        mode = connection.info.get("begin_mode", "BEGIN")
        connection.exec_driver_sql(mode)


class Index:
    """The index database: one engine, short sessions, migrations on open."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"future": True}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            kwargs.update(pool_size=10, max_overflow=20, pool_pre_ping=True)
        self.engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.connect() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A read session (or a write that tolerates SQLite lock upgrades)."""
        with self._sessions() as session:
            yield session

    @contextmanager
    def write_session(self) -> Iterator[Session]:
        """A session that takes the write lock up front (SQLite ``BEGIN IMMEDIATE``).

        Without it two SQLite writers can deadlock on the read→write upgrade.
        """
        if not self.is_sqlite:
            with self._sessions() as session:
                yield session
            return
        with self.engine.connect() as connection:
            connection.info["begin_mode"] = "BEGIN IMMEDIATE"
            try:
                with Session(bind=connection, expire_on_commit=False) as session:
                    yield session
            finally:
                connection.info["begin_mode"] = "BEGIN"

    def dispose(self) -> None:
        self.engine.dispose()
