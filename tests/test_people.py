"""One person across hospitals, claim codes, suggestions, timelines and caregivers, against
the real server (SQLite and PostgreSQL), with accounts made by the ``cloudfilm`` CLI.

Issue "People, access and sharing": records (IssuerOfPatientID, PatientID) of two
hospitals join one Person (by an operator, a claim code or a confirmed suggestion);
every link/unlink is audited; the timeline is filtered by the policy; caregivers act
on the patient's behalf and the audit says so.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select, update

from cloudfilm.services.access.accounts import AccountService
from cloudfilm.services.access.people import CLAIM_ALPHABET, new_claim_code, normalise_claim_code
from cloudfilm.storage.index.access_models import AuditEventRow, ClaimCodeRow, OutboxRow, UserRow
from cloudfilm.storage.index.db import Index
from cloudfilm.web.i18n import translations
from conftest import Server, run_cli
from factory import make_instance, stow, to_bytes

PASSWORD = "correct horse battery staple"
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


# -- helpers (also used by test_sharing.py) ----------------------------------------------


@dataclass
class Account:
    name: str
    person_id: int | None
    http: httpx.Client


def make_account(server: Server, role: str, display_name: str = "", *,
                 via_cli: bool = False) -> Account:
    """A user with a bearer token: by ``cloudfilm user add`` / ``token issue``, or (faster,
    the same service underneath) by the accounts service on the server's index."""
    name = f"{role}-{secrets.token_hex(4)}"
    token = _cli_account(server, name, role, display_name) if via_cli else \
        _service_account(server, name, role, display_name)
    http = httpx.Client(base_url=server.url, timeout=60,
                        headers={"Authorization": f"Bearer {token}"})
    me = http.get("/api/me")
    assert me.status_code == 200, me.text
    return Account(name, me.json()["person_id"], http)


def _cli_account(server: Server, name: str, role: str, display_name: str) -> str:
    extra = ["--display-name", display_name] if display_name else []
    added = run_cli(["user", "add", name, "--role", role, "--password-stdin",
                     "--data", str(server.data_dir), *extra], server.database_url,
                    input=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    issued = run_cli(["token", "issue", name, "--data", str(server.data_dir)], server.database_url)
    assert issued.returncode == 0, issued.stderr
    return issued.stdout.strip()


def _service_account(server: Server, name: str, role: str, display_name: str) -> str:
    index = Index(server.database_url)
    try:
        accounts = AccountService(index)
        accounts.add_user(name, role, PASSWORD, display_name=display_name)
        return accounts.issue_token(name)
    finally:
        index.dispose()


@dataclass(frozen=True)
class Hospital:
    name: str
    issuer: str


HOSPITAL_A = Hospital("Hospital A", "HOSP-A")
HOSPITAL_B = Hospital("Hospital B", "HOSP-B")


def store_study(server: Server, uploader: Account, hospital: Hospital, patient_id: str, *,
                date: str = "20250301", name: str = "Zhang^San", birth: str = "19600101",
                sex: str = "F", modality: str = "CT", documents: bool = False) -> str:
    """One study (2 images, plus a PDF and a secondary capture if asked) via STOW-RS."""
    study, series = generate_uid(), generate_uid()
    charset = None if name.isascii() else "ISO_IR 192"
    common: dict[str, Any] = dict(study=study, patient_id=patient_id, issuer=hospital.issuer,
                                  charset=charset,
                                  patient_name=name, study_date=date, InstitutionName=hospital.name,
                                  PatientBirthDate=birth, PatientSex=sex)
    parts = [make_instance(series=series, modality=modality, instance_number=n, rows=4,
                           columns=4, **common) for n in (1, 2)]
    if documents:
        parts += [pdf_instance(**common), secondary_capture(**common)]
    with httpx.Client(base_url=server.dicomweb, timeout=60, headers=uploader.http.headers) as http:
        response = stow(http, [to_bytes(p) for p in parts])
    assert response.status_code == 200, response.text
    return study


def pdf_instance(**common: Any) -> Any:
    ds = make_instance(modality="DOC", SeriesDescription="Letters", **common)
    for keyword in ("PixelData", "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation",
                    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
                    "RescaleIntercept", "RescaleSlope", "PixelSpacing", "ImagePositionPatient",
                    "ImageOrientationPatient"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = PDF_CLASS
    ds.DocumentTitle = "Discharge letter"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = b"%PDF-1.4\n% test\n%%EOF\n"
    return ds


def secondary_capture(**common: Any) -> Any:
    ds = make_instance(modality="OT", SeriesDescription="Key image", rows=4, columns=4, **common)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SC_CLASS
    return ds


def link(operator: Account, person_id: int | None, patient_id: str, issuer: str) -> httpx.Response:
    return operator.http.post(f"/api/persons/{person_id}/records",
                              json={"patient_id": patient_id, "issuer": issuer})


def fetch(server: Server, statement: Any) -> list[Any]:
    """Rows read straight from the server's index (what it really stored)."""
    index = Index(server.database_url)
    try:
        with index.session() as session:
            return list(session.scalars(statement))
    finally:
        index.dispose()


def audit_rows(server: Server, action: str, person_id: int | None = None) -> list[AuditEventRow]:
    statement = select(AuditEventRow).where(AuditEventRow.action == action)
    if person_id is not None:
        statement = statement.where(AuditEventRow.person_id == person_id)
    return fetch(server, statement.order_by(AuditEventRow.id))


def execute(server: Server, statement: Any) -> None:
    index = Index(server.database_url)
    try:
        with index.write_session() as session:
            session.execute(statement)
            session.commit()
    finally:
        index.dispose()


def uid_list(timeline: httpx.Response) -> list[str]:
    assert timeline.status_code == 200, timeline.text
    return [s["study_uid"] for s in timeline.json()["studies"]]


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(3)}"


@pytest.fixture(scope="module")
def staff(server: Server) -> Iterator[dict[str, Account]]:
    """One operator and one physician per server."""
    accounts = {"operator": make_account(server, "operator", via_cli=True),
                "physician": make_account(server, "physician", via_cli=True)}
    yield accounts
    for account in accounts.values():
        account.http.close()


# -- records across hospitals ------------------------------------------------------------


def test_records_of_two_hospitals_form_one_timeline(server: Server,
                                                    staff: dict[str, Account]) -> None:
    operator, patient = staff["operator"], make_account(server, "patient")
    pid_a, pid_b = unique("A"), unique("B")
    old = store_study(server, operator, HOSPITAL_A, pid_a, date="20230105", documents=True)
    new = store_study(server, operator, HOSPITAL_B, pid_b, date="20250720", modality="MR",
                      name="ZHANG^SAN=张三")
    assert uid_list(patient.http.get("/api/me/timeline")) == []
    assert link(operator, patient.person_id, pid_a, HOSPITAL_A.issuer).status_code == 201
    assert link(operator, patient.person_id, pid_b, HOSPITAL_B.issuer).status_code == 201
    studies = patient.http.get("/api/me/timeline").json()["studies"]
    assert [s["study_uid"] for s in studies] == [new, old]  # newest first
    newest, oldest = studies
    assert (newest["date"], newest["hospital"], newest["modalities"]) == \
        ("2025-07-20", "Hospital B", ["MR"])
    assert (oldest["series"], oldest["instances"], oldest["description"]) == (3, 4, "CT CHEST")
    assert sorted(oldest["modalities"]) == ["CT", "DOC", "OT"]
    kinds = {d["kind"]: d["title"] for d in oldest["documents"]}
    assert kinds == {"pdf": "Discharge letter", "secondary-capture": "Key image"}
    assert newest["documents"] == []
    record = patient.http.get(f"/api/persons/{patient.person_id}").json()["records"]
    assert {(r["issuer"], r["patient_id"], r["studies"]) for r in record} == \
        {(HOSPITAL_A.issuer, pid_a, 1), (HOSPITAL_B.issuer, pid_b, 1)}


def test_links_are_operator_only_unique_and_audited(server: Server,
                                                    staff: dict[str, Account]) -> None:
    operator, patient, other = staff["operator"], make_account(server, "patient"), \
        make_account(server, "patient")
    pid = unique("A")
    study = store_study(server, operator, HOSPITAL_A, pid)
    assert link(patient, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 403
    assert link(operator, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    again = link(operator, patient.person_id, pid, HOSPITAL_A.issuer)  # a no-op, not audited
    assert again.status_code == 201
    assert link(operator, other.person_id, pid, HOSPITAL_A.issuer).status_code == 409
    other_hospital = link(operator, patient.person_id, pid, "HOSP-OTHER")  # same ID, other issuer
    assert other_hospital.status_code == 201
    assert uid_list(other.http.get("/api/me/timeline")) == []
    gone = operator.http.delete(f"/api/persons/{patient.person_id}/records",
                                params={"patient_id": pid, "issuer": HOSPITAL_A.issuer})
    assert gone.status_code == 204
    assert study not in uid_list(patient.http.get("/api/me/timeline"))
    linked = audit_rows(server, "link", patient.person_id)
    unlinked = audit_rows(server, "unlink", patient.person_id)
    assert [r.actor for r in linked] == [operator.name, operator.name]
    assert [r.patient_ref for r in unlinked] == [f"{HOSPITAL_A.issuer}/{pid}"]


def test_cli_links_and_unlinks_records(server: Server, staff: dict[str, Account]) -> None:
    patient = make_account(server, "patient")
    pid = unique("B")
    study = store_study(server, staff["operator"], HOSPITAL_B, pid)
    base = ["--data", str(server.data_dir), str(patient.person_id), "--patient-id", pid,
            "--issuer", HOSPITAL_B.issuer]
    linked = run_cli(["person", "link", *base], server.database_url)
    assert linked.returncode == 0, linked.stderr
    assert uid_list(patient.http.get("/api/me/timeline")) == [study]
    unlinked = run_cli(["person", "unlink", *base], server.database_url)
    assert unlinked.returncode == 0, unlinked.stderr
    assert uid_list(patient.http.get("/api/me/timeline")) == []
    again = run_cli(["person", "unlink", *base], server.database_url)
    assert again.returncode == 1 and "not linked" in again.stderr
    (entry,) = audit_rows(server, "link", patient.person_id)
    assert entry.actor.startswith("cli:") and json.loads(entry.detail)["method"] == "operator"


def test_suggestions_match_name_birth_date_and_sex(server: Server,
                                                   staff: dict[str, Account]) -> None:
    operator = staff["operator"]
    surname = "Zz" + secrets.token_hex(3).replace("0", "a")
    patient = make_account(server, "patient")
    pid_a, pid_b, pid_c, pid_d = (unique(x) for x in "ABCD")
    store_study(server, operator, HOSPITAL_A, pid_a, name=f"{surname}^Mei")
    store_study(server, operator, HOSPITAL_B, pid_b, name=f"{surname.upper()}^MEI")  # same person
    store_study(server, operator, HOSPITAL_B, pid_c, name=f"{surname}^Mei", birth="19610101")
    store_study(server, operator, HOSPITAL_B, pid_d, name=f"{surname}^Mei", sex="M")
    assert link(operator, patient.person_id, pid_a, HOSPITAL_A.issuer).status_code == 201
    url = f"/api/persons/{patient.person_id}/suggestions"
    assert patient.http.get(url).status_code == 403
    found = operator.http.get(url).json()
    assert [(s["issuer"], s["patient_id"]) for s in found] == [(HOSPITAL_B.issuer, pid_b)]
    assert link(operator, patient.person_id, pid_b, HOSPITAL_B.issuer).status_code == 201
    assert operator.http.get(url).json() == []


# -- claim codes -------------------------------------------------------------------------


def claim_code(server: Server, study: str) -> str:
    result = run_cli(["claim-code", study, "--data", str(server.data_dir)], server.database_url)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_claim_code_links_the_study_record_once(server: Server, staff: dict[str, Account]) -> None:
    patient, other = make_account(server, "patient"), make_account(server, "patient")
    pid = unique("A")
    study = store_study(server, staff["operator"], HOSPITAL_A, pid)
    sibling = store_study(server, staff["operator"], HOSPITAL_A, pid, date="20200101")
    code = claim_code(server, study)
    assert len(code) == 10 and code.isalnum() and code.upper() == code
    assert not set(code) & set("ILOU")
    typed = f"{code[:5].lower()}-{code[5:]}"  # as a person might type it
    claimed = patient.http.post("/api/me/claim", json={"code": typed})
    assert claimed.status_code == 200, claimed.text
    assert (claimed.json()["patient_id"], claimed.json()["method"]) == (pid, "claim-code")
    assert uid_list(patient.http.get("/api/me/timeline")) == [study, sibling]  # the whole record
    assert other.http.post("/api/me/claim", json={"code": code}).status_code == 404  # single use
    (stored,) = fetch(server, select(ClaimCodeRow).where(ClaimCodeRow.study_uid == study))
    assert stored.code_hash == hashlib.sha256(code.encode()).hexdigest() and stored.used_at
    assert [json.loads(r.detail)["method"] for r in audit_rows(server, "link", patient.person_id)] \
        == ["claim-code"]


def test_claim_codes_expire_and_unknown_ones_fail(server: Server,
                                                  staff: dict[str, Account]) -> None:
    patient = make_account(server, "patient")
    study = store_study(server, staff["operator"], HOSPITAL_B, unique("B"))
    code = claim_code(server, study)
    execute(server, update(ClaimCodeRow).where(ClaimCodeRow.study_uid == study).values(
        expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    assert patient.http.post("/api/me/claim", json={"code": code}).status_code == 404
    assert patient.http.post("/api/me/claim", json={"code": "ZZZZZZZZZZ"}).status_code == 404
    assert uid_list(patient.http.get("/api/me/timeline")) == []
    fresh = claim_code(server, study)
    assert patient.http.post("/api/me/claim", json={"code": fresh}).status_code == 200


def test_guessing_claim_codes_locks_out(server: Server, staff: dict[str, Account]) -> None:
    patient = make_account(server, "patient")
    study = store_study(server, staff["operator"], HOSPITAL_A, unique("A"))
    code = claim_code(server, study)
    statuses = [patient.http.post("/api/me/claim", json={"code": "0000000000"}).status_code
                for _ in range(5)]
    assert statuses == [404] * 5
    locked = patient.http.post("/api/me/claim", json={"code": code})
    assert locked.status_code == 429 and "try again" in locked.json()["error"]


# -- who sees a timeline -----------------------------------------------------------------


def test_physician_timeline_shows_only_what_grants_cover(server: Server,
                                                         staff: dict[str, Account]) -> None:
    operator, physician = staff["operator"], staff["physician"]
    patient = make_account(server, "patient")
    pid = unique("A")
    first = store_study(server, operator, HOSPITAL_A, pid, date="20240101")
    second = store_study(server, operator, HOSPITAL_A, pid, date="20250101")
    assert link(operator, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    url = f"/api/patients/{patient.person_id}/timeline"
    assert physician.http.get(url).status_code == 404  # no grant: not even that the person exists
    share = patient.http.post("/api/shares", json={
        "scope": {"studies": [first]}, "audience": {"physician": physician.name},
        "permissions": ["view"]})
    assert share.status_code == 201, share.text
    assert uid_list(physician.http.get(url)) == [first]
    assert uid_list(operator.http.get(url)) == [second, first]
    assert make_account(server, "patient").http.get(url).status_code == 404
    assert physician.http.get("/api/patients/999999/timeline").status_code == 404
    assert [r.actor for r in audit_rows(server, "query", patient.person_id)][-2:] == \
        [physician.name, operator.name]


# -- caregivers --------------------------------------------------------------------------


def test_caregiver_invitation_acceptance_and_acting_on_behalf(server: Server,
                                                              staff: dict[str, Account]) -> None:
    operator, patient = staff["operator"], make_account(server, "patient")
    carer, stranger = make_account(server, "caregiver"), make_account(server, "caregiver")
    pid = unique("A")
    study = store_study(server, operator, HOSPITAL_A, pid)
    assert link(operator, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    invited = patient.http.post("/api/me/caregivers", json={})
    assert invited.status_code == 201 and invited.json()["status"] == "invited"
    secret = invited.json()["url"].rsplit("/caregivers/join/", 1)[1]
    mine = f"/api/me/timeline?person={patient.person_id}"
    assert carer.http.get(mine).status_code == 404  # not before accepting
    pending = patient.http.get("/api/me/caregivers").json()
    assert [(c["user_id"], c["status"]) for c in pending] == [(None, "invited")]
    wrong = stranger.http.post("/api/caregiving/join", json={"invitation": secret[:-2] + "xx"})
    assert wrong.status_code == 404
    accepted = carer.http.post("/api/caregiving/join", json={"invitation": secret})
    assert accepted.status_code == 200 and accepted.json()["status"] == "active"
    assert uid_list(carer.http.get(mine)) == [study]
    used = stranger.http.post("/api/caregiving/join", json={"invitation": secret})
    assert used.status_code == 404  # single use
    assert stranger.http.get(mine).status_code == 404
    share = carer.http.post("/api/shares", json={"scope": {"studies": [study]}, "audience": "link"})
    assert share.status_code == 201, share.text
    created = audit_rows(server, "share-create", patient.person_id)
    assert [(r.actor, r.on_behalf_of) for r in created] == \
        [(carer.name, f"person:{patient.person_id}")]
    assert [s["id"] for s in patient.http.get("/api/shares").json()] == [share.json()["id"]]


def test_patient_removes_a_caregiver_at_once(server: Server, staff: dict[str, Account]) -> None:
    operator, patient = staff["operator"], make_account(server, "patient")
    carer = make_account(server, "caregiver")
    pid = unique("B")
    study = store_study(server, operator, HOSPITAL_B, pid)
    assert link(operator, patient.person_id, pid, HOSPITAL_B.issuer).status_code == 201
    direct = operator.http.post(f"/api/persons/{patient.person_id}/caregivers",
                                json={"username": carer.name})
    assert direct.status_code == 201 and direct.json()["status"] == "active"
    assert patient.http.post(f"/api/persons/{patient.person_id}/caregivers",
                             json={"username": carer.name}).status_code == 403
    mine = f"/api/me/timeline?person={patient.person_id}"
    assert uid_list(carer.http.get(mine)) == [study]
    listed = patient.http.get("/api/me/caregivers").json()
    assert [(c["username"], c["status"]) for c in listed] == [(carer.name, "active")]
    removed = patient.http.delete(f"/api/me/caregivers/{listed[0]['user_id']}")
    assert removed.status_code == 204
    assert carer.http.get(mine).status_code == 404
    assert carer.http.post("/api/shares", json={"scope": {"studies": [study]},
                                                "audience": "link"}).status_code == 403
    assert patient.http.get("/api/me/caregivers").json() == []


def test_claim_codes_are_50_bits_from_an_unambiguous_alphabet() -> None:
    codes = {new_claim_code() for _ in range(500)}
    assert len(codes) == 500
    assert all(len(c) == 10 and set(c) <= set(CLAIM_ALPHABET) for c in codes)
    assert len(CLAIM_ALPHABET) ** 10 >= 2 ** 50 and not set("ILOU") & set(CLAIM_ALPHABET)
    assert normalise_claim_code(" abcde-fghjk ") == "ABCDEFGHJK"
    assert normalise_claim_code("o-i l") == "011"  # read as the digits they look like


def test_invitations_name_nobody_and_staff_cannot_become_caregivers(
        server: Server, staff: dict[str, Account]) -> None:
    """Issue 11: an invite by name told "no user named x" apart from a real account, and
    could make a physician a caregiver."""
    patient = make_account(server, "patient")
    carer = make_account(server, "caregiver")
    answers = [patient.http.post("/api/me/caregivers", json={"username": name})
               for name in (carer.name, f"nobody-{secrets.token_hex(4)}", staff["physician"].name)]
    assert len({(a.status_code, a.text) for a in answers}) == 1, [a.text for a in answers]
    assert answers[0].status_code == 400 and "by link" in answers[0].json()["error"]
    assert patient.http.get("/api/me/caregivers").json() == []  # nothing was invited
    invited = patient.http.post("/api/me/caregivers", json={})
    secret = invited.json()["url"].rsplit("/caregivers/join/", 1)[1]
    for who in (staff["physician"], staff["operator"]):
        refused = who.http.post("/api/caregiving/join", json={"invitation": secret})
        assert refused.status_code == 403 and "staff" in refused.json()["error"]
    assert staff["physician"].http.get(
        f"/api/me/timeline?person={patient.person_id}").status_code == 404
    assert patient.http.post(f"/api/persons/{patient.person_id}/caregivers",
                             json={"username": carer.name}).status_code == 403
    direct = staff["operator"].http.post(f"/api/persons/{patient.person_id}/caregivers",
                                         json={"username": staff["physician"].name})
    assert direct.status_code == 400 and "staff" in direct.json()["error"]
    assert carer.http.post("/api/caregiving/join", json={"invitation": secret}).status_code == 200
    withdrawn = patient.http.post("/api/me/caregivers", json={}).json()
    assert patient.http.delete(
        f"/api/me/caregivers/invitations/{withdrawn['invite_id']}").status_code == 204
    late = make_account(server, "caregiver").http.post(
        "/api/caregiving/join", json={"invitation": withdrawn["url"].rsplit("/", 1)[1]})
    assert late.status_code == 404


def test_removing_a_caregiver_revokes_the_links_they_made(server: Server,
                                                          staff: dict[str, Account]) -> None:
    """Issue 11, finding 4: a whole-timeline link made by a removed caregiver still opened."""
    operator, patient = staff["operator"], make_account(server, "patient")
    carer = make_account(server, "caregiver")
    pid = unique("C")
    study = store_study(server, operator, HOSPITAL_A, pid)
    assert link(operator, patient.person_id, pid, HOSPITAL_A.issuer).status_code == 201
    assert operator.http.post(f"/api/persons/{patient.person_id}/caregivers",
                              json={"username": carer.name}).status_code == 201
    timeline = carer.http.post("/api/shares", json={
        "scope": {"patient": patient.person_id, "include_future": True}, "audience": "link"})
    own = patient.http.post("/api/shares", json={"scope": {"studies": [study]},
                                                 "audience": "link"})
    assert timeline.status_code == 201 and own.status_code == 201
    visitor = httpx.Client(base_url=server.url, timeout=60)
    path = "/s/" + timeline.json()["url"].rsplit("/s/", 1)[1]
    assert visitor.get(path).status_code == 303  # opens, and starts a link session
    assert study in visitor.get("/shared").text
    carer_id = [c["user_id"] for c in patient.http.get("/api/me/caregivers").json()]
    assert patient.http.delete(f"/api/me/caregivers/{carer_id[0]}").status_code == 204
    assert visitor.get("/shared").status_code in (401, 404)  # the open session ended too
    assert httpx.get(server.url + path).status_code == 404
    own_path = "/s/" + own.json()["url"].rsplit("/s/", 1)[1]
    assert httpx.get(server.url + own_path).status_code == 303  # the patient's own link stays
    statuses = {s["id"]: s["status"] for s in patient.http.get("/api/shares").json()}
    assert statuses[timeline.json()["id"]] == "revoked" and statuses[own.json()["id"]] == "active"
    (me,) = fetch(server, select(UserRow.id).where(UserRow.username == patient.name))
    told = fetch(server, select(OutboxRow).where(OutboxRow.recipient_user_id == me,
                                                 OutboxRow.kind == "caregiver-removed"))
    assert [(m.channel, m.subject) for m in told] == [("in-app", "A family helper was removed")]
    zh = translations("zh")
    assert zh.gettext(told[0].subject) != told[0].subject and zh.gettext(told[0].body) != told[0].body
    revoked = [json.loads(r.detail) for r in audit_rows(server, "share-revoke", patient.person_id)]
    assert {"share": timeline.json()["id"], "reason": "caregiver removed"} in revoked
    visitor.close()


def test_the_invitation_page_makes_a_link_a_family_member_accepts(
        server: Server, staff: dict[str, Account]) -> None:
    patient, carer = make_account(server, "patient", "王芳"), make_account(server, "caregiver")
    made = patient.http.post("/caregivers/invite")
    assert made.status_code == 200 and made.headers["cache-control"] == "no-store"
    found = re.search(r'value="https?://[^/"]+(/caregivers/join/[A-Za-z0-9_-]+)"', made.text)
    assert found, made.text[-3000:]
    path = found.group(1)
    shown = carer.http.get(path)
    assert shown.status_code == 200 and "王芳 asks you to be their family helper." in shown.text
    assert f'action="{path}"' in shown.text
    assert "王芳 邀请您成为其家属代理人。" in carer.http.get(path, headers={
        "Accept-Language": "zh-CN"}).text
    staff_page = staff["physician"].http.get(path)
    assert staff_page.status_code == 403 and "Staff accounts cannot be family helpers" in \
        staff_page.text
    accepted = carer.http.post(path)
    assert accepted.status_code == 303 and accepted.headers["location"].endswith("done=accepted")
    assert carer.http.get(path).status_code == 404  # used
    assert carer.name in patient.http.get("/caregivers").text
