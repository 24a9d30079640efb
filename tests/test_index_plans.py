"""Query plans that must not depend on PostgreSQL's statistics (issue 14, the scale curve).

At 867,500 instances a one-month QIDO took 81 ms at the median and 753 ms at p95: the page's
counts were a join grouped over ``instances``, and for some pages PostgreSQL chose to hash
the whole table. And ``PatientName=DOE*`` scanned every patient, because a plain b-tree
serves ``LIKE`` only under the C collation. These tests read the plans PostgreSQL makes for
the real statements (captured as SQLAlchemy sends them), on an empty schema with sequential
scans priced out, so they show what the planner *can* do whatever the statistics say.
SQLite has no hash join and no such collation rule, so these are PostgreSQL tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import event, text
from tests.conftest import PostgresSchema

from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import parse_query
from cloudfilm.storage.index import queries
from cloudfilm.storage.index.db import Index


@pytest.fixture
def index() -> Iterator[Index]:
    schema = PostgresSchema().create()
    index = Index(schema.url)
    try:
        index.migrate()
        yield index
    finally:
        index.dispose()
        schema.drop()


def plans(index: Index, run: Any) -> list[str]:
    """EXPLAIN of every statement ``run(session)`` sends, with its own parameters."""
    sent: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            sent.append((statement, parameters))

    with index.session() as session:
        event.listen(index.engine, "before_cursor_execute", capture)
        try:
            run(session)
        finally:
            event.remove(index.engine, "before_cursor_execute", capture)
        session.execute(text("SET LOCAL enable_seqscan = off"))
        found = []
        for statement, parameters in sent:
            cursor = session.connection().connection.cursor()
            cursor.execute("EXPLAIN " + statement, parameters)
            found.append("\n".join(row[0] for row in cursor.fetchall()))
        return found


def test_a_page_of_study_counts_is_one_index_lookup_per_series(index: Index) -> None:
    [plan] = plans(index, lambda session: queries.study_counts(session, list(range(1, 101))))
    assert "SubPlan" in plan, plan
    assert "ix_instances_series_pk" in plan, plan
    assert "Hash Join" not in plan, plan


def test_patient_and_series_counts_are_index_lookups_too(index: Index) -> None:
    [patients] = plans(index, lambda session: queries.patient_counts(session, [1, 2, 3]))
    [series] = plans(index, lambda session: queries.series_counts(session, [1, 2, 3]))
    for plan in (patients, series):
        assert "SubPlan" in plan and "ix_instances_series_pk" in plan, plan
        assert "Hash Join" not in plan, plan


def test_a_patient_name_prefix_can_use_an_index(index: Index) -> None:
    query = parse_query([("PatientName", "DOE*"), ("limit", "100")], Level.STUDY)
    [plan] = plans(index, lambda session: queries.find_studies(session, query, limit=100))
    for column in ("name_alphabetic", "name_ideographic", "name_phonetic"):
        assert f"ix_patients_{column}_prefix" in plan, plan
