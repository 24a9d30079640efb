"""The login page, session cookies, CSRF, lock-out, logout and their audit records.

Against a real ``cloudfilm serve``. Each test speaks from its own client address
(``X-Forwarded-For``, trusted from loopback as uvicorn does by default), so per-address
failure counters of one test cannot lock another out.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from cloudfilm.services.access import credentials
from cloudfilm.services.access.accounts import AccountService
from cloudfilm.services.audit.log import AuditLog
from cloudfilm.storage.index.access_models import AuditEventRow, RateLimitRow, WebSessionRow
from cloudfilm.storage.index.db import Index
from conftest import Server

PASSWORD = "a long enough passphrase"
SECRETS_SEEN: list[str] = []  # passwords, session ids, CSRF tokens: none may reach the log
_ADDRESSES = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture(scope="module")
def index(server: Server) -> Iterator[Index]:
    idx = Index(server.database_url)
    yield idx
    idx.dispose()


@pytest.fixture
def accounts(index: Index) -> AccountService:
    return AccountService(index)


def new_user(accounts: AccountService, role: str = "physician") -> str:
    name = f"u{secrets.token_hex(4)}"
    accounts.add_user(name, role, PASSWORD)
    return name


def browser(server: Server, address: str | None = None) -> httpx.Client:
    """A cookie-keeping client that appears to come from ``address``."""
    return httpx.Client(base_url=server.url, timeout=30,
                        headers={"X-Forwarded-For": address or next(_ADDRESSES)})


def form_token(client: httpx.Client) -> str:
    page = client.get("/login")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match, page.text
    return match.group(1)


def login(client: httpx.Client, username: str, password: str, **extra: str) -> httpx.Response:
    data = {"username": username, "password": password, "csrf": form_token(client)} | extra
    response = client.post("/login", data=data)
    for cookie in ("cf_session", "cf_csrf"):
        if client.cookies.get(cookie):
            SECRETS_SEEN.append(client.cookies[cookie])
    return response


def set_cookie(response: httpx.Response, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert found, response.headers
    return found[0]


def test_login_page_is_an_accessible_form(server: Server) -> None:
    with browser(server) as client:
        page = client.get("/login")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for needle in ('<html lang="en">', "<main>", "<h1>", '<form method="post" action="/login">',
                   '<label for="username">', 'id="username"', '<label for="password">',
                   'id="password" name="password" type="password"',
                   'autocomplete="current-password"', 'type="hidden" name="csrf"'):
        assert needle in text, needle
    assert "<script" not in text
    cookie = set_cookie(page, "cf_presession").lower()
    assert "httponly" in cookie and "samesite=lax" in cookie


def test_login_sets_an_httponly_samesite_session_cookie(server: Server,
                                                        accounts: AccountService) -> None:
    name = new_user(accounts)
    with browser(server) as client:
        response = login(client, name, PASSWORD)
        assert response.status_code == 303 and response.headers["location"] == "/"
        cookie = set_cookie(response, "cf_session").lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain http on loopback
        me = client.get("/api/me")
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["role"]) == (name, "physician")


def test_cookies_are_secure_behind_an_https_proxy(server: Server,
                                                  accounts: AccountService) -> None:
    name = new_user(accounts)
    https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": next(_ADDRESSES)}
    page = httpx.get(f"{server.url}/login", headers=https)
    presession = set_cookie(page, "cf_presession")
    assert "secure" in presession.lower()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    # httpx, like a browser, keeps Secure cookies off plain http: send it back by hand
    response = httpx.post(f"{server.url}/login",
                          data={"username": name, "password": PASSWORD, "csrf": csrf},
                          headers=https | {"Cookie": presession.split(";")[0]})
    assert response.status_code == 303
    assert "secure" in set_cookie(response, "cf_session").lower()
    assert "secure" in set_cookie(response, "cf_csrf").lower()


def test_a_wrong_password_is_refused_and_counted(server: Server, accounts: AccountService,
                                                 index: Index) -> None:
    name, address = new_user(accounts), next(_ADDRESSES)
    with browser(server, address) as client:
        response = login(client, name, "not the password")
    assert response.status_code == 401
    assert "Wrong username or password." in response.text and 'role="alert"' in response.text
    assert "cf_session" not in response.headers.get("set-cookie", "")
    with index.session() as session:
        for key in (f"login:{name}@{address}", f"login-user:{name}", f"login-ip:{address}"):
            assert session.get(RateLimitRow, key).failures == 1, key  # type: ignore[union-attr]


def test_five_failures_lock_the_account_only_at_that_address(server: Server,
                                                            accounts: AccountService) -> None:
    """Issue 11: a stranger's guesses lock the stranger's address, never the owner's."""
    name, address = new_user(accounts), next(_ADDRESSES)
    with browser(server, address) as client:
        statuses = [login(client, name, "guess").status_code for _ in range(5)]
        last = login(client, name, PASSWORD)  # right password, same address: still locked
    assert statuses == [401, 401, 401, 401, 429]
    assert last.status_code == 429 and "too many failed attempts" in last.text
    assert 800 <= int(last.headers["retry-after"]) <= 900
    assert "cf_session" not in last.headers.get("set-cookie", "")
    with browser(server) as elsewhere:
        assert login(elsewhere, name, PASSWORD).status_code == 303


def test_thirty_failures_from_one_address_lock_that_address(server: Server,
                                                            accounts: AccountService) -> None:
    name, address = new_user(accounts), next(_ADDRESSES)
    with browser(server, address) as client:
        statuses = [login(client, f"nobody{i}", "guess").status_code for i in range(30)]
        blocked = login(client, name, PASSWORD)
    assert statuses == [401] * 30
    assert blocked.status_code == 429 and "too many failed attempts" in blocked.text
    with browser(server) as elsewhere:
        assert login(elsewhere, name, PASSWORD).status_code == 303


def test_only_a_trusted_proxy_may_say_where_a_client_is(tmp_path: Path) -> None:
    """CLOUDFILM_TRUSTED_PROXIES names the balancers: a client that is not one cannot dodge
    its lock-out by sending X-Forwarded-For."""
    data_dir = tmp_path / "data"
    srv = Server(data_dir, f"sqlite:///{data_dir / 'index.sqlite3'}",
                 extra_env={"CLOUDFILM_TRUSTED_PROXIES": "192.0.2.10"}).start()
    try:
        index = Index(srv.database_url)
        name = new_user(AccountService(index))
        with browser(srv) as client:  # loopback, not the trusted balancer
            assert login(client, name, "guess").status_code == 401
        with index.session() as session:
            assert session.get(RateLimitRow, f"login:{name}@127.0.0.1") is not None
        index.dispose()
    finally:
        srv.stop()


def test_the_lockout_message_is_in_chinese_too(server: Server, accounts: AccountService) -> None:
    name = new_user(accounts)
    with browser(server) as client:
        client.headers["Accept-Language"] = "zh-CN"
        statuses = [login(client, name, "guess").status_code for _ in range(5)]
        assert statuses[-1] == 429
        assert "失败次数过多" in login(client, name, PASSWORD).text


def test_logins_and_failed_logins_are_audited(server: Server, accounts: AccountService,
                                              index: Index) -> None:
    name, address = new_user(accounts, "admin"), next(_ADDRESSES)
    with browser(server, address) as client:
        assert login(client, name, "wrong one").status_code == 401
        assert login(client, name, PASSWORD).status_code == 303
    with index.session() as session:
        rows = session.scalars(select(AuditEventRow).where(AuditEventRow.actor == name)
                               .order_by(AuditEventRow.id)).all()
    assert [(r.action, r.outcome, r.source) for r in rows] == [
        ("login-failed", "failure", address), ("login", "success", address)]
    assert rows[1].actor_role == "admin"
    assert all(PASSWORD not in r.detail and "wrong one" not in r.detail for r in rows)
    assert AuditLog(index).verify().intact


def test_login_without_a_valid_form_token_is_refused(server: Server,
                                                     accounts: AccountService) -> None:
    name = new_user(accounts)
    with browser(server) as client:
        client.get("/login")
        missing = client.post("/login", data={"username": name, "password": PASSWORD})
        with browser(server) as other:
            foreign = form_token(other)  # valid, but for another browser's cookie
        forged = client.post("/login", data={"username": name, "password": PASSWORD,
                                             "csrf": foreign})
    for response in (missing, forged):
        assert response.status_code == 403 and "form expired" in response.text
        assert "cf_session" not in response.headers.get("set-cookie", "")


def test_unsafe_cookie_requests_need_the_session_csrf_token(server: Server,
                                                            accounts: AccountService) -> None:
    name = new_user(accounts)
    with browser(server) as client:
        assert login(client, name, PASSWORD).status_code == 303
        missing = client.post("/logout")
        wrong = client.post("/logout", headers={"X-CSRF-Token": credentials.new_token()})
        assert client.get("/api/me").status_code == 200  # neither logged out
        token = client.cookies["cf_csrf"]
        done = client.post("/logout", headers={"X-CSRF-Token": token})
    for response in (missing, wrong):
        assert response.status_code == 403 and "CSRF" in response.json()["error"]
    assert done.status_code == 303 and done.headers["location"] == "/login"


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_the_csrf_token_may_come_as_a_form_field(server: Server, accounts: AccountService,
                                                 encoding: str) -> None:
    name = new_user(accounts)
    with browser(server) as client:
        assert login(client, name, PASSWORD).status_code == 303
        token = client.cookies["cf_csrf"]
        if encoding == "urlencoded":
            done = client.post("/logout", data={"csrf": token, "other": "x"})
        else:
            done = client.post("/logout", files={"csrf": (None, token), "f": ("a.txt", b"x" * 9)})
        assert done.status_code == 303
        assert client.get("/api/me").status_code == 401


def test_bearer_requests_need_no_csrf_token(server: Server, accounts: AccountService) -> None:
    """Even with a session cookie along: the bearer token is what authenticates."""
    name = new_user(accounts)
    token = accounts.issue_token(name)
    SECRETS_SEEN.append(token)
    with browser(server) as client:
        assert login(client, name, PASSWORD).status_code == 303
        assert client.post("/logout").status_code == 403  # cookie alone: CSRF needed
        response = client.post("/logout", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 303


def test_logout_revokes_the_session_and_is_audited(server: Server, accounts: AccountService,
                                                   index: Index) -> None:
    name = new_user(accounts, "caregiver")
    with browser(server) as client:
        assert login(client, name, PASSWORD).status_code == 303
        session_id, csrf = client.cookies["cf_session"], client.cookies["cf_csrf"]
        out = client.post("/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 303
        assert 'cf_session=""' in set_cookie(out, "cf_session")
    replay = httpx.get(f"{server.url}/api/me", cookies={"cf_session": session_id})
    assert replay.status_code == 401
    with index.session() as session:
        row = session.scalars(select(WebSessionRow).where(
            WebSessionRow.session_hash == credentials.token_hash(session_id))).one()
        assert row.revoked_at is not None
        actions = session.scalars(select(AuditEventRow.action).where(
            AuditEventRow.actor == name).order_by(AuditEventRow.id)).all()
    assert actions == ["login", "logout"]


def test_sessions_slide_and_expire(server: Server, accounts: AccountService, index: Index) -> None:
    name = new_user(accounts)
    with browser(server) as client:
        assert login(client, name, PASSWORD).status_code == 303
        session_hash = credentials.token_hash(client.cookies["cf_session"])

        def set_expiry(delta: timedelta) -> None:
            with index.write_session() as session:
                session.execute(update(WebSessionRow).where(
                    WebSessionRow.session_hash == session_hash)
                    .values(expires_at=datetime.now(UTC) + delta))
                session.commit()

        set_expiry(timedelta(minutes=5))
        assert client.get("/api/me").status_code == 200

        def ends_in() -> timedelta:
            with index.session() as session:
                row = session.scalars(select(WebSessionRow).where(
                    WebSessionRow.session_hash == session_hash)).one()
                expires = row.expires_at.replace(tzinfo=row.expires_at.tzinfo or UTC)
            return expires - datetime.now(UTC)

        deadline = time.monotonic() + 10  # written off the request path (issue 14)
        while ends_in() <= timedelta(hours=11, minutes=50) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ends_in() > timedelta(hours=11, minutes=50)
        set_expiry(timedelta(seconds=-1))
        assert client.get("/api/me").status_code == 401


@pytest.mark.parametrize("target,expected", [("/api/me", "/api/me"), ("//evil.example/x", "/"),
                                             ("https://evil.example/", "/"), ("/\\evil", "/")])
def test_login_redirects_only_to_local_paths(server: Server, accounts: AccountService,
                                             target: str, expected: str) -> None:
    name = new_user(accounts)
    with browser(server) as client:
        response = login(client, name, PASSWORD, next=target)
    assert response.status_code == 303 and response.headers["location"] == expected


def test_secrets_never_reach_the_server_log(server: Server) -> None:
    """Last in this module: no password, session id, CSRF or bearer token was logged."""
    assert server.log_path is not None and server.log_path.exists()
    assert len(SECRETS_SEEN) >= 10
    log = server.log_path.read_text(errors="replace")
    assert PASSWORD not in log
    assert [s for s in SECRETS_SEEN if s in log] == []
