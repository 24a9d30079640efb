"""Single sign-on end to end: a real cloudfilm server against a real OIDC provider.

The provider (tests/oidc_provider.py) runs authlib's authorization server with PKCE and
RS256-signed ID tokens; the test drives the browser's part with httpx: cloudfilm's
/oidc/login, the provider's sign-in form, the callback, and finally /api/me.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from cloudfilm.services.access.accounts import AccountService
from cloudfilm.storage.index.access_models import AuditEventRow, UserRow
from cloudfilm.storage.index.db import Index
from conftest import Server, database_url_for, free_port
from oidc_provider import OidcProvider

PASSWORD = "idp password 123"


@pytest.fixture(scope="module")
def provider() -> Iterator[OidcProvider]:
    idp = OidcProvider(free_port()).start()
    yield idp
    idp.stop()


def sso_env(idp: OidcProvider, link_by_username: bool) -> dict[str, str]:
    return {"CLOUDFILM_OIDC_ISSUER": idp.issuer, "CLOUDFILM_OIDC_CLIENT_ID": "cloudfilm",
            "CLOUDFILM_OIDC_CLIENT_SECRET": idp.client_secret,
            "CLOUDFILM_OIDC_LINK_BY_USERNAME": "true" if link_by_username else "false"}


@pytest.fixture(scope="module")
def sso_server(database_kind: str, provider: OidcProvider,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with single sign-on on, linking by username allowed."""
    data_dir = tmp_path_factory.mktemp(f"sso-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url, extra_env=sso_env(provider, True)).start()
    try:
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


@pytest.fixture(scope="module")
def accounts(sso_server: Server) -> Iterator[AccountService]:
    index = Index(sso_server.database_url)
    yield AccountService(index)
    index.dispose()


def idp_user(provider: OidcProvider, username: str | None = None) -> tuple[str, str]:
    """A provider account: (provider username, subject)."""
    name = username or f"idp-{secrets.token_hex(3)}"
    sub = f"sub-{secrets.token_hex(8)}"
    provider.add_user(name, PASSWORD, sub, name=name.title(), email=f"{name}@example.org")
    return name, sub


def sso_login(server: Server, provider: OidcProvider, username: str,
              client: httpx.Client | None = None) -> httpx.Response:
    """Every hop a browser makes; returns cloudfilm's answer to the provider's redirect."""
    http = client or httpx.Client(timeout=30)
    start = http.get(f"{server.url}/oidc/login", params={"next": "/api/me"})
    assert start.status_code == 302, start.text
    authorize = start.headers["location"]
    assert authorize.startswith(f"{provider.issuer}/authorize?")
    assert "code_challenge=" in authorize and "nonce=" in authorize
    form = http.get(authorize)
    assert form.status_code == 200 and '<label for="u">' in form.text
    fields = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form.text))
    fields = {k: v.replace("&amp;", "&").replace("&quot;", '"') for k, v in fields.items()}
    back = http.post(f"{provider.issuer}/authorize",
                     data=fields | {"username": username, "password": PASSWORD})
    assert back.status_code == 302, back.text
    callback = back.headers["location"]
    assert callback.startswith(f"{server.url}/oidc/callback?") and "code=" in callback
    return http.get(callback)


def test_sign_on_maps_the_subject_to_its_user(sso_server: Server, provider: OidcProvider,
                                              accounts: AccountService) -> None:
    idp_name, sub = idp_user(provider)
    local = f"carol{secrets.token_hex(2)}"
    accounts.add_user(local, "physician", oidc_subject=sub)  # a user without any password
    with httpx.Client(timeout=30) as browser:
        done = sso_login(sso_server, provider, idp_name, browser)
        assert done.status_code == 303 and done.headers["location"] == "/api/me"
        cookie = [c for c in done.headers.get_list("set-cookie") if c.startswith("cf_session=")]
        assert cookie and "httponly" in cookie[0].lower() and "samesite=lax" in cookie[0].lower()
        me = browser.get(f"{sso_server.url}/api/me")
    assert me.status_code == 200
    assert (me.json()["username"], me.json()["role"]) == (local, "physician")
    with accounts.index.session() as session:
        audit = session.scalars(select(AuditEventRow).where(AuditEventRow.actor == local)).all()
    assert [(a.action, a.outcome) for a in audit] == [("login", "success")]
    assert '"oidc"' in audit[0].detail and audit[0].source == "127.0.0.1"


def test_first_sign_on_links_by_username_when_configured(sso_server: Server,
                                                         provider: OidcProvider,
                                                         accounts: AccountService) -> None:
    name = f"dave{secrets.token_hex(2)}"
    accounts.add_user(name, "caregiver", "local password 1")
    _, sub = idp_user(provider, name)
    done = sso_login(sso_server, provider, name)
    assert done.status_code == 303
    user = accounts.get_user(name)
    assert user is not None and user.oidc_subject == sub
    again = sso_login(sso_server, provider, name)  # now by subject
    assert again.status_code == 303


def test_an_identity_without_an_account_is_refused(sso_server: Server, provider: OidcProvider,
                                                   accounts: AccountService) -> None:
    name, sub = idp_user(provider)
    refused = sso_login(sso_server, provider, name)
    assert refused.status_code == 403
    assert "No cloudfilm account is linked to this sign-in" in refused.text
    assert not [c for c in refused.headers.get_list("set-cookie") if c.startswith("cf_session=")]
    with accounts.index.session() as session:
        rows = session.scalars(select(AuditEventRow).where(
            AuditEventRow.actor == f"oidc:{name}")).all()
        assert session.scalars(select(UserRow).where(UserRow.oidc_subject == sub)).first() is None
    assert [(r.action, r.outcome) for r in rows] == [("login-failed", "failure")]


def test_an_id_token_signed_with_an_unknown_key_is_refused(sso_server: Server,
                                                           provider: OidcProvider,
                                                           accounts: AccountService) -> None:
    idp_name, sub = idp_user(provider)
    accounts.add_user(f"erin{secrets.token_hex(2)}", "admin", oidc_subject=sub)
    provider.sign_with_rogue_key = True
    try:
        refused = sso_login(sso_server, provider, idp_name)
    finally:
        provider.sign_with_rogue_key = False
    assert refused.status_code == 400 and "could not be verified" in refused.text
    assert not [c for c in refused.headers.get_list("set-cookie") if c.startswith("cf_session=")]
    assert sso_login(sso_server, provider, idp_name).status_code == 303  # the same, signed right


def test_a_callback_that_did_not_start_here_is_refused(sso_server: Server,
                                                       provider: OidcProvider) -> None:
    with httpx.Client(timeout=30) as browser:
        start = browser.get(f"{sso_server.url}/oidc/login")
        state = dict(p.split("=", 1) for p in urlsplit(start.headers["location"]).query.split("&"))
        browser.cookies.clear()  # another browser: no flow state cookie
        forged = browser.get(f"{sso_server.url}/oidc/callback",
                             params={"code": "made-up", "state": state["state"]})
        assert forged.status_code == 400 and "did not start here" in forged.text
        tampered = browser.get(f"{sso_server.url}/oidc/callback",
                               params={"code": "made-up", "state": state["state"]},
                               headers={"Cookie": f"cf_oidc={start.cookies['cf_oidc'][:-4]}AAAA"})
        assert tampered.status_code == 400 and "did not start here" in tampered.text


def test_linking_by_username_is_off_unless_configured(database_kind: str, provider: OidcProvider,
                                                      tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url, extra_env=sso_env(provider, False))
    index = Index(url)
    try:
        srv.start()
        name = f"frank{secrets.token_hex(2)}"
        AccountService(index).add_user(name, "physician", "local password 1")
        idp_user(provider, name)
        refused = sso_login(srv, provider, name)
        assert refused.status_code == 403
        assert AccountService(index).get_user(name).oidc_subject is None  # type: ignore[union-attr]
    finally:
        index.dispose()
        srv.stop()
        if schema:
            schema.drop()


def test_sign_on_pages_say_when_it_is_not_configured(server: Server) -> None:
    response = httpx.get(f"{server.url}/oidc/login")
    assert response.status_code == 404 and "not configured" in response.text
    assert "/oidc/login" not in httpx.get(f"{server.url}/login").text
