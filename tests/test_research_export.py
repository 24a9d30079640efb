"""De-identified research export (issue 15) over a real server, through the CLI and the API.

One person has two hospital records (HOSP_A: two CTs a year apart; HOSP_B: a third CT a
year later), a growing solid nodule measured on all three and tracked across hospitals;
a second person has one CT. The first CT's study also holds an image flagged
BurnedInAnnotation YES and a secondary capture. Every exported file then goes through an
independent PHI scan: every element at every depth, compared with every source identifier.
"""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

from conftest import Server, admin_token, database_url_for, run_cli
from factory import make_instance, multipart_related, to_bytes
from jobs_wait import wait_for_tracking

NAME_1, NAME_2 = "Ouyang^Mingyue", "Huangfu^Qingshan"
PEOPLE = {  # record → (name, studies: (date, nodule long/short axis mm))
    ("PA-1001", "HOSP_A"): (NAME_1, [("20230301", (6.0, 5.0)), ("20240305", (8.0, 7.0))]),
    ("PB-7007", "HOSP_B"): (NAME_1, [("20250310", (10.0, 9.0))]),
    ("QC-9009", "HOSP_A"): (NAME_2, [("20240601", None)]),
}
INSTITUTIONS = {"HOSP_A": "Riverside Gleneagle Infirmary", "HOSP_B": "Harbourview Pinecrest Clinic"}


@dataclass
class Site:
    server: Server
    data_dir: Path
    admin: httpx.Client
    researcher: httpx.Client
    other_researcher: httpx.Client
    persons: dict[str, int] = field(default_factory=dict)
    study_dates: dict[str, str] = field(default_factory=dict)  # study → date
    person_of_study: dict[str, str] = field(default_factory=dict)  # study → "p1"/"p2"
    identifiers: set[str] = field(default_factory=set)
    uids: set[str] = field(default_factory=set)


def _stow(client: httpx.Client, datasets: list[Dataset]) -> None:
    body, content_type = multipart_related([to_bytes(ds) for ds in datasets])
    answer = client.post("/dicomweb/studies", content=body,
                         headers={"content-type": content_type, "accept": "application/dicom+json"})
    assert answer.status_code == 200, answer.text


def _series(site: Site, study: str, day: str, patient_id: str, issuer: str, name: str,
            frame: str, **extra: Any) -> list[Dataset]:
    series = generate_uid()
    slices = [make_instance(study=study, series=series, patient_id=patient_id, issuer=issuer,
                            patient_name=name, study_date=day, rows=32, columns=32,
                            instance_number=n, FrameOfReferenceUID=frame,
                            InstitutionName=INSTITUTIONS[issuer],
                            AccessionNumber=f"ACC{patient_id[-4:]}{day[2:]}", **extra)
              for n in (1, 2, 3)]
    for ds in slices:
        site.uids.update({ds.SOPInstanceUID, ds.SeriesInstanceUID})
        site.identifiers.add(str(ds.AccessionNumber))
    return slices


def _refused_pair(study: str, day: str) -> list[Dataset]:
    """A burned-in CT image and a secondary capture in the person's first study."""
    burned = make_instance(study=study, patient_id="PA-1001", issuer="HOSP_A",
                           patient_name=NAME_1, study_date=day, BurnedInAnnotation="YES",
                           SeriesNumber=2)
    capture = make_instance(study=study, patient_id="PA-1001", issuer="HOSP_A",
                            patient_name=NAME_1, study_date=day, SeriesNumber=3, Modality="OT")
    capture.SOPClassUID = SecondaryCaptureImageStorage
    capture.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    return [burned, capture]


def _measure(site: Site, study: str, first: Dataset, axes: tuple[float, float]) -> None:
    answer = site.admin.post(f"/api/studies/{study}/nodules", json={
        "series_uid": first.SeriesInstanceUID, "instance_uid": first.SOPInstanceUID,
        "center_patient_mm": [11.2, 11.2, 2.5], "long_axis_mm": axes[0],
        "short_axis_mm": axes[1], "nodule_type": "solid", "lobe": "RUL"})
    assert answer.status_code == 201, answer.text
    wait_for_tracking(site.admin, study)


def _load(site: Site) -> None:
    frame = generate_uid()  # one scanner frame of reference: tracking is by identity
    for key in ("p1", "p2"):
        made = site.admin.post("/api/persons", json={"display_name": key, "birth_date": "19600101"})
        assert made.status_code == 201, made.text
        site.persons[key] = made.json()["id"]
    for (patient_id, issuer), (name, studies) in PEOPLE.items():
        key = "p1" if name == NAME_1 else "p2"
        linked = site.admin.post(f"/api/persons/{site.persons[key]}/records",
                                 json={"patient_id": patient_id, "issuer": issuer})
        assert linked.status_code == 201, linked.text
        site.identifiers.update({patient_id, issuer, INSTITUTIONS[issuer], *name.split("^")})
        for day, axes in studies:
            study = generate_uid()
            site.uids.add(study)
            site.study_dates[study], site.person_of_study[study] = day, key
            images = _series(site, study, day, patient_id, issuer, name, frame)
            extra = _refused_pair(study, day) if day == "20230301" else []
            _stow(site.admin, images + extra)
            if axes:
                _measure(site, study, images[1], axes)
    site.uids.add(frame)
    site.identifiers.add("19600101")


@pytest.fixture(scope="module")
def site(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp(f"research-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    server = Server(data_dir, url).start()
    clients = [httpx.Client(base_url=server.url, timeout=120,
                            headers={"Authorization": f"Bearer {admin_token(url, name, role)}"})
               for name, role in (("test-admin", "admin"), ("res-one", "researcher"),
                                  ("res-two", "researcher"))]
    try:
        made = Site(server, data_dir, *clients)
        _load(made)
        yield made
    finally:
        for client in clients:
            client.close()
        server.stop()
        if schema:
            schema.drop()


# -- reading an export back -----------------------------------------------------------------


@dataclass
class Export:
    manifest: dict[str, Any]
    datasets: list[Dataset]
    csv_rows: list[dict[str, str]]
    texts: list[str]  # CSV and manifest as text


def _cli_export(site: Site, out: Path, *args: str) -> Export:
    done = run_cli(["research", "export", "--data", str(site.data_dir), *args, "--out", str(out)],
                   site.server.database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    manifest = json.loads(done.stdout)
    files = sorted(out.rglob("*.dcm"))
    texts = [(out / "nodules.csv").read_text(), (out / "manifest.json").read_text()]
    return Export(manifest, [pydicom.dcmread(f) for f in files],
                  list(csv.DictReader(io.StringIO(texts[0]))), texts)


def _zip_export(data: bytes) -> Export:
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = archive.namelist()
    texts = [archive.read("nodules.csv").decode(), archive.read("manifest.json").decode()]
    datasets = [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in names if n.endswith(".dcm")]
    return Export(json.loads(texts[1]), datasets, list(csv.DictReader(io.StringIO(texts[0]))), texts)


def _values(ds: Dataset) -> Iterator[str]:
    """Every value of every element, recursing into sequences (and the file meta)."""
    for element in [*ds.file_meta, *ds] if hasattr(ds, "file_meta") else ds:
        if element.VR == "SQ":
            for item in element.value:
                yield from _values(item)
        elif element.VR not in ("OB", "OW", "OF", "OD", "OL", "UN") and element.value is not None:
            values = element.value if isinstance(element.value, (list, pydicom.multival.MultiValue)) \
                else [element.value]
            yield from (str(v) for v in values)


def _phi_scan(site: Site, export: Export) -> None:
    words = {w.casefold() for w in site.identifiers}
    for ds in export.datasets:
        for value in _values(ds):
            low = value.casefold()
            assert value not in site.uids, f"original UID {value} in {ds.SOPInstanceUID}"
            leaked = [w for w in words if w in low]
            assert not leaked, f"{leaked} in {value!r}"
    for text in export.texts:
        low = text.casefold()
        assert not [w for w in words if w in low]
        assert not [u for u in site.uids if u in text]


def _profile_tags(ds: Dataset) -> None:
    for keyword in ("IssuerOfPatientID", "InstitutionName", "OtherPatientIDs", "PatientAddress"):
        assert keyword not in ds
    for keyword in ("AccessionNumber", "PatientBirthDate", "ReferringPhysicianName", "StudyID"):
        assert keyword not in ds or ds.get(keyword) in (None, "")
    assert ds.PatientIdentityRemoved == "YES"
    codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
    assert {"113100", "113106", "113108", "113105"} <= codes and "113111" not in codes


def _shift(original: str, exported: str) -> int:
    day = lambda t: date(int(t[:4]), int(t[4:6]), int(t[6:8]))  # noqa: E731
    return (day(original) - day(exported)).days


# -- the tests ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def everything(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Export:
    return _cli_export(site, tmp_path_factory.mktemp("all") / "out", "--all")


def test_cli_export_passes_the_phi_scan_and_the_profile(site: Site, everything: Export) -> None:
    assert everything.datasets, "nothing exported"
    _phi_scan(site, everything)
    for ds in everything.datasets:
        _profile_tags(ds)
    counts = everything.manifest["counts"]
    assert counts["persons"] == 2 and counts["studies"] == 4 and counts["refused"] == 2
    assert counts["instances"] == len(everything.datasets)
    assert everything.manifest["library"].startswith("deid ")
    assert everything.manifest["profile"].startswith("DICOM PS3.15 Annex E")


def _studies_by_patient(export: Export) -> dict[str, dict[str, str]]:
    """PatientID → {StudyInstanceUID: StudyDate} of the exported CT images."""
    found: dict[str, dict[str, str]] = {}
    for ds in export.datasets:
        if ds.Modality == "CT":
            found.setdefault(ds.PatientID, {})[ds.StudyInstanceUID] = ds.StudyDate
    return found


def test_one_person_at_two_hospitals_has_one_pseudonym_and_one_date_shift(
        site: Site, everything: Export) -> None:
    patients = _studies_by_patient(everything)
    assert sorted(len(s) for s in patients.values()) == [1, 3]  # p1: both hospitals, one ID
    p1 = next(pid for pid, studies in patients.items() if len(studies) == 3)
    exported = sorted(patients[p1].values())
    originals = sorted(d for s, d in site.study_dates.items() if site.person_of_study[s] == "p1")
    shifts = {_shift(o, e) for o, e in zip(originals, exported, strict=True)}
    assert len(shifts) == 1 and 365 <= shifts.pop() <= 3650  # intervals kept exactly
    assert all(ds.PatientName == ds.PatientID for ds in everything.datasets)


def test_sr_references_resolve_to_exported_instances(everything: Export) -> None:
    exported = {ds.SOPInstanceUID for ds in everything.datasets}
    reports = [ds for ds in everything.datasets if ds.Modality == "SR"]
    assert len(reports) == 3  # cloudfilm's nodule SR of each measured study
    for sr in reports:
        referenced = set()
        for item in sr.CurrentRequestedProcedureEvidenceSequence:
            assert item.StudyInstanceUID == sr.StudyInstanceUID
            for series in item.ReferencedSeriesSequence:
                referenced |= {ref.ReferencedSOPInstanceUID for ref in series.ReferencedSOPSequence}
        referenced |= _referenced(sr)
        assert referenced and referenced <= exported


def _referenced(ds: Dataset) -> set[str]:
    found: set[str] = set()
    ds.walk(lambda _d, e: found.add(str(e.value)) if e.keyword == "ReferencedSOPInstanceUID"
            else None)
    return found


def test_nodule_csv_follows_the_nodule_across_hospitals(everything: Export) -> None:
    rows = everything.csv_rows
    assert len(rows) == 3 == everything.manifest["counts"]["nodule_rows"]
    assert len({r["patient_pseudonym"] for r in rows}) == 1 and {r["nodule"] for r in rows} == {"N1"}
    assert [r["growth"] for r in rows] == ["new", "grew", "grew"]
    assert [int(r["days_since_baseline"]) for r in rows] == [0, 370, 740]
    assert [float(r["mean_diameter_mm"]) for r in rows] == [5.5, 7.5, 9.5]
    assert rows[0]["vdt_days"] == "" and float(rows[1]["vdt_days"]) > 0
    assert {r["guideline"] for r in rows} == {"fleischner-2017"} and all(r["category"] for r in rows)
    exported = {ds.StudyInstanceUID for ds in everything.datasets}
    assert {r["study_uid"] for r in rows} <= exported


def test_burned_in_and_secondary_capture_are_refused_and_listed(site: Site,
                                                               everything: Export) -> None:
    refused = everything.manifest["refused"]
    reasons = sorted(r["reason"] for r in refused)
    assert len(refused) == 2
    assert reasons[0].startswith("BurnedInAnnotation is YES")
    assert reasons[1].startswith("secondary capture")
    assert not {r["instance"] for r in refused} & site.uids
    assert not [ds for ds in everything.datasets if ds.get("BurnedInAnnotation") == "YES"
                or ds.SOPClassUID == SecondaryCaptureImageStorage]


@pytest.mark.parametrize(("args", "studies"), [
    (("--hospital", "HOSP_B"), 1),
    (("--nodule-type", "solid", "--growth", "grew"), 3),  # the grown nodule brings its baseline
    (("--min-size-mm", "20"), 0),
    (("--guideline", "fleischner", "--from", "2024-01-01"), 2),
    (("--modality", "OT", "--until", "2023-12-31"), 1),
], ids=["hospital", "growth", "size", "guideline-date", "modality"])
def test_cohort_filters(site: Site, tmp_path: Path, args: tuple[str, ...], studies: int) -> None:
    export = _cli_export(site, tmp_path / "out", *args)
    assert export.manifest["counts"]["studies"] == studies
    assert "studies_named" not in export.manifest["selection"]


def test_a_bad_cohort_is_refused_in_one_line(site: Site, tmp_path: Path) -> None:
    done = run_cli(["research", "export", "--data", str(site.data_dir), "--study", "1.2.3",
                    "--out", str(tmp_path / "x")], site.server.database_url)
    assert done.returncode == 2 and "1.2.3 is not stored" in done.stderr and not done.stdout


def test_researcher_exports_through_the_api_with_the_same_pseudonyms(
        site: Site, everything: Export) -> None:
    made = site.researcher.post("/api/research/exports", json={"all": True})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["status"] == "done" and body["manifest"]["counts"] == everything.manifest["counts"]
    fetched = site.researcher.get(f"/api/research/exports/{body['id']}")
    assert fetched.status_code == 200 and fetched.json()["manifest"] == body["manifest"]
    archive = site.researcher.get(body["archive"])
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    again = _zip_export(archive.content)
    _phi_scan(site, again)
    # stable across exports: the same person, study and instance pseudonyms
    assert {ds.SOPInstanceUID for ds in again.datasets} == \
        {ds.SOPInstanceUID for ds in everything.datasets}
    assert _studies_by_patient(again) == _studies_by_patient(everything)
    assert again.csv_rows == everything.csv_rows
    listed = site.researcher.get("/api/research/exports").json()
    assert [e["id"] for e in listed] == [body["id"]]
    assert site.other_researcher.get(f"/api/research/exports/{body['id']}").status_code == 404
    assert site.other_researcher.get(body["archive"]).status_code == 404
    assert site.other_researcher.get("/api/research/exports").json() == []
    assert site.admin.get(f"/api/research/exports/{body['id']}").status_code == 200
    entries = site.admin.get("/api/audit", params={"format": "json", "limit": 10_000}).json()
    mine = [e for e in entries if e["action"] == "research-export" and e["who"] == "res-one"]
    assert any(e["outcome"] == "success" for e in mine)
    refused = [e for e in entries if e["action"] == "research-export" and e["who"] == "res-two"]
    assert any(e["outcome"] == "failure" for e in refused)


def test_export_options_through_the_api(site: Site) -> None:
    made = site.researcher.post("/api/research/exports", json={
        "hospital": ["HOSP_B"], "options": {"retain_longitudinal_modified_dates": False,
                                            "retain_patient_characteristics": False}})
    assert made.status_code == 201, made.text
    export = _zip_export(site.researcher.get(made.json()["archive"]).content)
    for ds in export.datasets:
        assert ds.get("StudyDate") in (None, "") and ds.get("PatientSex") in (None, "")
        assert "PatientAge" not in ds and "PatientWeight" not in ds
        codes = {item.CodeValue for item in ds.DeidentificationMethodCodeSequence}
        assert "113106" not in codes and "113108" not in codes
    assert all(row["study_date"] == "" for row in export.csv_rows)


@pytest.mark.parametrize("body", [{}, {"growth": ["huge"]}, {"studies": ["1.2.3"]},
                                  {"all": True, "options": {"retain_everything": True}},
                                  {"from": "yesterday"}, {"persons": ["one"]}])
def test_bad_requests_are_400(site: Site, body: dict[str, Any]) -> None:
    answer = site.researcher.post("/api/research/exports", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()


def test_a_researcher_sees_nothing_identified(site: Site) -> None:
    study = next(iter(site.study_dates))
    res = site.researcher
    assert res.get("/dicomweb/studies").json() == []
    assert res.get(f"/dicomweb/studies/{study}/metadata").status_code == 404
    assert res.get(f"/api/studies/{study}/export.zip").status_code == 404
    assert res.get(f"/api/studies/{study}/nodules").status_code in (403, 404)
    timeline = res.get(f"/api/patients/{site.persons['p1']}/timeline")
    assert timeline.status_code == 404 or timeline.json()["studies"] == []
    assert res.get(f"/api/persons/{site.persons['p1']}").status_code == 404
    home = res.get("/", follow_redirects=False)
    assert home.headers["location"] == "/api/research/exports"


def test_export_to_a_node_sends_only_de_identified_instances(site: Site) -> None:
    """``--to NODE``: a real storage SCP (pynetdicom) receives the de-identified CTs."""
    from pynetdicom import AE, AllStoragePresentationContexts, evt

    from conftest import free_port

    received: list[Dataset] = []

    def on_store(event: Any) -> int:
        received.append(event.dataset)
        return 0x0000

    port = free_port()
    scp = AE(ae_title="RESEARCHPACS")
    scp.supported_contexts = AllStoragePresentationContexts
    server = scp.start_server(("127.0.0.1", port), block=False,
                              evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        added = site.admin.post("/api/admin/nodes", json={
            "name": "research-pacs", "aet": "RESEARCHPACS", "host": "127.0.0.1", "port": port,
            "sees": "none"})
        assert added.status_code == 201, added.text
        done = run_cli(["research", "export", "--data", str(site.data_dir), "--hospital",
                        "HOSP_B", "--to", "research-pacs"], site.server.database_url)
        assert done.returncode == 0, done.stdout + done.stderr
        manifest = json.loads(done.stdout)
    finally:
        server.shutdown()
    assert manifest["sent"]["sent"] == manifest["counts"]["instances"] == len(received) > 0
    assert manifest["sent"]["failed"] == 0
    _phi_scan(site, Export(manifest, received, [], [json.dumps(manifest)]))
