"""Hospital-issued cloud films against the real server (SQLite and PostgreSQL), issue 12 part 1.

An operator issues a film for a study by API, CLI or the /admin page; its link opens with
no account; patients, physicians and link visitors cannot issue; revoking stops the link
(and sessions opened with it) at once, and a new film is a new link; every open is
audited; the slip is a PDF in Chinese and English with the hospital and the address.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import zlib
from collections.abc import Iterator
from datetime import date, timedelta

import httpx
import pytest
from sqlalchemy import select

from cloudfilm.config import Settings
from cloudfilm.services.access.films import FilmService
from cloudfilm.services.context import Archive
from cloudfilm.storage.index.access_models import FilmRow, GrantRow, PersonRecordRow
from conftest import Server, run_cli
from test_people import (
    HOSPITAL_A,
    Account,
    Hospital,
    audit_rows,
    fetch,
    link,
    make_account,
    store_study,
    unique,
)

XIEHE = Hospital("北京协和医院", "BJXH")


@pytest.fixture(scope="module")
def desk(server: Server) -> Iterator[Account]:
    account = make_account(server, "operator")
    yield account
    account.http.close()


def issue(desk: Account, study: str, **extra: object) -> dict[str, object]:
    response = desk.http.post("/api/films", json={"study_uid": study, **extra})
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def path_of(url: object) -> str:
    return "/" + str(url).split("://", 1)[1].split("/", 1)[1]


def visitor(server: Server) -> httpx.Client:
    """A phone's browser without any account."""
    return httpx.Client(base_url=server.url, timeout=60, headers={"Accept-Language": "zh-CN"})


def open_film(browser: httpx.Client, url: object) -> httpx.Response:
    return browser.get(path_of(url), follow_redirects=False)


# -- issuing and opening -------------------------------------------------------------------


def test_an_operator_issues_a_film_that_opens_without_an_account(server: Server,
                                                                 desk: Account) -> None:
    pid = unique("F")
    study = store_study(server, desk, XIEHE, pid, name="王^秀英")
    film = issue(desk, study)
    assert set(film) >= {"id", "url", "qr_png_url", "slip_pdf_url", "valid_until", "code"}
    assert str(film["url"]).startswith(f"{server.url}/s/") and film["valid_until"] is None
    assert re.fullmatch(r"[0-9A-Z]{5}-[0-9A-Z]{5}", str(film["code"]))
    assert film["qr_png_url"] == f"{server.url}/api/films/{film['id']}/qr.png"
    assert film["slip_pdf_url"] == f"{server.url}/api/films/{film['id']}/slip.pdf"
    phone = visitor(server)
    opened = open_film(phone, film["url"])
    assert opened.status_code == 303 and opened.headers["location"] == "/shared"
    page = phone.get("/shared")
    assert page.status_code == 200 and study in page.text and "北京协和医院" in page.text
    series = phone.get(f"/dicomweb/studies/{study}/series")
    assert series.status_code == 200 and len(series.json()) == 1
    (record,) = fetch(server, select(PersonRecordRow).where(PersonRecordRow.patient_id == pid))
    assert (record.issuer, record.method) == (XIEHE.issuer, "operator")  # account-less person
    phone.close()


def test_a_film_keeps_to_its_study_and_the_record_of_a_patient_account(server: Server,
                                                                       desk: Account) -> None:
    patient, pid = make_account(server, "patient"), unique("F")
    study = store_study(server, desk, HOSPITAL_A, pid)
    other = store_study(server, desk, HOSPITAL_A, pid, date="20240101")
    assert link(desk, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    film = issue(desk, study)
    (grant,) = fetch(server, select(GrantRow).join(FilmRow, FilmRow.grant_id == GrantRow.id)
                     .where(FilmRow.id == film["id"]))
    assert grant.person_id == patient.person_id and json.loads(grant.study_uids) == [study]
    phone = visitor(server)
    assert open_film(phone, film["url"]).status_code == 303
    assert phone.get(f"/shared/studies/{study}").status_code == 200
    assert phone.get(f"/shared/studies/{other}").status_code == 404
    phone.close()


def test_bad_requests_are_refused_with_a_reason(server: Server, desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    missing = desk.http.post("/api/films", json={"study_uid": "1.2.3.999.404"})
    assert missing.status_code == 404
    yesterday = (date.today() - timedelta(days=2)).isoformat()
    for body, reason in (({}, "study_uid"), ({"study_uid": study, "valid_until": "soon"},
                                              "valid_until"),
                         ({"study_uid": study, "valid_until": yesterday}, "past"),
                         ({"study_uid": study, "pin": "12"}, "pin")):
        answer = desk.http.post("/api/films", json=body)
        assert answer.status_code == 400 and reason in answer.text, (body, answer.text)
    assert desk.http.post("/api/films", content=b"[1,", headers={
        "content-type": "application/json"}).status_code == 400
    assert desk.http.get("/api/films").status_code == 400
    assert desk.http.delete("/api/films/999999").status_code == 404
    assert desk.http.delete("/api/films/abc").status_code == 400


def test_an_end_date_and_a_pin_when_the_hospital_sets_them(server: Server,
                                                           desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    until = (date.today() + timedelta(days=30)).isoformat()
    film = issue(desk, study, valid_until=until, pin="246810")
    assert film["valid_until"] == until
    phone = visitor(server)
    form = open_film(phone, film["url"])
    assert form.status_code == 200 and 'name="pin"' in form.text
    entered = phone.post(path_of(film["url"]), data={"pin": "246810"},
                         headers={"Origin": server.url, "Sec-Fetch-Site": "same-origin"})
    assert entered.status_code == 303 and phone.get("/shared").status_code == 200
    phone.close()


def test_only_operators_and_admins_issue_list_and_revoke(server: Server, desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    film = issue(desk, study)
    admin = server.http()
    assert admin.post("/api/films", json={"study_uid": study}).status_code == 201
    patient, physician = make_account(server, "patient"), make_account(server, "physician")
    phone = visitor(server)
    assert open_film(phone, film["url"]).status_code == 303  # a link session
    anonymous = httpx.Client(base_url=server.url, timeout=60)
    # a link session's writes fail on CSRF first (403), its reads on authentication (401)
    for client, reads, writes in ((patient.http, 403, 403), (physician.http, 403, 403),
                                  (anonymous, 401, 401), (phone, 401, 403)):
        assert client.post("/api/films", json={"study_uid": study}).status_code == writes
        assert client.delete(f"/api/films/{film['id']}").status_code == writes
        assert client.get(f"/api/films?study_uid={study}").status_code == reads
        for kind in ("qr.png", "slip.pdf"):
            assert client.get(f"/api/films/{film['id']}/{kind}").status_code == reads
    listed = admin.get(f"/api/films?study_uid={study}").json()
    assert len(listed) == 2 and all(f["status"] == "active" for f in listed)
    assert phone.get("/shared").status_code == 200  # refusals changed nothing
    for client in (admin, anonymous, phone):
        client.close()


# -- revoking, re-issuing, auditing --------------------------------------------------------


def test_revoking_stops_the_link_at_once_and_reissuing_gives_a_new_one(server: Server,
                                                                       desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    film = issue(desk, study)
    phone = visitor(server)
    assert open_film(phone, film["url"]).status_code == 303
    assert phone.get("/shared").status_code == 200
    assert desk.http.delete(f"/api/films/{film['id']}").status_code == 204
    assert phone.get("/shared").status_code in (401, 404)  # the open session ends too
    assert open_film(visitor(server), film["url"]).status_code == 404
    statuses = {f["id"]: f["status"] for f in
                desk.http.get(f"/api/films?study_uid={study}").json()}
    assert statuses[film["id"]] == "revoked"
    again = issue(desk, study)
    assert again["url"] != film["url"] and again["id"] != film["id"]
    assert open_film(visitor(server), again["url"]).status_code == 303
    assert len([r for r in audit_rows(server, "share-revoke")
                if json.loads(r.detail).get("film") == film["id"]]) == 1
    phone.close()


def test_every_open_is_audited(server: Server, desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    film = issue(desk, study)
    (grant_id,) = fetch(server, select(FilmRow.grant_id).where(FilmRow.id == film["id"]))
    for _ in range(3):
        assert open_film(visitor(server), film["url"]).status_code == 303
    opens = [r for r in audit_rows(server, "share-open")
             if json.loads(r.detail).get("share") == grant_id]
    assert len(opens) == 3 and all(r.outcome == "success" for r in opens)
    listed = desk.http.get(f"/api/films?study_uid={study}").json()
    assert listed[0]["open_count"] == 3
    issued = [r for r in audit_rows(server, "share-create")
              if json.loads(r.detail).get("film") == film["id"]]
    assert len(issued) == 1 and issued[0].study_uid == study
    secret = str(film["url"]).rsplit("/", 1)[1]
    assert secret not in server.log_path.read_text()  # type: ignore[union-attr]


def test_a_signed_in_browser_is_not_turned_into_a_link_session(server: Server,
                                                               desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    film = issue(desk, study)
    patient = make_account(server, "patient")  # signed in: the keep form, not a link session
    answer = patient.http.get(path_of(film["url"]), follow_redirects=False)
    assert answer.status_code == 200 and 'action="/keep"' in answer.text
    assert "cf_session" not in answer.headers.get("set-cookie", "")
    physician = make_account(server, "physician")  # staff keep nothing: a private window
    answer = physician.http.get(path_of(film["url"]), follow_redirects=False)
    assert answer.status_code == 409 and "cf_session" not in answer.headers.get("set-cookie", "")


# -- the console, the desk page, the resolver ----------------------------------------------


def test_the_cli_prints_the_same_json(server: Server, desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    made = run_cli(["film", "issue", study, "--data", str(server.data_dir),
                    "--base-url", server.url], server.database_url)
    assert made.returncode == 0, made.stderr
    film = json.loads(made.stdout)
    assert set(film) >= {"id", "url", "qr_png_url", "slip_pdf_url", "valid_until"}
    assert film["valid_until"] is None and str(film["url"]).startswith(f"{server.url}/s/")
    assert open_film(visitor(server), film["url"]).status_code == 303
    unknown = run_cli(["film", "issue", "1.2.3.404", "--data", str(server.data_dir)],
                      server.database_url)
    assert unknown.returncode == 1 and "not in the archive" in unknown.stderr
    revoked = run_cli(["film", "revoke", str(film["id"]), "--data", str(server.data_dir)],
                      server.database_url)
    assert revoked.returncode == 0 and open_film(visitor(server), film["url"]).status_code == 404


def test_the_desk_finds_a_study_and_issues_a_film_from_the_admin_page(server: Server,
                                                                      desk: Account) -> None:
    pid = unique("DESK")
    study = store_study(server, desk, XIEHE, pid, name="李^建国")
    for query in (pid, "李"):
        found = desk.http.get("/admin/films", params={"q": query})
        assert found.status_code == 200 and study in found.text, query
    assert "发放云胶片" in desk.http.get("/admin/films", params={"q": pid, "lang": "zh"}).text
    issued = desk.http.post("/admin/films", data={"study_uid": study, "q": pid},
                            follow_redirects=True)
    assert issued.status_code == 200
    (film,) = desk.http.get(f"/api/films?study_uid={study}").json()
    assert film["url"] in issued.text and f"/api/films/{film['id']}/slip.pdf" in issued.text
    patient = make_account(server, "patient")
    assert patient.http.get("/admin/films", params={"q": pid}).status_code == 404
    assert patient.http.post("/admin/films", data={"study_uid": study}).status_code == 404


def test_the_resolver_finds_only_films_that_open_now(server: Server, desk: Account) -> None:
    owner, pid = make_account(server, "patient"), unique("F")
    study = store_study(server, desk, HOSPITAL_A, pid)
    assert link(desk, owner.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    film = issue(desk, study)
    share = owner.http.post("/api/shares", json={"scope": {"studies": [study]},
                                                 "audience": "link"}).json()
    archive = Archive.open(Settings.load(server.data_dir, server.database_url), recover=False)
    try:
        films = FilmService(archive)
        secret = str(film["url"]).rsplit("/", 1)[1]
        for given in (str(film["url"]), path_of(film["url"]), secret):
            ref = films.resolve(given)
            assert ref is not None and (ref.id, ref.study_uid, ref.patient_id, ref.issuer) == (
                film["id"], study, pid, HOSPITAL_A.issuer)
            assert ref.person_id == owner.person_id
        for bad in (str(share["url"]), "nonsense", secret[:-1] + ("A" if secret[-1] != "A"
                                                                   else "B")):
            assert films.resolve(bad) is None
        assert desk.http.delete(f"/api/films/{film['id']}").status_code == 204
        assert films.resolve(secret) is None
    finally:
        archive.close()


# -- the short code on the slip -----------------------------------------------------------


def type_code(browser: httpx.Client, code: str) -> httpx.Response:
    return browser.post("/code", data={"code": code}, follow_redirects=False,
                        headers={"Origin": str(browser.base_url).rstrip("/"),
                                 "Sec-Fetch-Site": "same-origin"})


def test_the_code_on_the_slip_opens_the_film_and_guesses_lock_out(server: Server,
                                                                 desk: Account) -> None:
    study = store_study(server, desk, HOSPITAL_A, unique("F"))
    film = issue(desk, study)
    phone = visitor(server)
    form = phone.get("/code")
    assert form.status_code == 200 and 'name="code"' in form.text and "取片码" in form.text
    typed = str(film["code"]).lower().replace("-", " ")  # as a person might type it
    answer = type_code(phone, typed)
    assert answer.status_code == 303 and answer.headers["location"] == path_of(film["url"])
    assert phone.get(answer.headers["location"], follow_redirects=True).status_code == 200
    assert study in phone.get("/shared").text
    assert type_code(phone, "xyz").status_code == 404  # a wrong code: the form again
    guesser = visitor(server)
    guesser.headers["X-Forwarded-For"] = f"203.0.113.{secrets.randbelow(250) + 1}"
    answers = [type_code(guesser, f"ZZZZZ-ZZZ{n:02d}"[:11]).status_code for n in range(12)]
    assert set(answers[:9]) <= {404} and answers[-1] == 429
    assert type_code(guesser, str(film["code"])).status_code == 429  # locked, even when right
    refused = [r for r in audit_rows(server, "share-open")
               if r.outcome == "failure" and r.source == guesser.headers["X-Forwarded-For"]]
    assert {json.loads(r.detail)["reason"] for r in refused} == {
        "no film opens with this code", "locked"}  # audited once an hour each, not per guess
    assert all(str(film["code"]) not in r.detail for r in refused)
    assert desk.http.delete(f"/api/films/{film['id']}").status_code == 204
    assert type_code(visitor(server), str(film["code"])).status_code == 404
    reissued = issue(desk, study)
    assert reissued["code"] != film["code"]
    for client in (phone, guesser):
        client.close()


# -- the QR code and the slip --------------------------------------------------------------


def _content(pdf: bytes) -> bytes:
    """The page content streams (reportlab: ASCII85 over Flate)."""
    return b"".join(zlib.decompress(_a85(body)) for header, body in
                    re.findall(rb"<<([^<>]*?)>>\s*stream\r?\n(.*?)endstream", pdf, re.S)
                    if b"ASCII85Decode" in header)


def _a85(body: bytes) -> bytes:
    text = body.strip()
    text = text if text.startswith(b"<~") else b"<~" + text
    return base64.a85decode(text if text.endswith(b"~>") else text + b"~>", adobe=True)


def _unescape(match: re.Match[bytes]) -> bytes:
    code = match.group(1)
    if code.isdigit():
        return bytes([int(code, 8)])
    return {b"n": b"\n", b"r": b"\r", b"t": b"\t"}.get(code, code)


def pdf_text(pdf: bytes) -> str:
    """The strings drawn on the page, one per line: the CID font's (UniGB-UCS2-H) decoded
    as UTF-16BE, the standard fonts' as Latin-1."""
    cid_fonts = set(re.findall(rb"/Encoding /UniGB-UCS2-H /Name /(F\d+)", pdf))
    assert cid_fonts, "no Chinese font on the slip"
    out, font = [], b""
    for token in re.finditer(rb"/(F\d+) [\d.]+ Tf|\(((?:\\.|[^\\)])*)\) Tj",
                             _content(pdf), re.S):
        if token.group(1):
            font = token.group(1)
            continue
        raw = re.sub(rb"\\([0-7]{1,3}|.)", _unescape, token.group(2))
        out.append(raw.decode("utf-16-be") if font in cid_fonts else raw.decode("latin-1"))
    return "\n".join(out)


def test_the_slip_and_the_qr_code(server: Server, desk: Account) -> None:
    study = store_study(server, desk, XIEHE, unique("F"), name="王^秀英")
    film = issue(desk, study)
    qr = desk.http.get(path_of(film["qr_png_url"]))
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG")
    slip = desk.http.get(path_of(film["slip_pdf_url"]))
    assert slip.status_code == 200 and slip.headers["content-type"] == "application/pdf"
    assert slip.content.startswith(b"%PDF-") and slip.content.rstrip().endswith(b"%%EOF")
    assert slip.content.count(b"/Type /Page\n") + slip.content.count(b"/Type /Page ") >= 1
    text = pdf_text(slip.content)
    assert "北京协和医院" in text and "您的云胶片" in text and "Your cloud film" in text
    words, glyphs = " ".join(text.split()), "".join(text.split())  # lines are wrapped
    assert "用手机相机扫描二维码" in glyphs and "Scan the code with your phone camera" in words
    assert "2025-03-01" in text and "秀英" not in text  # the slip never names the patient
    assert str(film["code"]) in text.splitlines() and f"{server.url}/code" in words
    assert "输入下面的取片码" in glyphs and "type this code" in words
    sizes = [float(s) for s in re.findall(rb"/F\d+ ([\d.]+) Tf", _content(slip.content))]
    assert sizes and min(sizes) >= 12

