"""Accounts: ``cloudfilm user``/``token`` commands, bearer tokens on the API, principals.

Runs against a real ``cloudfilm serve`` (SQLite and PostgreSQL); the CLI is run as a user
would, and the index is inspected directly where the interface hides things on purpose
(hashes, timestamps).
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from cloudfilm.cli import build_parser
from cloudfilm.config import Settings
from cloudfilm.domain.access import Role
from cloudfilm.services.access import credentials
from cloudfilm.services.access.accounts import (
    AccountError,
    AccountService,
    LoginFailed,
    ensure_demo_users,
    parse_duration,
)
from cloudfilm.services.context import Archive
from cloudfilm.storage.index.access_models import (
    ApiTokenRow,
    CaregiverRow,
    GrantRow,
    PersonRow,
    UserRow,
)
from cloudfilm.storage.index.db import Index
from conftest import Server, database_url_for, run_cli

TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
ISSUED: list[str] = []  # every token this module saw, for the server-log check at the end
PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def index(server: Server) -> Iterator[Index]:
    idx = Index(server.database_url)
    yield idx
    idx.dispose()


def cli(server: Server, *args: str, stdin: str | None = None) -> CompletedCli:
    result = run_cli([*args, "--data", str(server.data_dir)], server.database_url, input=stdin)
    return CompletedCli(result.returncode, result.stdout, result.stderr)


class CompletedCli:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err


def add_user(server: Server, name: str, role: str, *extra: str) -> None:
    """Through the CLI, as an operator would."""
    result = cli(server, "user", "add", name, "--role", role, "--password-stdin", *extra,
                 stdin=PASSWORD + "\n")
    assert result.code == 0, result.err


def issue(server: Server, name: str, *extra: str) -> str:
    result = cli(server, "token", "issue", name, *extra)
    assert result.code == 0, result.err
    token = result.out.strip()
    ISSUED.append(token)
    return token


def quick_user(index: Index, name: str, role: str) -> str:
    """Through the service: each CLI run costs seconds of imports, so set-up skips it."""
    AccountService(index).add_user(name, role, PASSWORD)
    return name


def quick_token(index: Index, name: str, expires: timedelta | None = timedelta(days=1)) -> str:
    token = AccountService(index).issue_token(name, expires)
    ISSUED.append(token)
    return token


def me(server: Server, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/api/me", headers={"Authorization": f"Bearer {token}"})


def test_user_add_creates_a_linked_person_for_a_patient_and_lists_users(
        server: Server, index: Index) -> None:
    add_user(server, "Pat", "patient", "--display-name", "Pat Example",
             "--email", "pat@example.org")
    add_user(server, "doc", "physician")
    listing = cli(server, "user", "list")
    assert listing.code == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in listing.out.splitlines()[1:]}
    assert rows["pat"][1] == "patient"
    assert rows["pat"][4:] == ["Pat Example", "pat@example.org"]
    assert rows["doc"][1:3] == ["physician", "-"]
    with index.session() as session:
        user = session.scalars(select(UserRow).where(UserRow.username == "pat")).one()
        person = session.get(PersonRow, user.person_id)
        assert person is not None and person.display_name == "Pat Example"
        assert user.password_hash and user.password_hash.startswith("$argon2id$")
        assert PASSWORD not in user.password_hash
    assert rows["pat"][2] == str(user.person_id)


def test_user_add_refuses_duplicates_short_passwords_and_unknown_roles(
        server: Server, index: Index) -> None:
    quick_user(index, "dup", "caregiver")
    again = cli(server, "user", "add", "DUP", "--role", "admin", "--password-stdin",
                stdin=PASSWORD + "\n")
    assert again.code == 1 and "exists" in again.err
    with pytest.raises(AccountError, match="too short"):
        AccountService(index).add_user("shorty", "admin", "abc")
    with pytest.raises(AccountError, match="invalid username"):
        AccountService(index).add_user("has space", "admin", PASSWORD)
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["user", "add", "x", "--role", "wizard"])
    assert exit_.value.code == 2


def test_token_issue_prints_only_a_token_that_authenticates_api_calls(
        server: Server, index: Index) -> None:
    quick_user(index, "tina", "patient")
    token = issue(server, "tina", "--expires-in", "1d")
    assert TOKEN.match(token)
    answer = me(server, token)
    assert answer.status_code == 200
    body = answer.json()
    assert (body["username"], body["role"]) == ("tina", "patient")
    assert isinstance(body["person_id"], int)
    anonymous = httpx.get(f"{server.url}/api/me")
    assert anonymous.status_code == 401 and "authentication required" in anonymous.json()["error"]
    forged = me(server, token[:-2] + ("AA" if not token.endswith("AA") else "BB"))
    assert forged.status_code == 401 and forged.json()["error"].startswith("invalid")


def test_token_is_stored_only_as_its_hash_and_last_use_is_throttled(
        server: Server, index: Index) -> None:
    quick_user(index, "hashy", "physician")
    token = quick_token(index, "hashy")
    with index.session() as session:
        row = session.scalars(select(ApiTokenRow).where(
            ApiTokenRow.token_hash == credentials.token_hash(token))).one()
        assert row.last_used_at is None and row.expires_at is not None
    assert me(server, token).status_code == 200

    def last_used() -> datetime | None:
        with index.session() as session:
            return session.get(ApiTokenRow, row.id).last_used_at  # type: ignore[union-attr]

    deadline = time.monotonic() + 10  # written off the request path (issue 14)
    while (first := last_used()) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first is not None
    assert me(server, token).status_code == 200
    time.sleep(2)  # longer than the background writer's flush
    assert last_used() == first  # written at most once a minute
    listing = cli(server, "token", "list", "hashy")
    assert token not in listing.out and f"{row.id}\t" in listing.out and "live" in listing.out


def test_expired_tokens_are_rejected(server: Server, index: Index) -> None:
    quick_user(index, "old", "caregiver")
    token = quick_token(index, "old", timedelta(minutes=30))
    assert me(server, token).status_code == 200
    with index.write_session() as session:
        session.execute(update(ApiTokenRow).where(
            ApiTokenRow.token_hash == credentials.token_hash(token))
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
        session.commit()
    answer = me(server, token)
    assert answer.status_code == 401
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]


@pytest.mark.parametrize("how", ["argument", "stdin", "id"])
def test_revoked_tokens_are_rejected(server: Server, index: Index, how: str) -> None:
    name = quick_user(index, f"rev-{how}", "admin")
    token, other = quick_token(index, name), quick_token(index, name)
    assert me(server, token).status_code == 200
    if how == "argument":
        result = cli(server, "token", "revoke", token)
    elif how == "stdin":
        result = cli(server, "token", "revoke", "--stdin", stdin=token + "\n")
    else:
        token_id = AccountService(index).list_tokens(name)[0].id  # oldest first
        result = cli(server, "token", "revoke", str(token_id))
    assert result.code == 0 and f"of {name}" in result.out
    assert me(server, token).status_code == 401
    assert me(server, other).status_code == 200  # only that one
    states = [t.revoked_at is not None for t in AccountService(index).list_tokens(name)]
    assert states == [True, False]


def test_revoking_an_unknown_token_fails(server: Server) -> None:
    unknown = cli(server, "token", "revoke", credentials.new_token())
    assert unknown.code == 1 and "no such token" in unknown.err


def test_durations() -> None:
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration("1d") == timedelta(days=1)
    assert parse_duration("90d") == timedelta(days=90)
    assert parse_duration("never") is None
    for bad in ("", "5", "1y", "0d", "-1d", "d"):
        with pytest.raises(AccountError):
            parse_duration(bad)


def test_token_issue_for_unknown_user_fails_without_printing_a_token(server: Server) -> None:
    result = cli(server, "token", "issue", "nobody-here")
    assert result.code == 1 and result.out == "" and "no user named" in result.err


def test_principals_for_caregivers_patients_and_share_sessions(index: Index) -> None:
    accounts = AccountService(index)
    suffix = secrets.token_hex(3)
    patient = accounts.add_user(f"p-{suffix}", Role.PATIENT, PASSWORD)
    other = accounts.add_user(f"q-{suffix}", Role.PATIENT, PASSWORD)
    carer = accounts.add_user(f"c-{suffix}", Role.CAREGIVER, PASSWORD)
    with index.write_session() as session:
        session.add(CaregiverRow(person_id=patient.person_id, caregiver_user_id=carer.id,
                                 status="active"))
        session.add(CaregiverRow(person_id=other.person_id, caregiver_user_id=carer.id,
                                 status="invited"))
        grant = GrantRow(owner_user_id=patient.id, person_id=patient.person_id, audience="link")
        session.add(grant)
        session.commit()
    who = accounts.principal_for_token(accounts.issue_token(carer.username))
    assert who is not None and who.acting_for == frozenset({patient.person_id})
    assert who.own_person_id is None and who.role is Role.CAREGIVER
    own = accounts.principal_for_token(accounts.issue_token(patient.username))
    assert own is not None and own.own_person_id == patient.person_id and not own.acting_for
    session_id, csrf = accounts.create_session(grant_id=grant.id, source="203.0.113.9")
    shared = accounts.principal_for_session(session_id)
    assert shared is not None and (shared.kind, shared.share_grant_id) == ("share", grant.id)
    assert accounts.principal_for_session(csrf) is None  # the CSRF token is not a session id
    with index.write_session() as session:
        session.execute(update(GrantRow).where(GrantRow.id == grant.id)
                        .values(revoked_at=datetime.now(UTC)))
        session.commit()
    assert accounts.principal_for_session(session_id) is None


def test_authenticate_and_disabled_users(index: Index) -> None:
    accounts = AccountService(index)
    name = f"d-{secrets.token_hex(3)}"
    user = accounts.add_user(name, "physician", PASSWORD)
    assert accounts.authenticate(name.upper(), PASSWORD, "198.51.100.20").id == user.id
    token = accounts.issue_token(name)
    with index.write_session() as session:
        session.execute(update(UserRow).where(UserRow.id == user.id).values(disabled=True))
        session.commit()
    with pytest.raises(LoginFailed):
        accounts.authenticate(name, PASSWORD, "198.51.100.20")
    assert accounts.principal_for_token(token) is None


@pytest.fixture
def demo_archive(database_kind: str, tmp_path: Path) -> Iterator[Archive]:
    data = tmp_path / "data"
    url, schema = database_url_for(database_kind, data)
    archive = Archive.open(Settings(data_dir=data, database_url=url), recover=False)
    try:
        yield archive
    finally:
        archive.close()
        if schema:
            schema.drop()


def test_demo_users_are_created_once_with_working_random_passwords(demo_archive: Archive) -> None:
    first = ensure_demo_users(demo_archive)
    assert {role for _, role, _ in first} == {Role.PATIENT, Role.CAREGIVER, Role.PHYSICIAN,
                                               Role.ADMIN}
    again = ensure_demo_users(demo_archive)
    assert again == first
    accounts = AccountService(demo_archive.index)
    assert len(accounts.list_users()) == 4
    for username, role, password in first:
        assert len(password) >= 12
        assert accounts.authenticate(username, password, "").role is role
    passwords = {p for _, _, p in first}
    assert len(passwords) == 4
    patient = accounts.get_user("demo-patient")
    assert patient is not None and patient.person_id is not None
    carer = accounts.principal_for_token(accounts.issue_token("demo-caregiver"))
    assert carer is not None and carer.acting_for == frozenset({patient.person_id})
    stat = (demo_archive.settings.data_dir / "demo-logins.json").stat()
    assert stat.st_mode & 0o077 == 0


def test_tokens_never_appear_in_the_server_log(server: Server) -> None:
    """Last in this module: every token used above must be absent from the log."""
    assert server.log_path is not None and server.log_path.exists()
    assert len(ISSUED) >= 8
    log = server.log_path.read_text(errors="replace")
    leaked = [t for t in ISSUED if t in log or t[:16] in log]
    assert leaked == []
