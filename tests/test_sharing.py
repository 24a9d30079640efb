"""Grants and share links against the real server (SQLite and PostgreSQL).

Issue "People, access and sharing": create → open → renew (same URL and QR code) →
expire → revoke, with an open share session cut off at once; one generic 404 for every
bad secret; PIN lock-out after 5 wrong PINs; a share session sees only its studies;
only the patient, their caregiver or an admin shares; QR codes and the printable card.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
import segno
from PIL import Image
from sqlalchemy import delete, select, update

from cloudfilm.services.access.accounts import AccountService
from cloudfilm.services.access.share_card import mask_name
from cloudfilm.storage.index.access_models import GrantRow, OutboxRow, RateLimitRow, UserRow
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import StudyRow
from conftest import Server
from test_people import (
    HOSPITAL_A,
    HOSPITAL_B,
    Account,
    audit_rows,
    execute,
    fetch,
    link,
    make_account,
    store_study,
    uid_list,
    unique,
)


def today() -> date:
    """The server's today (UTC), asked at the moment of use: a run may cross midnight."""
    return datetime.now(UTC).date()


@dataclass
class Folder:
    """A patient with two studies at hospital A; a stranger's study at hospital B."""

    patient: Account
    first: str
    second: str
    strangers: str
    stranger: Account


@pytest.fixture(scope="module")
def operator(server: Server) -> Iterator[Account]:
    account = make_account(server, "operator")
    yield account
    account.http.close()


@pytest.fixture
def folder(server: Server, operator: Account) -> Folder:
    patient = make_account(server, "patient", "张三丰")
    stranger = make_account(server, "patient")
    pid, other = unique("A"), unique("B")
    first = store_study(server, operator, HOSPITAL_A, pid, date="20250301")
    second = store_study(server, operator, HOSPITAL_A, pid, date="20240101")
    strangers = store_study(server, operator, HOSPITAL_B, other)
    assert link(operator, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    assert link(operator, stranger.person_id, other, HOSPITAL_B.issuer).status_code == 201
    return Folder(patient, first, second, strangers, stranger)


def share(owner: Account, body: dict[str, object]) -> dict[str, object]:
    response = owner.http.post("/api/shares", json={"audience": "link", **body})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def path_of(url: object) -> str:
    return "/" + str(url).split("://", 1)[1].split("/", 1)[1]


def visitor(server: Server) -> httpx.Client:
    """A browser without an account."""
    return httpx.Client(base_url=server.url, timeout=60)


def open_link(browser: httpx.Client, url: object) -> httpx.Response:
    return browser.get(path_of(url), follow_redirects=False)


def user_id(server: Server, username: str) -> int:
    (found,) = fetch(server, select(UserRow.id).where(UserRow.username == username))
    return int(found)


def renew(owner: Account, share_id: object, until: date | None) -> httpx.Response:
    return owner.http.post(f"/api/shares/{share_id}/renew",
                           json={"valid_until": until.isoformat() if until else None})


# -- the whole life of a link ------------------------------------------------------------


def test_link_lifecycle(server: Server, folder: Folder) -> None:
    created = share(folder.patient, {"scope": {"studies": [folder.first]}})
    url, sid = str(created["url"]), created["id"]
    assert url.startswith(f"{server.url}/s/") and created["qr_png"] == f"/api/shares/{sid}/qr.png"
    assert created["valid_until"] == (today() + timedelta(days=90)).isoformat()
    browser = visitor(server)
    opened = open_link(browser, url)
    assert opened.status_code == 303 and opened.headers["location"] == "/shared"
    cookie = next(c for c in opened.headers.get_list("set-cookie") if c.startswith("cf_session="))
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = browser.get("/shared")
    assert page.status_code == 200 and folder.first in page.text and folder.second not in page.text
    listed = {s["id"]: s for s in folder.patient.http.get("/api/shares").json()}
    assert (listed[sid]["open_count"], listed[sid]["status"]) == (1, "active")
    qr = folder.patient.http.get(f"/api/shares/{sid}/qr.png").content
    renewed = renew(folder.patient, sid, today() + timedelta(days=30))
    assert renewed.status_code == 200 and renewed.json()["url"] == url
    assert folder.patient.http.get(f"/api/shares/{sid}/qr.png").content == qr
    assert renew(folder.patient, sid, today() - timedelta(days=1)).json()["status"] == "expired"
    assert open_link(visitor(server), url).status_code == 404
    assert browser.get("/shared").status_code == 404  # the open session is cut off too
    assert renew(folder.patient, sid, today() + timedelta(days=10)).json()["url"] == url
    assert browser.get("/shared").status_code == 200
    assert folder.patient.http.delete(f"/api/shares/{sid}").status_code == 204
    assert browser.get("/shared").status_code == 401  # revoked: the session is gone, anonymous
    assert open_link(visitor(server), url).status_code == 404
    assert renew(folder.patient, sid, today() + timedelta(days=10)).status_code == 409
    person = folder.patient.person_id
    assert [len(audit_rows(server, a, person)) for a in
            ("share-create", "share-open", "share-renew", "share-revoke")] == [1, 1, 3, 1]
    assert url.rsplit("/", 1)[1] not in server.log_path.read_text()  # type: ignore[union-attr]


def test_owner_is_notified_of_opens_unless_turned_off(server: Server, folder: Folder) -> None:
    loud = share(folder.patient, {"scope": {"studies": [folder.first]}})
    quiet = share(folder.patient, {"scope": {"studies": [folder.first]}, "notify_on_open": False})
    assert open_link(visitor(server), loud["url"]).status_code == 303
    assert open_link(visitor(server), quiet["url"]).status_code == 303
    owner = user_id(server, folder.patient.name)
    bodies = fetch(server, select(OutboxRow.body).where(OutboxRow.kind == "share-opened",
                                                        OutboxRow.recipient_user_id == owner))
    assert [f"#{loud['id']} " in b for b in bodies] == [True]
    assert str(loud["url"]).rsplit("/", 1)[1] not in bodies[0]


def test_max_opens_caps_the_link(server: Server, folder: Folder) -> None:
    capped = share(folder.patient, {"scope": {"studies": [folder.first]}, "max_opens": 2})
    assert [open_link(visitor(server), capped["url"]).status_code for _ in range(3)] == \
        [303, 303, 404]
    listed = {s["id"]: s for s in folder.patient.http.get("/api/shares").json()}
    assert (listed[capped["id"]]["open_count"], listed[capped["id"]]["status"]) == (2, "used-up")


def test_every_bad_secret_gets_the_same_404(server: Server, folder: Folder) -> None:
    body = {"scope": {"studies": [folder.first]}}
    revoked, expired, used = share(folder.patient, body), share(folder.patient, body), \
        share(folder.patient, {**body, "max_opens": 1})
    assert folder.patient.http.delete(f"/api/shares/{revoked['id']}").status_code == 204
    execute(server, update(GrantRow).where(GrantRow.id == expired["id"])
            .values(valid_until=today() - timedelta(days=2)))
    assert open_link(visitor(server), used["url"]).status_code == 303
    bad = [path_of(s["url"]) for s in (revoked, expired, used)] + [
        "/s/" + secrets.token_urlsafe(32), "/s/short", "/s/a/b", "/s/", "/s/" + "%00" * 43]
    answers = [visitor(server).get(p, follow_redirects=False) for p in bad]
    answers += [visitor(server).post(p, data={"pin": "1234"}) for p in bad[:4]]
    assert {(a.status_code, a.text) for a in answers} == {(answers[0].status_code, answers[0].text)}
    assert answers[0].status_code == 404 and "not available" in answers[0].text
    assert all("cf_session" not in a.headers.get("set-cookie", "") for a in answers)


# -- PINs --------------------------------------------------------------------------------


def test_pin_form_and_lockout_after_five_wrong_pins(server: Server, folder: Folder) -> None:
    protected = share(folder.patient, {"scope": {"studies": [folder.first]},
                                       "audience": "link+pin", "pin": "246810"})
    browser = visitor(server)
    form = open_link(browser, protected["url"])
    assert form.status_code == 200 and "cf_session" not in form.headers.get("set-cookie", "")
    assert '<label for="pin">' in form.text and 'name="pin"' in form.text
    assert 'method="post"' in form.text and 'lang="en"' in form.text
    target = path_of(protected["url"])
    forged = browser.post(target, data={"pin": "246810"}, headers={"origin": "https://evil.test"})
    assert forged.status_code == 403 and browser.get("/shared").status_code == 401  # no session
    wrong = [browser.post(target, data={"pin": "000000"}) for _ in range(5)]
    assert [w.status_code for w in wrong] == [403, 403, 403, 403, 429]
    assert "1 attempt(s) left" in wrong[3].text and 'role="alert"' in wrong[3].text
    assert "locked for 15 minutes" in wrong[4].text
    still_locked = browser.post(target, data={"pin": "246810"})  # the right PIN, too late
    assert still_locked.status_code == 429 and still_locked.headers["retry-after"] == "900"
    assert open_link(browser, protected["url"]).status_code == 429
    assert browser.get("/shared").status_code == 401  # still no session
    execute(server, delete(RateLimitRow).where(RateLimitRow.key == f"pin:{protected['id']}"))
    ok = browser.post(target, data={"pin": "246810"}, follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/shared"
    assert folder.first in browser.get("/shared").text
    failures = [json.loads(r.detail)["reason"]
                for r in audit_rows(server, "share-open", folder.patient.person_id)
                if r.outcome == "failure"]
    assert failures == ["wrong PIN"] * 5 + ["locked"]  # every refusal is audited


def test_pin_rules(folder: Folder) -> None:
    scope = {"studies": [folder.first]}
    posts = [folder.patient.http.post("/api/shares", json=body) for body in (
        {"scope": scope, "audience": "link+pin"},
        {"scope": scope, "audience": "link+pin", "pin": "12ab"},
        {"scope": scope, "audience": "link+pin", "pin": "1234"},  # 6 digits at least
    )]
    assert [p.status_code for p in posts] == [400, 400, 400]
    given = folder.patient.http.post("/api/shares", json={"scope": scope, "audience": "link",
                                                          "pin": "555555"})
    assert given.status_code == 201 and given.json()["has_pin"] is True


# -- a link never replaces a login (issue 11) ----------------------------------------------


def signed_in_browser(server: Server, role: str = "physician") -> tuple[str, httpx.Client]:
    """A browser signed in through the login form (a cookie session, not a bearer token)."""
    name, password = f"signed-{secrets.token_hex(4)}", "a long enough passphrase"
    index = Index(server.database_url)
    try:
        AccountService(index).add_user(name, role, password)
    finally:
        index.dispose()
    browser = visitor(server)
    token = re.search(r'name="csrf" value="([^"]+)"', browser.get("/login").text)
    assert token
    signed = browser.post("/login", data={"username": name, "password": password,
                                          "csrf": token.group(1)})
    assert signed.status_code == 303
    return name, browser


def test_opening_a_link_while_signed_in_keeps_the_login(server: Server, folder: Folder) -> None:
    plain = share(folder.patient, {"scope": {"studies": [folder.first]}})
    protected = share(folder.patient, {"scope": {"studies": [folder.first]},
                                       "audience": "link+pin", "pin": "135790"})
    name, browser = signed_in_browser(server)
    session = browser.cookies["cf_session"]
    opened = open_link(browser, plain["url"])
    pin = browser.post(path_of(protected["url"]), data={"pin": "135790"})
    for answer in (opened, pin):
        assert answer.status_code == 409 and "signed in as" in answer.text
        assert "cf_session" not in answer.headers.get("set-cookie", "")
    assert browser.cookies["cf_session"] == session
    me = browser.get("/api/me")
    assert me.status_code == 200 and (me.json()["kind"], me.json()["username"]) == ("user", name)
    listed = {s["id"]: s for s in folder.patient.http.get("/api/shares").json()}
    assert listed[plain["id"]]["open_count"] == 0  # nothing was opened
    zh = browser.get(path_of(plain["url"]), headers={"Accept-Language": "zh-CN"})
    assert "无痕" in zh.text
    browser.close()
    anonymous = visitor(server)  # the same link still opens for a browser without a login
    assert open_link(anonymous, plain["url"]).status_code == 303
    anonymous.close()


# -- scope -------------------------------------------------------------------------------


def test_a_share_session_cannot_be_widened(server: Server, folder: Folder) -> None:
    one = share(folder.patient, {"scope": {"studies": [folder.first]}})
    browser = visitor(server)
    assert open_link(browser, one["url"]).status_code == 303
    assert browser.get(f"/shared/studies/{folder.first}").status_code == 200
    for uid in (folder.second, folder.strangers, "1.2.3.4.5"):
        assert browser.get(f"/shared/studies/{uid}").status_code == 404
    person = folder.patient.person_id
    assert uid_list(browser.get(f"/api/patients/{person}/timeline")) == [folder.first]
    assert browser.get(f"/api/patients/{folder.stranger.person_id}/timeline").status_code == 404
    assert browser.get("/api/shares").status_code == 401
    widened = browser.post("/api/shares", json={"scope": {"patient": person}, "audience": "link"},
                           headers={"X-CSRF-Token": browser.cookies.get("cf_csrf", "")})
    assert widened.status_code == 401


def test_timeline_shares_and_future_studies(server: Server, folder: Folder,
                                            operator: Account) -> None:
    person = folder.patient.person_id
    execute(server, update(StudyRow).where(StudyRow.study_uid.in_([folder.first, folder.second]))
            .values(created_at=datetime.now(UTC) - timedelta(days=1)))  # arrived earlier
    frozen = share(folder.patient, {"scope": {"patient": person}})
    future = share(folder.patient, {"scope": {"patient": person, "include_future": True}})
    pid = folder.patient.http.get(f"/api/persons/{person}").json()["records"][0]["patient_id"]
    later = store_study(server, operator, HOSPITAL_A, pid, date="20260101")
    seen = {}
    for name, created in (("frozen", frozen), ("future", future)):
        browser = visitor(server)
        assert open_link(browser, created["url"]).status_code == 303
        seen[name] = set(uid_list(browser.get(f"/api/patients/{person}/timeline")))
    assert seen["frozen"] == {folder.first, folder.second}
    assert seen["future"] == {folder.first, folder.second, later}


def test_only_the_patient_their_caregiver_or_an_admin_share(server: Server, folder: Folder,
                                                           operator: Account) -> None:
    physician, admin = make_account(server, "physician"), make_account(server, "admin")
    mine = {"scope": {"studies": [folder.first]}, "audience": "link"}
    assert folder.stranger.http.post("/api/shares", json=mine).status_code == 403
    assert physician.http.post("/api/shares", json=mine).status_code == 403
    assert folder.stranger.http.post("/api/shares", json={
        "scope": {"patient": folder.patient.person_id}}).status_code == 403
    assert admin.http.post("/api/shares", json=mine).status_code == 201
    mixed = {"scope": {"studies": [folder.first, folder.strangers]}, "audience": "link"}
    assert admin.http.post("/api/shares", json=mixed).status_code == 400
    unlinked = store_study(server, operator, HOSPITAL_B, unique("U"))
    orphan = admin.http.post("/api/shares", json={"scope": {"studies": [unlinked]}})
    assert orphan.status_code == 400
    for bad in ({"audience": {"physician": "nobody-here"}},
                {"valid_until": (today() - timedelta(days=1)).isoformat()},
                {"permissions": ["print"]}, {"audience": "everyone"}):
        answer = folder.patient.http.post("/api/shares", json={**mine, **bad})
        assert answer.status_code == 400, bad
    others = [s["id"] for s in folder.stranger.http.get("/api/shares").json()]
    assert others == []


def test_validity_defaults(server: Server, folder: Folder) -> None:
    physician = make_account(server, "physician")
    scope = {"studies": [folder.first]}
    in_90 = (today() + timedelta(days=90)).isoformat()
    assert share(folder.patient, {"scope": scope})["valid_until"] == in_90
    assert share(folder.patient, {"scope": scope, "valid_until": None})["valid_until"] is None
    named = share(folder.patient, {"scope": scope, "audience": {"physician": physician.name}})
    assert (named["valid_until"], named["url"], named["physician"]) == (in_90, None, physician.name)
    dated = share(folder.patient, {"scope": scope, "valid_until": "2099-12-31"})
    assert dated["valid_until"] == "2099-12-31"


# -- QR codes and the printable card ------------------------------------------------------


def pdf_text(pdf: bytes) -> str:
    """Text drawn by reportlab's ``(…) Tj``: CID-font strings are UTF-16BE."""
    cid_fonts = set(re.findall(rb"/Encoding /UniGB-UCS2-H /Name /(F\d+)", pdf))
    text, font = [], b""
    for raw in re.findall(rb"stream\r?\n(.*?)endstream", pdf, re.S):
        try:
            data = zlib.decompress(base64.a85decode(raw.strip(), adobe=True))
        except (ValueError, zlib.error):
            continue
        for token in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj", data, re.S):
            if token.group(1):
                font = token.group(1)
                continue
            literal = _unescape(token.group(2))
            text.append(literal.decode("utf-16-be" if font in cid_fonts else "latin-1"))
    return "\n".join(text)


def _unescape(literal: bytes) -> bytes:
    simple = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}

    def one(match: re.Match[bytes]) -> bytes:
        escaped = match.group(1)
        if escaped[:1].isdigit():
            return bytes([int(escaped, 8)])
        return simple.get(escaped, escaped)

    return re.sub(rb"\\([0-7]{1,3}|.)", one, literal, flags=re.S)


def test_qr_codes_and_printable_card(server: Server, folder: Folder) -> None:
    plain = share(folder.patient, {"scope": {"studies": [folder.first]}})
    pinned = share(folder.patient, {"scope": {"studies": [folder.first, folder.second]},
                                    "audience": "link+pin", "pin": "864200"})
    api = folder.patient.http
    png = api.get(f"/api/shares/{plain['id']}/qr.png")
    assert png.headers["content-type"] == "image/png"
    expected = io.BytesIO()
    segno.make(str(plain["url"]), error="m", micro=False).save(expected, kind="png", scale=8,
                                                               border=4)
    assert png.content == expected.getvalue()  # the QR code holds exactly the link
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG" and image.size[0] == image.size[1] >= 200
    svg = api.get(f"/api/shares/{plain['id']}/qr.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert re.search(r'<path[^>]* d="M\d', svg.text)
    card = api.get(f"/api/shares/{pinned['id']}/card.pdf")
    assert card.headers["content-type"] == "application/pdf" and card.content.startswith(b"%PDF")
    text = pdf_text(card.content)
    assert "张*丰" in text and "张三丰" not in text
    assert "2025-03-01" in text and "2024-01-01" in text and "Hospital A" in text
    assert "PIN" in text and "864200" not in text
    assert str(pinned["url"]).rsplit("/", 1)[1][:20] in text.replace("\n", "")
    assert card.content.count(b"/Type /Page\n") == 1
    assert "PIN" not in pdf_text(api.get(f"/api/shares/{plain['id']}/card.pdf").content)
    assert folder.stranger.http.get(f"/api/shares/{plain['id']}/qr.png").status_code == 404
    assert folder.stranger.http.get(f"/api/shares/{plain['id']}/card.pdf").status_code == 404


@pytest.mark.parametrize(("name", "masked"), [
    ("张三", "张*"), ("张三丰", "张*丰"), ("欧阳娜娜", "欧**娜"), ("Zhang^San", "Z***g S*n"),
    ("ZHANG^SAN=张三", "Z***G S*N / 张*"), ("Li^Bo^^^", "L* B*"), ("Doe", "D*e"), ("", ""),
])
def test_names_on_the_card_are_masked(name: str, masked: str) -> None:
    assert mask_name(name) == masked
