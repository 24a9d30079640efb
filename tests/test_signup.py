"""Keep it for life, and family (issue 12, parts 2 and 3), against the real server on SQLite
and PostgreSQL: sign-up with a hospital film or claim code and the patient's birth date,
records an operator linked, records already in another account, keeping a film when
signed in, the claim page, and a family helper who signs up through an invitation link.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from cloudfilm.storage.index.access_models import UserRow
from conftest import Server
from jobs_wait import wait_for_tracking
from test_people import (
    HOSPITAL_A,
    Account,
    audit_rows,
    claim_code,
    fetch,
    make_account,
    store_study,
    unique,
)

BIRTH = "19600101"  # what store_study writes as PatientBirthDate
PASSWORD = "a long enough password"


@pytest.fixture(scope="module")
def operator(server: Server) -> Iterator[Account]:
    account = make_account(server, "operator")
    yield account
    account.http.close()


def visitor(server: Server) -> httpx.Client:
    """A browser-like client with no account: it keeps whatever cookies it is given."""
    return httpx.Client(base_url=server.url, timeout=60)


def new_login() -> str:
    return f"138{secrets.randbelow(10**8):08d}"


def issue_film(operator: Account, study: str) -> str:
    made = operator.http.post("/api/films", json={"study_uid": study})
    assert made.status_code == 201, made.text
    return str(made.json()["url"])


def sign_up(client: httpx.Client, birth_date: str = "1960-01-01", **possession: str
            ) -> httpx.Response:
    return client.post("/api/signup", json={
        "username": possession.pop("username", new_login()), "password": PASSWORD,
        "display_name": possession.pop("display_name", "张三"), "birth_date": birth_date,
        **possession})


def csrf_of(client: httpx.Client) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies["cf_csrf"]}


def film_opens(server: Server, url: str, study: str) -> bool:
    """The film link, opened in a fresh browser, shows the study."""
    with visitor(server) as fresh:
        opened = fresh.get(url, follow_redirects=True)
    return opened.status_code == 200 and study in opened.text


# -- signing up with a film ------------------------------------------------------------------


def test_sign_up_with_the_film_and_right_birth_date_keeps_the_record(
        server: Server, operator: Account) -> None:
    pid = unique("F")
    study = store_study(server, operator, HOSPITAL_A, pid)
    url = issue_film(operator, study)
    with visitor(server) as browser:
        typed = f"+86 138-{secrets.randbelow(10**4):04d}-{secrets.randbelow(10**4):04d}"
        made = sign_up(browser, film_url=url, username=typed)
        assert made.status_code == 201, made.text
        # +86 and a mainland mobile number: the account is the 11-digit number
        assert made.json()["username"] == typed.replace(" ", "").replace("-", "")[3:]
        assert browser.cookies.get("cf_session")
        me = browser.get("/api/me").json()
        assert me["role"] == "patient" and me["person_id"] == made.json()["person_id"]
        timeline = browser.get("/api/me/timeline").json()["studies"]
        assert [s["study_uid"] for s in timeline] == [study]
        assert study in browser.get("/timeline").text  # the portal page, same session
    last_link = json.loads(audit_rows(server, "link", me["person_id"])[-1].detail)
    assert (last_link["method"], last_link["patient_id"]) == ("film", pid)
    assert film_opens(server, url, study)


def test_a_phone_number_signs_in_however_it_is_typed(
        server: Server, operator: Account) -> None:
    """Signed up as "138 …", the patient signs in with "+86 138-…", "0086138…" or "138…"."""
    from test_login import login

    number = f"138{secrets.randbelow(10**8):08d}"
    study = store_study(server, operator, HOSPITAL_A, unique("N"))
    with visitor(server) as browser:
        made = sign_up(browser, film_url=issue_film(operator, study),
                       username=f"{number[:3]} {number[3:7]} {number[7:]}")
        assert made.status_code == 201 and made.json()["username"] == number
    for typed in (f"+86 {number[:3]}-{number[3:7]}-{number[7:]}", f"0086{number}", number,
                  f"({number[:3]}) {number[3:]}"):
        with visitor(server) as browser:
            answer = login(browser, typed, PASSWORD)
            assert answer.status_code == 303, (typed, answer.text[:200])
            assert browser.get("/api/me").json()["username"] == number
    with visitor(server) as browser:
        assert login(browser, f"+1 {number}", PASSWORD).status_code != 303  # another number


def test_a_wrong_birth_date_is_refused_plainly_and_tries_are_limited(
        server: Server, operator: Account) -> None:
    study = store_study(server, operator, HOSPITAL_A, unique("W"), name="Li^Si")
    url = issue_film(operator, study)
    login = new_login()
    with visitor(server) as browser:
        for _ in range(5):
            refused = sign_up(browser, "1961-02-03", film_url=url, username=login)
            assert refused.status_code == 403, refused.text
            assert "birth date does not match" in refused.text
            assert "1960" not in refused.text and "Li" not in refused.text
        locked = sign_up(browser, "1960-01-01", film_url=url, username=login)
        assert locked.status_code == 429 and "too many" in locked.text
        assert "cf_session" not in browser.cookies
    assert fetch(server, select(UserRow).where(UserRow.username == login)) == []
    failures = [r for r in audit_rows(server, "link") if r.outcome == "failure"
                and r.study_uid == study]
    assert len(failures) == 6


def test_bad_sign_up_input_gets_a_clear_error_and_creates_nothing(
        server: Server, operator: Account) -> None:
    study = store_study(server, operator, HOSPITAL_A, unique("X"))
    url = issue_film(operator, study)
    with visitor(server) as browser:
        assert sign_up(browser, film_url=url, username="not a login").status_code == 400
        assert sign_up(browser, "1960-13-45", film_url=url).status_code == 400
        assert sign_up(browser, film_url=f"{server.url}/s/{'A' * 43}").status_code == 404
        assert sign_up(browser).status_code == 400  # neither a film nor a code
        form = browser.post("/api/signup", data={"username": new_login()})
        assert form.status_code == 415  # never a cross-site form post
        assert browser.post("/api/signup", content=b"[1",
                            headers={"content-type": "application/json"}).status_code == 400
        assert "cf_session" not in browser.cookies
    # the film is still good for the right person
    with visitor(server) as browser:
        assert sign_up(browser, film_url=url).status_code == 201


# -- records linked by an operator, and records in another account ---------------------------


def test_a_claim_code_sign_up_adopts_the_person_an_operator_made(
        server: Server, operator: Account) -> None:
    pid = unique("O")
    study = store_study(server, operator, HOSPITAL_A, pid)
    person = operator.http.post("/api/persons", json={"display_name": "王芳"}).json()["id"]
    linked = operator.http.post(f"/api/persons/{person}/records",
                                json={"patient_id": pid, "issuer": HOSPITAL_A.issuer})
    assert linked.status_code == 201, linked.text
    with visitor(server) as browser:
        made = sign_up(browser, claim_code=claim_code(server, study))
        assert made.status_code == 201, made.text
        assert made.json()["person_id"] == person and made.json()["outcome"] == "adopted"
        assert [s["study_uid"] for s in browser.get("/api/me/timeline").json()["studies"]] \
            == [study]


def test_a_claim_after_an_operator_linked_the_record_is_no_longer_a_conflict(
        server: Server, operator: Account) -> None:
    pid = unique("C")
    study = store_study(server, operator, HOSPITAL_A, pid)
    person = operator.http.post("/api/persons", json={"display_name": "desk"}).json()["id"]
    operator.http.post(f"/api/persons/{person}/records",
                       json={"patient_id": pid, "issuer": HOSPITAL_A.issuer})
    patient = make_account(server, "patient")
    claimed = patient.http.post("/api/me/claim", json={"code": claim_code(server, study)})
    assert claimed.status_code == 200, claimed.text
    assert [s["study_uid"] for s in patient.http.get("/api/me/timeline").json()["studies"]] \
        == [study]


def test_a_record_in_another_account_is_refused_without_saying_whose(
        server: Server, operator: Account) -> None:
    pid = unique("H")
    study = store_study(server, operator, HOSPITAL_A, pid, name="Zhao^Liu")
    owner = make_account(server, "patient", "赵六")
    assert owner.http.post("/api/me/claim",
                           json={"code": claim_code(server, study)}).status_code == 200
    url = issue_film(operator, study)
    with visitor(server) as browser:
        refused = sign_up(browser, film_url=url)
        assert refused.status_code == 409, refused.text
        assert "cf_session" not in browser.cookies
    other = make_account(server, "patient")
    kept = other.http.post("/api/me/films", json={"film_url": url, "birth_date": "1960-01-01"})
    assert kept.status_code == 409
    for answer in (refused, kept):
        assert "another person's account" in answer.text
        for secret in (owner.name, "赵六", "Zhao", str(owner.person_id)):
            assert secret not in answer.text
    assert [s["study_uid"] for s in owner.http.get("/api/me/timeline").json()["studies"]] \
        == [study]


# -- signed in ----------------------------------------------------------------------------


def test_a_signed_in_patient_keeps_a_film_with_one_birth_date(
        server: Server, operator: Account) -> None:
    study = store_study(server, operator, HOSPITAL_A, unique("K"))
    url = issue_film(operator, study)
    patient = make_account(server, "patient")
    wrong = patient.http.post("/api/me/films", json={"film_url": url, "birth_date": "1959-1-1"})
    assert wrong.status_code == 403
    kept = patient.http.post("/api/me/films", json={"film_url": url, "birth_date": "1960-01-01"})
    assert kept.status_code == 201, kept.text
    assert kept.json()["method"] == "film"
    assert [s["study_uid"] for s in patient.http.get("/api/me/timeline").json()["studies"]] \
        == [study]
    assert film_opens(server, url, study)  # the film follows its record to the new folder


def test_the_claim_page_adds_a_code_for_a_signed_in_patient(
        server: Server, operator: Account) -> None:
    first = store_study(server, operator, HOSPITAL_A, unique("P"))
    second = store_study(server, operator, HOSPITAL_A, unique("Q"))
    with visitor(server) as browser:
        assert sign_up(browser, claim_code=claim_code(server, first)).status_code == 201
        page = browser.get("/claim", headers={"Accept-Language": "zh-CN"})
        assert page.status_code == 200 and "领取码" in page.text
        wrong = browser.post("/claim", data={"csrf": browser.cookies["cf_csrf"],
                                              "code": "0000000000"})
        assert wrong.status_code == 404 and 'role="alert"' in wrong.text
        added = browser.post("/claim", data={"csrf": browser.cookies["cf_csrf"],
                                              "code": claim_code(server, second)})
        assert added.status_code == 303, added.text
        uids = {s["study_uid"] for s in browser.get("/api/me/timeline").json()["studies"]}
        assert uids == {first, second}


def test_the_keep_page_confirms_the_birth_date_for_a_signed_in_patient(
        server: Server, operator: Account) -> None:
    first = store_study(server, operator, HOSPITAL_A, unique("R"))
    kept = store_study(server, operator, HOSPITAL_A, unique("T"))
    url = issue_film(operator, kept)
    with visitor(server) as browser:
        assert sign_up(browser, claim_code=claim_code(server, first)).status_code == 201
        page = browser.get("/keep", headers={"Accept-Language": "zh-CN"})
        assert page.status_code == 200 and "保存到我的影像夹" in page.text and 'name="film"' in page.text
        form = {"csrf": browser.cookies["cf_csrf"], "film": url}
        wrong = browser.post("/keep", data=form | {"birth_date": "1960-02-01"})
        assert wrong.status_code == 403 and "birth date does not match" in wrong.text
        done = browser.post("/keep", data=form | {"birth_date": "1960-01-01"})
        assert done.status_code == 303 and done.headers["location"] == "/timeline?done=kept"
        uids = {s["study_uid"] for s in browser.get("/api/me/timeline").json()["studies"]}
        assert uids == {first, kept}
        assert browser.post("/keep", data=form | {"birth_date": "1960-01-01",
                                                  "csrf": "forged"}).status_code == 403


def test_a_signed_in_patient_who_scans_a_film_gets_the_keep_form_then_the_study(
        server: Server, operator: Account) -> None:
    """Scanning the QR while signed in: the one-question keep form (not "you are signed in"),
    with the secret in the form, never in a URL; once kept, the same film opens the study in
    the patient's own folder. Staff still get the "open it in a private window" page."""
    first = store_study(server, operator, HOSPITAL_A, unique("U"))
    kept = store_study(server, operator, HOSPITAL_A, unique("V"))
    url = issue_film(operator, kept)
    secret = url.rsplit("/s/", 1)[1]
    with visitor(server) as browser:
        assert sign_up(browser, claim_code=claim_code(server, first)).status_code == 201
        page = browser.get(url, headers={"Accept-Language": "zh-CN"})
        assert page.status_code == 200 and "保存到我的影像夹" in page.text
        assert page.headers["cache-control"] == "no-store"
        assert f'name="film" value="{secret}"' in page.text and 'action="/keep"' in page.text
        done = browser.post("/keep", data={"csrf": browser.cookies["cf_csrf"], "film": secret,
                                           "birth_date": "1960-01-01"})
        assert done.status_code == 303, done.text
        again = browser.get(url)
        assert again.status_code == 303 and again.headers["location"] == f"/studies/{kept}"
        assert kept in browser.get(again.headers["location"]).text
    with visitor(server) as stranger:  # another patient: the form, and keeping is refused
        assert sign_up(stranger, claim_code=claim_code(server, store_study(
            server, operator, HOSPITAL_A, unique("W")))).status_code == 201
        assert stranger.get(url).status_code == 200
        refused = stranger.post("/keep", data={"csrf": stranger.cookies["cf_csrf"],
                                               "film": secret, "birth_date": "1960-01-01"})
        assert refused.status_code == 409 and kept not in refused.text
    assert operator.http.get(url).status_code == 409  # staff: a private window, as before


def test_nodules_measured_before_the_patient_keeps_the_film_follow_the_record(
        server: Server, operator: Account) -> None:
    """The hospital measured a nodule before the patient kept the film: it is in the
    patient's folder afterwards (not left behind with the record's old holder), and the
    exam keeps its guideline result."""
    study = store_study(server, operator, HOSPITAL_A, unique("M"))
    url = issue_film(operator, study)  # the record now belongs to an account-less person
    with server.http() as admin:
        image = admin.get(f"/dicomweb/studies/{study}/instances").json()[0]
        made = admin.post(f"/api/studies/{study}/nodules", json={
            "series_uid": image["0020000E"]["Value"][0],
            "instance_uid": image["00080018"]["Value"][0], "center_patient_mm": [1, 1, 1.25],
            "long_axis_mm": 8.0, "short_axis_mm": 6.0, "nodule_type": "solid"})
        assert made.status_code == 201, made.text
        wait_for_tracking(admin, study)
    with visitor(server) as browser:
        first = store_study(server, operator, HOSPITAL_A, unique("O"))
        assert sign_up(browser, claim_code=claim_code(server, first)).status_code == 201
        kept = browser.post("/api/me/films", headers=csrf_of(browser),
                            json={"film_url": url, "birth_date": "1960-01-01"})
        assert kept.status_code == 201, kept.text
        me = browser.get("/api/me").json()["person_id"]
        moved = wait_for_tracking(browser, study)  # the folder changed: tracked again in a job
        nodules = browser.get(f"/api/persons/{me}/nodules").json()["nodules"]
        assert [[m["long_axis_mm"] for m in n["measurements"]] for n in nodules] == [[8.0]]
        assert moved["assessment"]["category"]


def test_the_sign_up_form_needs_its_own_token_and_signs_in(
        server: Server, operator: Account) -> None:
    study = store_study(server, operator, HOSPITAL_A, unique("S"))
    with visitor(server) as browser:
        page = browser.get("/claim")  # not signed in: the sign-up page with a code field
        assert page.status_code == 200 and 'name="code"' in page.text
        token = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)  # type: ignore
        fields = {"code": claim_code(server, study), "display_name": "张三", "birth_date":
                  "1960-01-01", "username": f"{secrets.token_hex(4)}@example.cn",
                  "password": PASSWORD, "film": "", "invite": ""}
        forged = browser.post("/signup", data=fields | {"csrf": "x" * 64})
        assert forged.status_code == 403 and "cf_session" not in browser.cookies
        made = browser.post("/signup", data=fields | {"csrf": token})
        assert made.status_code == 303, made.text
        assert [s["study_uid"] for s in browser.get("/api/me/timeline").json()["studies"]] \
            == [study]


# -- family ---------------------------------------------------------------------------------


def test_a_family_helper_signs_up_through_the_invitation_link(
        server: Server, operator: Account) -> None:
    patient = make_account(server, "patient", "王芳")
    pid = unique("G")
    study = store_study(server, operator, HOSPITAL_A, pid)
    assert operator.http.post(f"/api/persons/{patient.person_id}/records", json={
        "patient_id": pid, "issuer": HOSPITAL_A.issuer}).status_code == 201
    invited = patient.http.post("/api/me/caregiver-invites", json={})
    assert invited.status_code == 201, invited.text
    url = invited.json()["url"]
    secret = url.rsplit("/caregivers/join/", 1)[1]
    with visitor(server) as helper:
        page = helper.get(url, headers={"Accept-Language": "zh-CN"})
        assert page.status_code == 200 and "王芳" in page.text and "/signup?invite=" in page.text
        made = helper.post("/api/signup", json={"username": f"{secrets.token_hex(4)}@qq.com",
                                                "password": PASSWORD, "display_name": "女儿",
                                                "invitation": secret})
        assert made.status_code == 201, made.text
        assert made.json()["role"] == "caregiver"
        timeline = helper.get(f"/api/me/timeline?person={patient.person_id}")
        assert [s["study_uid"] for s in timeline.json()["studies"]] == [study]
        shown = helper.get("/timeline", headers={"Accept-Language": "zh-CN"})
        assert shown.status_code == 200 and "王芳" in shown.text and study in shown.text
        opened = helper.get(f"/studies/{study}", headers={"Accept-Language": "zh-CN"})
        assert "这是 王芳 的影像夹" in opened.text
        again = helper.post("/api/signup", json={"username": new_login(), "password": PASSWORD,
                                                 "display_name": "x", "invitation": secret},
                            headers=csrf_of(helper))
        assert again.status_code == 404  # single use
    helpers = patient.http.get("/api/me/caregivers").json()
    assert [h["status"] for h in helpers] == ["active"]
