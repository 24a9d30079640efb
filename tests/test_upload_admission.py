"""Uploads into a patient's folder: their own images go in (and link a new hospital record),
anyone else's fail alone with the reason, and the rest of the batch is stored."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import httpx
import pytest

from conftest import Server, admin_token
from factory import make_instance, multipart_related, to_bytes

ME = dict(patient_name="Chen^Mei", patient_id="CM-1", issuer="HOSP_A")


@pytest.fixture(scope="module")
def patient(server: Server) -> Iterator[tuple[httpx.Client, int]]:
    """A patient whose person has a name, birth date and sex, with a record at hospital A."""
    token = admin_token(server.database_url, "chen-mei", "patient")
    with server.http() as admin, httpx.Client(base_url=server.url, timeout=60, headers={
            "Authorization": f"Bearer {token}"}) as client:
        created = admin.post("/api/persons", json={
            "display_name": "Chen^Mei", "birth_date": "19600101", "sex": "F",
            "username": "chen-mei"})
        assert created.status_code == 201, created.text
        person = created.json()["id"]
        assert admin.post(f"/api/persons/{person}/records", json={
            "patient_id": "CM-1", "issuer": "HOSP_A"}).status_code == 201
        yield client, person


def _stow(client: httpx.Client, parts: list[bytes]) -> httpx.Response:
    body, content_type = multipart_related(parts)
    return client.post("/dicomweb/studies", content=body,
                       headers={"content-type": content_type, "accept": "application/dicom+json"})


def _records(server: Server, person: int) -> set[tuple[str, str]]:
    with server.http() as admin:
        body = admin.get(f"/api/persons/{person}").json()
    return {(r["patient_id"], r["issuer"]) for r in body["records"]}


def test_a_cd_from_a_new_hospital_is_stored_and_linked(server: Server,
                                                       patient: tuple[httpx.Client, int]) -> None:
    client, person = patient
    mine = make_instance(patient_name="CHEN^MEI", patient_id="X-77", issuer="HOSP_C")
    stranger = make_instance(patient_name="Sun^Li", patient_id="X-78", issuer="HOSP_C")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("DICOM/IM0001", to_bytes(mine))
        zf.writestr("DICOM/IM0002", to_bytes(stranger))
    uploaded = client.post("/api/uploads", files={"file": ("cd.zip", archive.getvalue(),
                                                           "application/zip")})
    assert uploaded.status_code == 200, uploaded.text
    results = {r["sop_instance_uid"]: r for r in uploaded.json()["results"]}
    assert results[mine.SOPInstanceUID]["status"] == "stored"
    refused = results[stranger.SOPInstanceUID]
    assert refused["status"] == "failed"
    assert "another patient" in refused["reason"] and "name differs" in refused["reason"]
    assert ("X-77", "HOSP_C") in _records(server, person)
    assert ("X-78", "HOSP_C") not in _records(server, person)
    timeline = client.get("/api/me/timeline").json()["studies"]
    assert mine.StudyInstanceUID in {s["study_uid"] for s in timeline}
    with server.http() as admin:
        gone = admin.get("/dicomweb/studies", params={"PatientID": "X-78"}).json()
    assert gone == []


def test_stow_of_a_mixed_batch_stores_only_the_patients_own(
        server: Server, patient: tuple[httpx.Client, int]) -> None:
    client, _ = patient
    own = make_instance(**ME)
    other_birth = make_instance(patient_name="Chen^Mei", patient_id="CM-9", issuer="HOSP_D",
                                PatientBirthDate="19700101")
    stored = _stow(client, [to_bytes(own), to_bytes(other_birth)])
    assert stored.status_code == 202, stored.text
    body = stored.json()
    assert [r["00081155"]["Value"][0] for r in body["00081199"]["Value"]] == [own.SOPInstanceUID]
    failed = body["00081198"]["Value"][0]
    assert failed["00081197"]["Value"] == [0x0124]
    assert "birth date differs" in failed["00F11001"]["Value"][0]


def test_naming_someone_elses_folder_is_refused(server: Server,
                                                patient: tuple[httpx.Client, int]) -> None:
    client, person = patient
    other = admin_token(server.database_url, "someone-else", "patient")
    with httpx.Client(base_url=server.url, timeout=60,
                      headers={"Authorization": f"Bearer {other}"}) as intruder:
        refused = intruder.post(f"/api/uploads?person={person}", files={
            "file": ("a.dcm", to_bytes(make_instance(**ME)), "application/dicom")})
    assert refused.status_code == 403
    assert "may not upload into the folder" in refused.json()["error"]
    own_folder = client.post(f"/api/uploads?person={person}", files={
        "file": ("a.dcm", to_bytes(make_instance(**ME)), "application/dicom")})
    assert own_folder.status_code == 200, own_folder.text


def test_uploads_and_links_are_audited(server: Server, patient: tuple[httpx.Client, int]) -> None:
    _, person = patient
    with server.http() as admin:
        entries = admin.get("/api/audit", params={"format": "json", "person": person}).json()
    actions = [(e["action"], e["who"]) for e in entries]
    assert ("upload", "chen-mei") in actions
    links = [e for e in entries if e["action"] == "link" and e["who"] == "chen-mei"]
    assert len(links) == 1
