"""No record takeover by upload (issue 11, findings 1, 5 and 9), on a real server.

An upload by a patient, a caregiver or an AE admitted only by ``CLOUDFILM_DIMSE_ALLOW``
may create a hospital record the index has never seen, and add to one that is already
theirs. It never joins a record or study that is stored and not theirs: such an instance
fails alone with 0124H and one reason that tells nothing about what is stored. Only
hospital sources (admins, operators, registered nodes) change a record's stored
demographics, and the values they replace are kept in ``patient_history``.
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid
from sqlalchemy import select

from cloudfilm.services.archive.retention import Retention
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import PatientHistoryRow, PatientRow
from conftest import Server, admin_token, database_url_for, free_port
from factory import make_instance, multipart_related, to_bytes

UNIFORM = "this hospital record cannot be added here; ask the hospital for its claim code"
NOT_AUTHORIZED = 0x0124
HOST = "127.0.0.1"
# The uploader: what they put on the images they send, another patient's IDs included.
MEI = dict(patient_name="Chen^Mei", PatientBirthDate="19600101", PatientSex="F")


@pytest.fixture(scope="module")
def hospital(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per database, DIMSE on, admitting any calling AE (CLOUDFILM_DIMSE_ALLOW=any)."""
    data_dir = tmp_path_factory.mktemp(f"takeover-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url, extra_env={"CLOUDFILM_DIMSE_ALLOW": "any"})
    srv.dimse_port = free_port()
    try:
        yield srv.start()
    finally:
        srv.stop()
        if schema:
            schema.drop()


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


def user(server: Server, role: str) -> tuple[str, httpx.Client]:
    name = unique(role)
    token = admin_token(server.database_url, name, role)
    return name, httpx.Client(base_url=server.url, timeout=60,
                              headers={"Authorization": f"Bearer {token}"})


def new_person(server: Server, display_name: str, birth_date: str, sex: str,
               username: str | None = None) -> int:
    with server.http() as admin:
        body: dict[str, Any] = {"display_name": display_name, "birth_date": birth_date,
                                "sex": sex}
        created = admin.post("/api/persons", json=body | ({"username": username} if username
                                                          else {}))
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def link(server: Server, person: int, patient_id: str, issuer: str) -> None:
    with server.http() as admin:
        linked = admin.post(f"/api/persons/{person}/records",
                            json={"patient_id": patient_id, "issuer": issuer})
    assert linked.status_code == 201, linked.text


def stow(http: httpx.Client, datasets: list[pydicom.Dataset]) -> httpx.Response:
    body, content_type = multipart_related([to_bytes(ds) for ds in datasets])
    return http.post("/dicomweb/studies", content=body, headers={
        "content-type": content_type, "accept": "application/dicom+json"})


def admin_stores(server: Server, *datasets: pydicom.Dataset) -> None:
    with server.http() as admin:
        stored = stow(admin, list(datasets))
    assert stored.status_code == 200, stored.text


def failures(response: httpx.Response) -> dict[str, tuple[int, str]]:
    """SOP Instance UID -> (status, reason) of every FailedSOPSequence item."""
    items = response.json().get("00081198", {}).get("Value", [])
    return {i["00081155"]["Value"][0]: (i["00081197"]["Value"][0], i["00F11001"]["Value"][0])
            for i in items}


def stored_sops(response: httpx.Response) -> set[str]:
    items = response.json().get("00081199", {}).get("Value", [])
    return {i["00081155"]["Value"][0] for i in items}


def refusals_audited(server: Server, who: str, action: str) -> set[str]:
    """The studies of ``who``'s audited failures of ``action``."""
    with server.http() as admin:
        entries = admin.get("/api/audit", params={"format": "json"}).json()
    return {e["study"] for e in entries
            if e["who"] == who and e["action"] == action and e["outcome"] == "failure"}


def records_of(server: Server, person: int) -> set[tuple[str, str]]:
    with server.http() as admin:
        body = admin.get(f"/api/persons/{person}").json()
    return {(r["patient_id"], r["issuer"]) for r in body["records"]}


@dataclass
class Stored:
    """A record's row in the index, and the demographics it replaced."""

    name: str
    birth_date: str
    sex: str
    history: list[tuple[str, str, str]]


def folded(name: object) -> str:
    """A name as the index keeps it for matching (lower case)."""
    return str(name).lower()


def stored(server: Server, patient_id: str, issuer: str) -> Stored | None:
    index = Index(server.database_url)
    try:
        with index.session() as session:
            row = session.scalars(select(PatientRow).where(
                PatientRow.patient_id == patient_id, PatientRow.issuer == issuer)).first()
            if row is None:
                return None
            history = session.scalars(select(PatientHistoryRow).where(
                PatientHistoryRow.patient_pk == row.id).order_by(PatientHistoryRow.id)).all()
            return Stored(row.name_alphabetic, row.birth_date, row.sex,
                          [(h.name_alphabetic, h.birth_date, h.sex) for h in history])
    finally:
        index.dispose()


def history_rows(server: Server, patient_id: str, issuer: str) -> int:
    index = Index(server.database_url)
    try:
        with index.session() as session:
            return len(session.scalars(select(PatientHistoryRow.id).where(
                PatientHistoryRow.patient_id == patient_id,
                PatientHistoryRow.issuer == issuer)).all())
    finally:
        index.dispose()


@dataclass
class Victims:
    """Two records of other patients, stored by the hospital: one unlinked, one linked."""

    unlinked: pydicom.Dataset
    linked: pydicom.Dataset
    linked_person: int


@pytest.fixture(scope="module")
def victims(hospital: Server) -> Victims:
    issuer = unique("HOSP_V")
    unlinked = make_instance(patient_id=unique("V"), issuer=issuer, patient_name="Wang^Fang",
                             PatientBirthDate="19500505", PatientSex="M")
    linked = make_instance(patient_id=unique("V"), issuer=issuer, patient_name="Li^Lei",
                           PatientBirthDate="19410707", PatientSex="M")
    admin_stores(hospital, unlinked, linked)
    person = new_person(hospital, "Li^Lei", "19410707", "M")
    link(hospital, person, linked.PatientID, issuer)
    return Victims(unlinked, linked, person)


@dataclass
class Patient:
    name: str
    http: httpx.Client
    person: int


@pytest.fixture(scope="module")
def mei(hospital: Server) -> Iterator[Patient]:
    """A patient, Chen Mei, with her own login and folder."""
    name, http = user(hospital, "patient")
    person = new_person(hospital, "Chen^Mei", "19600101", "F", username=name)
    with http:
        yield Patient(name, http, person)


def onto(victim: pydicom.Dataset, **extra: Any) -> pydicom.Dataset:
    """The uploader's own demographics on another patient's PatientID and issuer."""
    return make_instance(patient_id=str(victim.PatientID), issuer=str(victim.IssuerOfPatientID),
                         **(MEI | extra))


def assert_untouched(server: Server, victim: pydicom.Dataset) -> None:
    row = stored(server, str(victim.PatientID), str(victim.IssuerOfPatientID))
    assert row is not None
    assert (row.name, row.birth_date, row.sex) == (
        folded(victim.PatientName), str(victim.PatientBirthDate), str(victim.PatientSex))
    assert row.history == []


# -- finding 1: a patient or caregiver takes over another patient's record ---------------


def test_a_patients_stow_never_takes_over_another_patients_record(
        hospital: Server, victims: Victims, mei: Patient) -> None:
    http, person = mei.http, mei.person
    into_unlinked, into_linked = onto(victims.unlinked), onto(victims.linked)
    own = make_instance(patient_id=unique("M"), issuer=unique("HOSP_M"), **MEI)
    answer = stow(http, [into_unlinked, own, into_linked])
    assert answer.status_code == 202, answer.text
    assert stored_sops(answer) == {own.SOPInstanceUID}
    assert failures(answer) == {into_unlinked.SOPInstanceUID: (NOT_AUTHORIZED, UNIFORM),
                                into_linked.SOPInstanceUID: (NOT_AUTHORIZED, UNIFORM)}
    mine = records_of(hospital, person)
    assert (str(own.PatientID), str(own.IssuerOfPatientID)) in mine
    assert not {(str(v.PatientID), str(v.IssuerOfPatientID))
                for v in (victims.unlinked, victims.linked)} & mine
    assert (str(victims.linked.PatientID), str(victims.linked.IssuerOfPatientID)) \
        in records_of(hospital, victims.linked_person)
    assert_untouched(hospital, victims.unlinked)
    assert_untouched(hospital, victims.linked)
    timeline = {s["study_uid"] for s in http.get("/api/me/timeline").json()["studies"]}
    assert timeline == {own.StudyInstanceUID}
    assert {into_unlinked.StudyInstanceUID, into_linked.StudyInstanceUID} <= refusals_audited(
        hospital, mei.name, "upload")


def test_a_caregivers_zip_upload_never_takes_over_another_patients_record(
        hospital: Server, victims: Victims) -> None:
    carer_name, carer = user(hospital, "caregiver")
    mother = new_person(hospital, "Chen^Mei", "19600101", "F")
    with hospital.http() as admin:
        added = admin.post(f"/api/persons/{mother}/caregivers", json={"username": carer_name})
    assert added.status_code == 201, added.text
    into_unlinked = onto(victims.unlinked)
    own = make_instance(patient_id=unique("M"), issuer=unique("HOSP_M"), **MEI)
    cd = io.BytesIO()
    with zipfile.ZipFile(cd, "w") as zf:
        zf.writestr("DICOM/IM0001", to_bytes(into_unlinked))
        zf.writestr("DICOM/IM0002", to_bytes(own))
    with carer:
        uploaded = carer.post(f"/api/uploads?person={mother}",
                              files={"file": ("cd.zip", cd.getvalue(), "application/zip")})
    assert uploaded.status_code == 200, uploaded.text
    results = {r["sop_instance_uid"]: r for r in uploaded.json()["results"]}
    assert results[own.SOPInstanceUID]["status"] == "stored"
    assert (results[into_unlinked.SOPInstanceUID]["status"],
            results[into_unlinked.SOPInstanceUID]["reason"]) == ("failed", UNIFORM)
    assert records_of(hospital, mother) == {(str(own.PatientID), str(own.IssuerOfPatientID))}
    assert_untouched(hospital, victims.unlinked)


def test_the_refusal_is_in_the_uploaders_language(hospital: Server, victims: Victims,
                                                   mei: Patient) -> None:
    http = mei.http
    again = onto(victims.unlinked)
    uploaded = http.post("/api/uploads", headers={"Accept-Language": "zh-CN,zh;q=0.9"},
                         files={"file": ("a.dcm", to_bytes(again), "application/dicom")})
    assert uploaded.status_code == 422, uploaded.text
    [result] = uploaded.json()["results"]
    assert result["status"] == "failed" and "认领码" in result["reason"], result


# -- finding 9: the reason never says what else is stored --------------------------------


def test_another_patients_study_series_or_instance_uid_gets_the_same_refusal(
        hospital: Server, victims: Victims, mei: Patient) -> None:
    """A fresh record reusing another patient's study, series or SOP Instance UID: the
    same refusal as for their record, and nothing is stored or linked."""
    http, person = mei.http, mei.person
    victim = victims.linked
    fresh = dict(issuer=unique("HOSP_N"), **MEI)
    reusing = [make_instance(patient_id=unique("N"), study=victim.StudyInstanceUID, **fresh),
               make_instance(patient_id=unique("N"), series=victim.SeriesInstanceUID, **fresh),
               make_instance(patient_id=unique("N"), sop=victim.SOPInstanceUID, **fresh)]
    answer = stow(http, reusing)
    assert answer.status_code == 409, answer.text
    assert failures(answer) == {ds.SOPInstanceUID: (NOT_AUTHORIZED, UNIFORM) for ds in reusing}
    assert not {(str(ds.PatientID), fresh["issuer"]) for ds in reusing} \
        & records_of(hospital, person)
    assert all(stored(hospital, str(ds.PatientID), fresh["issuer"]) is None for ds in reusing)
    assert_untouched(hospital, victim)


def test_resending_another_patients_instance_is_answered_as_if_it_were_unknown(
        hospital: Server, victims: Victims, mei: Patient) -> None:
    """The very same bytes are no "duplicate": the answer is the one an unknown instance
    with those demographics gets."""
    http = mei.http
    victim = victims.linked
    unknown = make_instance(patient_id=unique("U"), issuer=unique("HOSP_U"),
                            patient_name=str(victim.PatientName),
                            PatientBirthDate=str(victim.PatientBirthDate), PatientSex="M")
    resent, fresh = stow(http, [victim]), stow(http, [unknown])
    assert resent.status_code == fresh.status_code == 409
    assert failures(resent)[victim.SOPInstanceUID] == failures(fresh)[unknown.SOPInstanceUID]
    assert failures(resent)[victim.SOPInstanceUID][0] == NOT_AUTHORIZED


# -- what still works --------------------------------------------------------------------


def test_a_new_record_is_stored_and_linked_and_adding_to_it_keeps_its_demographics(
        hospital: Server, mei: Patient) -> None:
    http, person = mei.http, mei.person
    record = dict(patient_id=unique("C"), issuer=unique("HOSP_C"))
    first = make_instance(**record, **MEI)
    assert stow(http, [first]).status_code == 200
    assert (record["patient_id"], record["issuer"]) in records_of(hospital, person)
    later = make_instance(**record, **(MEI | {"patient_name": "Chen^Meimei",
                                              "PatientBirthDate": "19600102"}))
    same_study = make_instance(study=first.StudyInstanceUID, **record, **MEI)
    added = stow(http, [later, same_study])
    assert added.status_code == 200, added.text
    row = stored(hospital, record["patient_id"], record["issuer"])
    assert row is not None
    assert (row.name, row.birth_date, row.history) == ("chen^mei", "19600101", [])


def test_a_hospital_correction_changes_demographics_and_keeps_the_old_ones(
        hospital: Server) -> None:
    record = dict(patient_id=unique("H"), issuer=unique("HOSP_H"))
    first = make_instance(**record, patient_name="Zhao^Yun", PatientBirthDate="19700303",
                          PatientSex="M")
    admin_stores(hospital, first)
    admin_stores(hospital, make_instance(study=first.StudyInstanceUID, **record,
                                         patient_name="Zhao^Yun", PatientBirthDate="19700330",
                                         PatientSex="M"))
    row = stored(hospital, record["patient_id"], record["issuer"])
    assert row is not None
    assert (row.name, row.birth_date) == ("zhao^yun", "19700330")
    assert row.history == [("zhao^yun", "19700303", "M")]
    index = Index(hospital.database_url)
    try:  # this hospital's studies may be deleted at once
        Retention(index).set_policy(record["issuer"], 0)
    finally:
        index.dispose()
    with hospital.http() as admin:  # deleting the record's last study takes its history too
        deleted = admin.delete(f"/dicomweb/studies/{first.StudyInstanceUID}")
    assert deleted.status_code == 200, deleted.text
    assert stored(hospital, record["patient_id"], record["issuer"]) is None
    assert history_rows(hospital, record["patient_id"], record["issuer"]) == 0


def _pdf() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (60, 40), (200, 30, 30)).save(out, format="PDF")
    return out.getvalue()


def test_a_document_the_archive_writes_never_rewrites_the_records_demographics(
        hospital: Server) -> None:
    """An attached PDF copies only some patient attributes (PatientAddress is not among
    them); storing it must not count as a hospital correction of the record."""
    record = dict(patient_id=unique("D"), issuer=unique("HOSP_D"))
    first = make_instance(**record, patient_name="Qian^Li", PatientBirthDate="19600606",
                          PatientSex="F", PatientAddress="1 Lake Road")
    admin_stores(hospital, first)
    with hospital.http() as admin:
        attached = admin.post(f"/api/studies/{first.StudyInstanceUID}/documents",
                              files=[("file", ("letter.pdf", _pdf(), "application/pdf"))])
    assert attached.status_code == 201, attached.text
    assert history_rows(hospital, record["patient_id"], record["issuer"]) == 0
    row = stored(hospital, record["patient_id"], record["issuer"])
    assert row is not None and (row.name, row.birth_date) == ("qian^li", "19600606")


# -- finding 5: C-STORE from an AE that is no registered node ----------------------------


def storescu(server: Server, calling: str, *files: Path) -> list[str]:
    """dcmtk's storescu as ``calling``: the status of each Store Response, in order."""
    result = subprocess.run(["storescu", "-v", "-aet", calling, "-aec", server.ae_title, HOST,
                             str(server.dimse_port), *map(str, files)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    statuses = re.findall(r"Received Store Response \((.*)\)", output)
    assert len(statuses) == len(files), output
    return statuses


def refused(status: str) -> bool:
    """0124H, Refused: Not Authorized (dcmtk names it "Unknown Status: 0x124")."""
    return status.endswith("0x124") or "Not Auth" in status


def write(folder: Path, *datasets: pydicom.Dataset) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    return paths


def instances_of(server: Server, study: str) -> set[str]:
    with server.http() as admin:
        found = admin.get(f"/dicomweb/studies/{study}/instances")
    return {i["00080018"]["Value"][0] for i in found.json()} if found.status_code == 200 \
        else set()


needs_dcmtk = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is missing")


@needs_dcmtk
def test_an_unregistered_ae_never_writes_into_another_patients_study(
        hospital: Server, victims: Victims, tmp_path: Path) -> None:
    victim = victims.linked
    intruder = make_instance(study=victim.StudyInstanceUID, patient_id=str(victim.PatientID),
                             issuer=str(victim.IssuerOfPatientID), patient_name="Li^Lei",
                             PatientBirthDate="19990909", PatientSex="M")
    [status] = storescu(hospital, "STRANGER", *write(tmp_path / "in", intruder))
    assert refused(status), status
    assert intruder.SOPInstanceUID not in instances_of(hospital, victim.StudyInstanceUID)
    assert_untouched(hospital, victim)
    assert refusals_audited(hospital, "aet:STRANGER", "store")
    record = dict(patient_id=unique("S"), issuer=unique("HOSP_S"), patient_name="Sun^Li")
    study = generate_uid()
    new = [make_instance(study=study, instance_number=n, **record) for n in (1, 2)]
    assert storescu(hospital, "STRANGER", *write(tmp_path / "new", *new)) == ["Success"] * 2
    assert instances_of(hospital, study) == {ds.SOPInstanceUID for ds in new}
    later = make_instance(study=study, instance_number=3, **record)  # another association
    [status] = storescu(hospital, "STRANGER", *write(tmp_path / "later", later))
    assert refused(status), status
    assert later.SOPInstanceUID not in instances_of(hospital, study)


@needs_dcmtk
def test_a_registered_nodes_correction_changes_demographics_and_keeps_the_old_ones(
        hospital: Server, tmp_path: Path) -> None:
    with hospital.http() as admin:
        added = admin.post("/api/admin/nodes", json={"name": unique("ward"), "aet": "WARDPACS",
                                                     "host": HOST, "port": 104})
    assert added.status_code == 201, added.text
    record = dict(patient_id=unique("W"), issuer=unique("HOSP_W"), patient_name="Qian^Wei",
                  PatientSex="F")
    first = make_instance(PatientBirthDate="19801212", **record)
    corrected = make_instance(study=first.StudyInstanceUID, PatientBirthDate="19801221",
                              **record)
    assert storescu(hospital, "WARDPACS", *write(tmp_path / "a", first)) == ["Success"]
    assert storescu(hospital, "WARDPACS", *write(tmp_path / "b", corrected)) == ["Success"]
    row = stored(hospital, record["patient_id"], record["issuer"])
    assert row is not None and row.birth_date == "19801221"
    assert row.history == [("qian^wei", "19801212", "F")]
