"""The read path after issue 14, against the real server (SQLite and PostgreSQL).

Frames and metadata are answered from per-process memory (credentials, study decisions,
stored series metadata) that one read of the index validates at every request, and views
are audited through a journal instead of a write. These tests show that nothing is
traded for it: stored metadata follows every change to its series, gzip and identity
answers agree, whatever narrows access (a revoked share or token, a disabled user, an
expired token) is refused at the next request even after a run of cached ones and when
another process made the change, and a view is recorded exactly once even when the
server is killed before it could write it.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select, text, update

from cloudfilm.services.access import credentials
from cloudfilm.services.access.accounts import AccountService
from cloudfilm.services.archive.retention import Retention
from cloudfilm.services.audit.log import CHAIN_LOCK
from cloudfilm.storage.index.access_models import ApiTokenRow, AuditEventRow, GrantRow, UserRow
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import SeriesRow
from cloudfilm.storage.index.read_models import SeriesMetadataRow
from conftest import POSTGRES_URL, Server, run_cli
from factory import make_instance, stow, to_bytes
from test_people import HOSPITAL_A, Account, link, make_account, store_study, unique
from test_sharing import open_link, share

FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
CACHED_RUN = 5  # requests answered from memory before the change


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value


def scalar(server: Server, statement: Any) -> Any:
    index = Index(server.database_url)
    try:
        with index.session() as session:
            return session.scalar(statement)
    finally:
        index.dispose()


def write(server: Server, statement: Any) -> None:
    """A change made by another process than the server (another node, a console)."""
    index = Index(server.database_url)
    try:
        with index.write_session() as session:
            session.execute(statement)
            session.commit()
    finally:
        index.dispose()


def stored_rows(server: Server, series: str) -> int:
    return int(scalar(server, select(func.count()).select_from(SeriesMetadataRow).join(
        SeriesRow, SeriesMetadataRow.series_pk == SeriesRow.id).where(
        SeriesRow.series_uid == series)) or 0)


# -- series metadata --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deletable(server: Server) -> Server:
    index = Index(server.database_url)
    try:
        Retention(index).set_policy("*", 0)  # the default keeps everything: allow deletion
    finally:
        index.dispose()
    return server


def _series(study: str, series: str, count: int) -> list[Any]:
    return [make_instance(study=study, series=series, instance_number=n, rows=8, columns=8, seed=n)
            for n in range(1, count + 1)]


def _sops(http: httpx.Client, study: str, series: str) -> list[str]:
    answer = http.get(f"/studies/{study}/series/{series}/metadata")
    assert answer.status_code == 200, answer.text
    return [item["00080018"]["Value"][0] for item in answer.json()]


def test_stored_metadata_follows_an_added_and_a_deleted_instance(deletable: Server) -> None:
    study, series = generate_uid(), generate_uid()
    first, second, third = _series(study, series, 3)
    with httpx.Client(base_url=deletable.dicomweb, headers=deletable.auth, timeout=60) as http:
        assert stow(http, [to_bytes(first), to_bytes(second)]).status_code == 200
        assert _sops(http, study, series) == [first.SOPInstanceUID, second.SOPInstanceUID]
        wait_until(lambda: stored_rows(deletable, series) == 1, "the metadata to be stored")
        assert _sops(http, study, series) == [first.SOPInstanceUID, second.SOPInstanceUID]

        assert stow(http, [to_bytes(third)]).status_code == 200
        assert stored_rows(deletable, series) == 0  # gone with the transaction that added one
        expected = [first.SOPInstanceUID, second.SOPInstanceUID, third.SOPInstanceUID]
        assert _sops(http, study, series) == expected
        wait_until(lambda: stored_rows(deletable, series) == 1, "the metadata to be stored again")
        assert _sops(http, study, series) == expected

        deleted = http.delete(f"/studies/{study}/series/{series}/instances/{second.SOPInstanceUID}")
        assert deleted.status_code == 200, deleted.text
        assert stored_rows(deletable, series) == 0
        assert _sops(http, study, series) == [first.SOPInstanceUID, third.SOPInstanceUID]
        wait_until(lambda: stored_rows(deletable, series) == 1, "the metadata to be stored again")
        assert _sops(http, study, series) == [first.SOPInstanceUID, third.SOPInstanceUID]

        assert http.delete(f"/studies/{study}").status_code == 200
        assert http.get(f"/studies/{study}/series/{series}/metadata").status_code == 404


def test_gzip_and_identity_metadata_are_the_same_json(server: Server) -> None:
    study, series = generate_uid(), generate_uid()
    url = f"/studies/{study}/series/{series}/metadata"
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
        assert stow(http, [to_bytes(ds) for ds in _series(study, series, 12)]).status_code == 200
        answers = {"built": _both_encodings(server, url)}
        wait_until(lambda: stored_rows(server, series) == 1, "the metadata to be stored")
        answers["stored"] = _both_encodings(server, url)
    for packed, plain in answers.values():
        assert packed == plain and len(plain) == 12
    assert answers["built"] == answers["stored"]
    item = answers["stored"][1][0]
    assert item["7FE00010"]["BulkDataURI"].startswith(f"{server.dicomweb}/studies/{study}/")


def _both_encodings(server: Server, url: str) -> tuple[Any, Any]:
    """The same request with and without ``Accept-Encoding: gzip``, read as sent."""
    decoded = []
    for encoding in ("gzip", "identity"):
        with httpx.stream("GET", server.dicomweb + url, timeout=60, headers={
                **server.auth, "Accept": "application/dicom+json",
                "Accept-Encoding": encoding}) as answer:
            raw = b"".join(answer.iter_raw())
            assert answer.status_code == 200
            assert answer.headers.get("content-encoding", "identity") == encoding
            assert answer.headers["vary"] == "Accept-Encoding"
        decoded.append(json.loads(gzip.decompress(raw) if encoding == "gzip" else raw))
    return decoded[0], decoded[1]


# -- access narrowed at the next request --------------------------------------------------------


@pytest.fixture(scope="module")
def operator(server: Server) -> Iterator[Account]:
    account = make_account(server, "operator")
    yield account
    account.http.close()


def _frame_url(server: Server, operator: Account) -> tuple[str, str]:
    """A new hospital record (PatientID) with one study: the record, and its first frame's
    URL."""
    pid = unique("RP")
    study = store_study(server, operator, HOSPITAL_A, pid)
    found = operator.http.get(f"/dicomweb/studies/{study}/metadata")
    assert found.status_code == 200, found.text
    first = found.json()[0]
    series, sop = first["0020000E"]["Value"][0], first["00080018"]["Value"][0]
    return pid, f"/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/1"


def _cached_run(client: httpx.Client, url: str) -> None:
    for _ in range(CACHED_RUN):
        answer = client.get(url, headers={"Accept": FRAMES})
        assert answer.status_code == 200, answer.text


def test_a_revoked_share_is_refused_at_the_next_frame_request(server: Server,
                                                              operator: Account) -> None:
    patient = make_account(server, "patient")
    pid, url = _frame_url(server, operator)
    assert link(operator, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    study = url.split("/")[3]
    for how in ("the owner's request", "another process"):
        created = share(patient, {"scope": {"studies": [study]}})
        with httpx.Client(base_url=server.url, timeout=60) as browser:
            assert open_link(browser, created["url"]).status_code == 303
            _cached_run(browser, url)
            if how == "the owner's request":
                assert patient.http.delete(f"/api/shares/{created['id']}").status_code == 204
            else:
                write(server, update(GrantRow).where(GrantRow.id == created["id"])
                      .values(revoked_at=func.now()))
            refused = browser.get(url, headers={"Accept": FRAMES})
            assert refused.status_code in (401, 404), (how, refused.status_code)


def test_a_disabled_user_is_refused_at_the_next_frame_request(server: Server,
                                                              operator: Account) -> None:
    _pid, url = _frame_url(server, operator)
    reader = make_account(server, "operator")
    _cached_run(reader.http, url)
    write(server, update(UserRow).where(UserRow.username == reader.name).values(disabled=True))
    assert reader.http.get(url, headers={"Accept": FRAMES}).status_code == 401


def test_a_token_revoked_by_the_cli_is_refused_at_the_next_frame_request(
        server: Server, operator: Account) -> None:
    _pid, url = _frame_url(server, operator)
    reader = make_account(server, "operator")
    _cached_run(reader.http, url)
    token = reader.http.headers["authorization"].split(" ", 1)[1]
    revoked = run_cli(["token", "revoke", token], server.database_url)
    assert revoked.returncode == 0, revoked.stderr
    assert reader.http.get(url, headers={"Accept": FRAMES}).status_code == 401


def test_an_expired_token_is_refused_at_its_first_request_after_the_end(
        server: Server, operator: Account) -> None:
    _pid, url = _frame_url(server, operator)
    name = unique("expiring")
    index = Index(server.database_url)
    try:
        accounts = AccountService(index)
        accounts.add_user(name, "operator")
        token = accounts.issue_token(name, expires_in=timedelta(seconds=3), label="short")
    finally:
        index.dispose()
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as reader:
        started = time.monotonic()
        _cached_run(reader, url)
        time.sleep(max(0.0, 3.5 - (time.monotonic() - started)))
        assert reader.get(url, headers={"Accept": FRAMES}).status_code == 401


# -- views and searches: audited without a write on the request path, and never lost ----------------


def _views(server: Server, study: str, actor: str) -> int:
    return int(scalar(server, select(func.count()).select_from(AuditEventRow).where(
        AuditEventRow.action == "view", AuditEventRow.study_uid == study,
        AuditEventRow.actor == actor)) or 0)


def _searches(server: Server, actor: str, study: str) -> int:
    """``query`` records of ``actor`` whose recorded query names ``study``."""
    return int(scalar(server, select(func.count()).select_from(AuditEventRow).where(
        AuditEventRow.action == "query", AuditEventRow.actor == actor,
        AuditEventRow.detail.contains(study))) or 0)


class _ChainHeld:
    """Holds what an audit append needs (SQLite's write lock; PostgreSQL's chain lock)."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.release: Callable[[], None] = lambda: None

    def __enter__(self) -> _ChainHeld:
        if self.server.database_url.startswith("sqlite"):
            path = self.server.database_url.removeprefix("sqlite:///")
            connection = sqlite3.connect(path, isolation_level=None)
            connection.execute("BEGIN IMMEDIATE")
            self.release = connection.close  # the open transaction is rolled back
        else:
            schema = self.server.database_url.split("search_path%3D", 1)[1]
            connection_pg = psycopg.connect(POSTGRES_URL, autocommit=True,
                                            options=f"-csearch_path={schema}")
            connection_pg.execute("SELECT pg_advisory_lock(%s)", (CHAIN_LOCK,))
            self.release = connection_pg.close  # the session's advisory lock goes with it
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def test_a_view_is_answered_without_an_index_write_and_survives_kill_9(
        fresh_server: Server) -> None:
    """With the audit chain locked by another process, a frame request and a QIDO search
    are answered at once; the server is killed before it could append their records; after
    a restart each is in the chain exactly once."""
    server = fresh_server.start()
    study, series = generate_uid(), generate_uid()
    ds = make_instance(study=study, series=series, rows=8, columns=8)
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
        assert stow(http, [to_bytes(ds)]).status_code == 200
    url = f"/studies/{study}/series/{series}/instances/{ds.SOPInstanceUID}/frames/1"
    reader = make_account(server, "operator")
    with _ChainHeld(server), httpx.Client(base_url=server.dicomweb, timeout=30,
                                          headers=reader.http.headers) as http:
        assert http.get(url, headers={"Accept": FRAMES}).status_code == 200
        found = http.get("/studies", params={"StudyInstanceUID": study},
                         headers={"Accept": "application/dicom+json"})
        assert found.status_code == 200 and len(found.json()) == 1
        server.kill()
    assert _views(server, study, reader.name) == 0
    assert _searches(server, reader.name, study) == 0
    journal = list((server.data_dir / "audit-views").glob("*.jsonl"))
    assert study in "".join(path.read_text() for path in journal)
    server.start()
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
        assert http.get(url, headers={"Accept": FRAMES}).status_code == 200  # starts the writer
    wait_until(lambda: _views(server, study, reader.name) == 1, "the journal's view")
    wait_until(lambda: _searches(server, reader.name, study) == 1, "the journal's search")
    wait_until(lambda: _views(server, study, "test-admin") == 1, "the admin's view")
    wait_until(lambda: not list((server.data_dir / "audit-views").glob("*.jsonl")),
               "the journal files to be removed once appended")
    verified = run_cli(["audit", "verify", "--data", str(server.data_dir)], server.database_url)
    assert verified.returncode == 0, verified.stdout + verified.stderr


# -- the index's side -------------------------------------------------------------------------------


def test_the_read_path_triggers_are_installed(server: Server) -> None:
    """Every cache above trusts these triggers; a later migration that rebuilds one of
    their tables (SQLite batch mode) must create them again, or this fails."""
    path = (Path(__file__).resolve().parent.parent / "src" / "cloudfilm" / "storage" / "index"
            / "migrations" / "versions" / "0013_read_path.py")
    spec = importlib.util.spec_from_file_location("read_path_migration", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    expected = {migration._name(table, event) for table, event, _ in migration.EPOCH_TRIGGERS}
    expected.add(f"access_epoch_{migration.SHORTENED[0]}_shortened")
    expected |= {f"series_metadata_stale_{event.lower()}" for event in migration.SQLITE_STALE}
    sqlite = server.database_url.startswith("sqlite")
    query = ("SELECT name FROM sqlite_master WHERE type = 'trigger'" if sqlite else
             "SELECT tgname FROM pg_trigger JOIN pg_class ON pg_class.oid = tgrelid "
             "JOIN pg_namespace ON pg_namespace.oid = relnamespace "
             "WHERE NOT tgisinternal AND nspname = current_schema()")
    index = Index(server.database_url)
    try:
        with index.session() as session:
            installed = set(session.scalars(text(query)))
    finally:
        index.dispose()
    assert expected <= installed, expected - installed


def test_uses_are_recorded_off_the_request_path(server: Server) -> None:
    """A token's last use and a session's sliding end are still written (once a minute at
    most), by a background writer within a few seconds instead of during the request."""
    name = unique("user")
    index = Index(server.database_url)
    try:
        accounts = AccountService(index)
        accounts.add_user(name, "operator")
        token = accounts.issue_token(name, expires_in=None, label="uses")
    finally:
        index.dispose()
    digest = credentials.token_hash(token)
    used = select(ApiTokenRow.last_used_at).where(ApiTokenRow.token_hash == digest)
    assert scalar(server, used) is None
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        assert http.get("/api/me").status_code == 200
    wait_until(lambda: scalar(server, used) is not None, "the token's last use")
