"""the read path's validators: the access epoch and stored series metadata (issue 14)

``access_epoch`` (one row) grows in every transaction that changes what a credential
or grant allows; triggers do it, so every writer (any node, the CLI, a test's SQL) is
covered. Columns that only record use (a token's ``last_used_at``, a session's sliding
``expires_at`` moving later, a link's ``open_count``, reminders) are left out, so reading
does not invalidate the caches it fills. A later migration that rebuilds one of these
tables (SQLite batch mode copies the table and drops the old one, triggers included) must
create its triggers again; tests/test_read_path.py checks that they exist.

``series_metadata`` holds a series' WADO-RS metadata as sent; a trigger on ``instances``
deletes a series' rows whenever one of its instances is added, replaced or deleted. On
PostgreSQL the trigger (once per statement) first takes the series rows ``FOR KEY SHARE``
(as the foreign key check of an insert does), and a build takes it ``FOR UPDATE``: a build and a change of
the same series are ordered, so a build never stores what a concurrent change made stale.
On SQLite the build runs in a write transaction, which orders it the same way.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ALL = None  # every column
GRANT_TERMS = ("person_id", "study_uids", "include_future", "audience", "physician_user_id",
               "permissions", "valid_from", "valid_until", "revoked_at", "created_at")
# (table, event, columns whose UPDATE counts); what narrows access, and nothing else.
EPOCH_TRIGGERS: tuple[tuple[str, str, tuple[str, ...] | None], ...] = (
    ("grants", "INSERT", ALL), ("grants", "UPDATE", GRANT_TERMS), ("grants", "DELETE", ALL),
    ("caregivers", "INSERT", ALL), ("caregivers", "UPDATE", ALL), ("caregivers", "DELETE", ALL),
    ("person_records", "INSERT", ALL), ("person_records", "UPDATE", ALL),
    ("person_records", "DELETE", ALL),
    ("users", "UPDATE", ALL), ("users", "DELETE", ALL),
    ("api_tokens", "UPDATE", ("user_id", "token_hash", "expires_at", "revoked_at")),
    ("api_tokens", "DELETE", ALL),
    ("web_sessions", "UPDATE", ("session_hash", "csrf_hash", "user_id", "grant_id", "revoked_at")),
    ("web_sessions", "DELETE", ALL),
    ("patients", "UPDATE", ("patient_id", "issuer")), ("patients", "DELETE", ALL),
    ("studies", "UPDATE", ("patient_pk", "study_uid", "created_at")), ("studies", "DELETE", ALL),
)
# A session's end moved earlier (by hand: nothing in cloudfilm shortens it) counts too;
# the sliding extension at each use moves it later and does not.
SHORTENED = ("web_sessions", "expires_at", "NEW.expires_at < OLD.expires_at")
BUMP = "UPDATE access_epoch SET value = value + 1 WHERE id = 1"
PG_BUMP_FUNCTION = f"""
CREATE FUNCTION cloudfilm_access_epoch_bump() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {BUMP};
    RETURN NULL;
END $$"""
# One run per statement (a group commit inserts many instances at once); the series rows
# are locked in id order, so two statements never wait on each other in a circle.
PG_STALE_FUNCTION = """
CREATE FUNCTION cloudfilm_series_metadata_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        PERFORM 1 FROM series WHERE id IN (SELECT series_pk FROM new_rows)
            ORDER BY id FOR KEY SHARE;
        DELETE FROM series_metadata WHERE series_pk IN (SELECT series_pk FROM new_rows);
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') THEN
        PERFORM 1 FROM series WHERE id IN (SELECT series_pk FROM old_rows)
            ORDER BY id FOR KEY SHARE;
        DELETE FROM series_metadata WHERE series_pk IN (SELECT series_pk FROM old_rows);
    END IF;
    RETURN NULL;
END $$"""
PG_STALE_TRIGGERS = {"INSERT": "NEW TABLE AS new_rows", "DELETE": "OLD TABLE AS old_rows",
                     "UPDATE": "OLD TABLE AS old_rows NEW TABLE AS new_rows"}
SQLITE_STALE = {"INSERT": ("NEW",), "DELETE": ("OLD",), "UPDATE": ("OLD", "NEW")}


def _name(table: str, event: str) -> str:
    return f"access_epoch_{table}_{event.lower()}"


def _event(event: str, columns: tuple[str, ...] | None) -> str:
    return f"UPDATE OF {', '.join(columns)}" if columns else event


def upgrade() -> None:
    op.create_table(
        "access_epoch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO access_epoch (id, value) VALUES (1, 0)")
    op.create_table(
        "series_metadata",
        sa.Column("series_pk", sa.Integer(), nullable=False),
        sa.Column("base_hash", sa.String(length=64), nullable=False),
        sa.Column("stamp", sa.String(length=32), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("identity", sa.LargeBinary(), nullable=False),
        sa.Column("gzip", sa.LargeBinary(), nullable=False),
        sa.Column("built_at", sa.DateTime(timezone=True),
                  server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.ForeignKeyConstraint(["series_pk"], ["series.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("series_pk", "base_hash"),
    )
    if op.get_bind().dialect.name == "postgresql":
        _postgresql_triggers()
    else:
        _sqlite_triggers()


def _sqlite_triggers() -> None:
    for table, event, columns in EPOCH_TRIGGERS:
        op.execute(f"CREATE TRIGGER {_name(table, event)} AFTER {_event(event, columns)} "
                   f"ON {table} BEGIN {BUMP}; END")
    table, column, when = SHORTENED
    op.execute(f"CREATE TRIGGER access_epoch_{table}_shortened AFTER UPDATE OF {column} "
               f"ON {table} WHEN {when} BEGIN {BUMP}; END")
    for event, rows in SQLITE_STALE.items():
        body = " ".join(f"DELETE FROM series_metadata WHERE series_pk = {row}.series_pk;"
                        for row in rows)
        op.execute(f"CREATE TRIGGER series_metadata_stale_{event.lower()} AFTER {event} "
                   f"ON instances BEGIN {body} END")


def _postgresql_triggers() -> None:
    op.execute(PG_BUMP_FUNCTION)
    for table, event, columns in EPOCH_TRIGGERS:
        op.execute(f"CREATE TRIGGER {_name(table, event)} AFTER {_event(event, columns)} "
                   f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION cloudfilm_access_epoch_bump()")
    table, column, when = SHORTENED
    op.execute(f"CREATE TRIGGER access_epoch_{table}_shortened AFTER UPDATE OF {column} "
               f"ON {table} FOR EACH ROW WHEN ({when}) "
               "EXECUTE FUNCTION cloudfilm_access_epoch_bump()")
    op.execute(PG_STALE_FUNCTION)
    for event, rows in PG_STALE_TRIGGERS.items():
        op.execute(f"CREATE TRIGGER series_metadata_stale_{event.lower()} AFTER {event} "
                   f"ON instances REFERENCING {rows} FOR EACH STATEMENT "
                   "EXECUTE FUNCTION cloudfilm_series_metadata_stale()")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    for table, event, _columns in EPOCH_TRIGGERS:
        op.execute(f"DROP TRIGGER IF EXISTS {_name(table, event)}"
                   + (f" ON {table}" if postgresql else ""))
    table = SHORTENED[0]
    op.execute(f"DROP TRIGGER IF EXISTS access_epoch_{table}_shortened"
               + (f" ON {table}" if postgresql else ""))
    for event in SQLITE_STALE:
        op.execute(f"DROP TRIGGER IF EXISTS series_metadata_stale_{event.lower()}"
                   + (" ON instances" if postgresql else ""))
    if postgresql:
        op.execute("DROP FUNCTION IF EXISTS cloudfilm_series_metadata_stale()")
        op.execute("DROP FUNCTION IF EXISTS cloudfilm_access_epoch_bump()")
    op.drop_table("series_metadata")
    op.drop_table("access_epoch")
