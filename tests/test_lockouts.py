"""Lock-outs that hold under concurrency, and that a stranger cannot turn on the owner
(issue 11, finding 3 and "anyone can lock an account from any address").

Against a real ``cloudfilm serve`` on SQLite and PostgreSQL. Parallel tries are real
requests from 40 threads released together by a barrier. Each client speaks from its
own loopback address (127.0.0.N, bound with httpx's ``local_address``), so the server
sees genuinely different peers, with no forwarded headers involved.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import select

from cloudfilm.services.access.accounts import AccountService
from cloudfilm.storage.index.access_models import AuditEventRow
from cloudfilm.storage.index.db import Index
from conftest import Server
from test_people import make_account

PASSWORD = "a long enough passphrase"
PIN = "246813"
PARALLEL = 40
RIGHT_AT = 35  # the right secret is the 36th try
_ADDRESSES = (f"127.0.{n // 250}.{n % 250 + 2}" for n in itertools.count(10))


@pytest.fixture(scope="module")
def index(server: Server) -> Iterator[Index]:
    idx = Index(server.database_url)
    yield idx
    idx.dispose()


def from_address(server: Server, address: str | None = None) -> httpx.Client:
    """A cookie-keeping client whose TCP connections come from ``address``."""
    transport = httpx.HTTPTransport(local_address=address or next(_ADDRESSES))
    return httpx.Client(base_url=server.url, timeout=120, transport=transport)


def login_form(client: httpx.Client) -> str:
    page = client.get("/login")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and match, page.text
    return match.group(1)


def login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post("/login", data={"username": username, "password": password,
                                       "csrf": login_form(client)})


def all_at_once(tries: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run every try in its own thread, released together."""
    barrier = threading.Barrier(len(tries))

    def run(attempt: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return attempt()

    with ThreadPoolExecutor(len(tries)) as pool:
        return list(pool.map(run, tries))


def in_two_waves(tries: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """The first RIGHT_AT tries all at once, then the rest (the right one first) all at once.

    The right secret comes 36th, as in the finding, and never by luck among the first
    five tries a correct limiter lets through.
    """
    return all_at_once(tries[:RIGHT_AT]) + all_at_once(tries[RIGHT_AT:])


def audit_details(index: Index, action: str, actor: str) -> list[dict[str, object]]:
    with index.session() as session:
        rows = session.scalars(select(AuditEventRow.detail).where(
            AuditEventRow.action == action, AuditEventRow.actor == actor)).all()
    return [json.loads(d) for d in rows]


def new_user(index: Index, role: str = "patient") -> str:
    name = f"lock{secrets.token_hex(4)}"
    AccountService(index).add_user(name, role, PASSWORD)
    return name


# -- share-link PINs -------------------------------------------------------------------------


def test_forty_parallel_pin_guesses_evaluate_at_most_five(server: Server, index: Index) -> None:
    patient = make_account(server, "patient")
    share = patient.http.post("/api/shares", json={
        "scope": {"patient": patient.person_id}, "audience": "link+pin", "pin": PIN})
    assert share.status_code == 201, share.text
    path = httpx.URL(share.json()["url"]).path
    pins = [f"{n:06d}" for n in range(PARALLEL)]
    pins[RIGHT_AT] = PIN
    clients = [from_address(server) for _ in pins]

    def guess(client: httpx.Client, pin: str) -> Callable[[], httpx.Response]:
        return lambda: client.post(path, data={"pin": pin})

    tries = [guess(c, p) for c, p in zip(clients, pins, strict=True)]
    try:
        answers = in_two_waves(tries)
    finally:
        for client in clients:
            client.close()
    assert [a.status_code for a in answers if a.status_code not in (403, 429)] == []
    assert all("cf_session" not in a.headers.get("set-cookie", "") for a in answers)
    wrong = [d for d in audit_details(index, "share-open", f"share-link:{share.json()['id']}")
             if d.get("reason") == "wrong PIN"]
    assert 1 <= len(wrong) <= 5
    with from_address(server) as late:
        locked = late.post(path, data={"pin": PIN})  # the right PIN, after the lock
    assert locked.status_code == 429 and "cf_session" not in locked.headers.get("set-cookie", "")


# -- passwords -------------------------------------------------------------------------------


def test_forty_parallel_password_guesses_from_one_address_evaluate_at_most_five(
        server: Server, index: Index) -> None:
    name, address = new_user(index), next(_ADDRESSES)
    passwords = [f"guess number {n}" for n in range(PARALLEL)]
    passwords[RIGHT_AT] = PASSWORD
    clients = [from_address(server, address) for _ in passwords]
    try:
        forms = [login_form(c) for c in clients]

        def attempt(client: httpx.Client, password: str, csrf: str) -> Callable[[], httpx.Response]:
            return lambda: client.post("/login", data={"username": name, "password": password,
                                                       "csrf": csrf})

        answers = in_two_waves([attempt(c, p, f) for c, p, f in zip(clients, passwords, forms, strict=True)])
    finally:
        for client in clients:
            client.close()
    assert [a.status_code for a in answers if a.status_code not in (401, 429)] == []
    evaluated = [d for d in audit_details(index, "login-failed", name)
                 if d.get("reason") != "locked"]
    assert 1 <= len(evaluated) <= 5
    with from_address(server, address) as late:
        assert login(late, name, PASSWORD).status_code == 429


def test_a_strangers_failures_elsewhere_do_not_lock_the_owner_out(server: Server,
                                                                   index: Index) -> None:
    name = new_user(index)
    for _ in range(3):  # 15 failures from three addresses, each locked in turn
        with from_address(server) as stranger:
            statuses = [login(stranger, name, "guess").status_code for _ in range(5)]
            assert statuses == [401, 401, 401, 401, 429]
            assert login(stranger, name, PASSWORD).status_code == 429
    with from_address(server) as owner:
        assert login(owner, name, PASSWORD).status_code == 303
        assert owner.get("/api/me").json()["username"] == name


def test_many_addresses_only_slow_the_account_and_its_own_devices_get_in(
        server: Server, index: Index) -> None:
    name = new_user(index)
    owner = from_address(server)
    assert login(owner, name, PASSWORD).status_code == 303  # this browser now has a device cookie
    assert owner.cookies.get("cf_device", path="/login")
    out = owner.post("/logout", headers={"X-CSRF-Token": owner.cookies["cf_csrf"]})
    assert out.status_code == 303  # the device cookie stays with the browser
    for _ in range(5):  # 25 failures from five addresses: past the account's back-off
        with from_address(server) as stranger:
            for _ in range(5):
                login(stranger, name, "guess")
    with from_address(server) as newcomer:
        slowed = login(newcomer, name, PASSWORD)
    assert slowed.status_code == 429 and 1 <= int(slowed.headers["retry-after"]) <= 15 * 60
    again = login(owner, name, PASSWORD)  # the owner's own browser is not held back
    assert again.status_code == 303
    assert owner.get("/api/me").json()["username"] == name
    owner.close()


def test_a_forged_device_cookie_earns_nothing(server: Server, index: Index) -> None:
    name, other = new_user(index), new_user(index)
    with from_address(server) as someone:
        assert login(someone, other, PASSWORD).status_code == 303  # a device cookie for *other*
        device = someone.cookies.get("cf_device", path="/login")
    assert device
    for cookie in (device, "0" * 32 + ".1.forged"):
        with from_address(server) as guesser:
            guesser.cookies.set("cf_device", cookie, domain="127.0.0.1", path="/login")
            statuses = [login(guesser, name, "guess").status_code for _ in range(5)]
        assert statuses == [401, 401, 401, 401, 429]


def test_a_known_device_has_a_limit_of_its_own(server: Server, index: Index) -> None:
    name = new_user(index)
    device = from_address(server)
    assert login(device, name, PASSWORD).status_code == 303
    assert device.post("/logout", headers={"X-CSRF-Token": device.cookies["cf_csrf"]}
                       ).status_code == 303
    statuses = [login(device, name, "guess").status_code for _ in range(5)]
    assert statuses == [401, 401, 401, 401, 429]
    assert login(device, name, PASSWORD).status_code == 429  # that device waits
    with from_address(server) as elsewhere:  # nobody else is held back by it
        assert login(elsewhere, name, PASSWORD).status_code == 303
    device.close()
