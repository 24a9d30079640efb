"""STOW-RS (PS3.18 §10.5) against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import httpx
import pydicom
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from conftest import Server, run_cli
from factory import make_instance, multipart_related, stow, to_bytes

REFERENCED, FAILED, RETRIEVE_URL, FAILURE_REASON = "00081199", "00081198", "00081190", "00081197"


def _uids(items: list[dict]) -> list[str]:
    return [item["00081155"]["Value"][0] for item in items]


def test_batch_is_stored_and_answered_with_referenced_sop_sequence(client: httpx.Client,
                                                                   server: Server) -> None:
    study, series = generate_uid(), generate_uid()
    instances = [make_instance(study=study, series=series, instance_number=i) for i in range(1, 6)]
    response = stow(client, [to_bytes(ds) for ds in instances])
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/dicom+json")
    body = response.json()
    assert FAILED not in body
    assert sorted(_uids(body[REFERENCED]["Value"])) == sorted(ds.SOPInstanceUID for ds in instances)
    assert body[RETRIEVE_URL]["Value"] == [f"{server.dicomweb}/studies/{study}"]
    for item in body[REFERENCED]["Value"]:
        url = item[RETRIEVE_URL]["Value"][0]
        assert url.startswith(f"{server.dicomweb}/studies/{study}/series/{series}/instances/")
        assert item["00081150"]["Value"] == [pydicom.uid.CTImageStorage]


def test_stored_bytes_are_unchanged(client: httpx.Client) -> None:
    ds = make_instance()
    raw = to_bytes(ds)
    assert stow(client, [raw]).status_code == 200
    got = client.get(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                     f"{ds.SOPInstanceUID}",
                     headers={"accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
    assert got.status_code == 200
    assert hashlib.sha256(raw).hexdigest() in {hashlib.sha256(p).hexdigest()
                                               for p in _parts(got)}


def _parts(response: httpx.Response) -> list[bytes]:
    from factory import parse_multipart

    return [data for _, data in parse_multipart(response)]


def test_a_corrupt_part_fails_alone_with_a_reason(client: httpx.Client) -> None:
    study = generate_uid()
    good = [make_instance(study=study) for _ in range(2)]
    truncated = to_bytes(make_instance(study=study, rows=64, columns=64))[:-2000]
    parts = [to_bytes(good[0]), b"this is not DICOM at all", truncated, to_bytes(good[1])]
    response = stow(client, parts)
    assert response.status_code == 202
    body = response.json()
    assert sorted(_uids(body[REFERENCED]["Value"])) == sorted(ds.SOPInstanceUID for ds in good)
    failures = body[FAILED]["Value"]
    assert len(failures) == 2
    reasons = [f["00F11001"]["Value"][0] for f in failures]
    assert any("no DICM prefix" in r for r in reasons)
    assert any("truncated" in r for r in reasons)
    assert all(f[FAILURE_REASON]["Value"][0] == 0xC000 for f in failures)
    for ds in good:
        assert client.get(f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/"
                          f"{ds.SOPInstanceUID}/metadata").status_code == 200


def test_nothing_stored_is_409(client: httpx.Client) -> None:
    response = stow(client, [b"garbage", b"more garbage"])
    assert response.status_code == 409
    assert len(response.json()[FAILED]["Value"]) == 2


def test_resending_identical_bytes_is_idempotent_success(client: httpx.Client) -> None:
    raw = to_bytes(make_instance())
    assert stow(client, [raw]).status_code == 200
    again = stow(client, [raw])
    assert again.status_code == 200
    assert FAILED not in again.json()


def test_same_uid_with_different_bytes_is_refused_with_a900(client: httpx.Client) -> None:
    ds = make_instance(seed=1)
    assert stow(client, [to_bytes(ds)]).status_code == 200
    ds.PixelData = make_instance(seed=2).PixelData
    response = stow(client, [to_bytes(ds)])
    assert response.status_code == 409
    failure = response.json()[FAILED]["Value"][0]
    assert failure[FAILURE_REASON]["Value"] == [0xA900]
    assert "different content" in failure["00F11001"]["Value"][0]


def test_overwrite_when_configured(fresh_server: Server) -> None:
    fresh_server.extra_env["CLOUDFILM_OVERWRITE"] = "true"
    fresh_server.start()
    ds = make_instance(seed=1)
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth) as http:
        assert stow(http, [to_bytes(ds)]).status_code == 200
        ds.PixelData = make_instance(seed=2).PixelData
        replacement = to_bytes(ds)
        assert stow(http, [replacement]).status_code == 200
        got = http.get(f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/"
                       f"{ds.SOPInstanceUID}",
                       headers={"accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'})
        assert _parts(got) == [replacement]
    fresh_server.stop()
    check = run_cli(["check", "--data", str(fresh_server.data_dir)], fresh_server.database_url)
    assert check.returncode == 0, check.stdout


def test_study_in_url_must_match_each_instance(client: httpx.Client) -> None:
    study = generate_uid()
    match, other = make_instance(study=study), make_instance()
    response = stow(client, [to_bytes(match), to_bytes(other)], study=study)
    assert response.status_code == 202
    body = response.json()
    assert _uids(body[REFERENCED]["Value"]) == [match.SOPInstanceUID]
    failure = body[FAILED]["Value"][0]
    assert failure["00081155"]["Value"] == [other.SOPInstanceUID]
    assert "does not match the study in the request URL" in failure["00F11001"]["Value"][0]


def test_unsupported_media_types_are_415(client: httpx.Client) -> None:
    raw = to_bytes(make_instance())
    assert client.post("/studies", content=raw,
                       headers={"content-type": "application/octet-stream"}).status_code == 415
    body, content_type = multipart_related([b"{}"], part_type="application/dicom+json")
    response = client.post("/studies", content=body, headers={"content-type": content_type})
    assert response.status_code == 415
    assert "application/dicom" in response.json()["error"]


def test_malformed_multipart_is_400_and_stores_nothing(client: httpx.Client) -> None:
    ds = make_instance()
    body, content_type = multipart_related([to_bytes(ds)])
    cut = body[: body.rindex(b"--")]  # no closing delimiter
    response = client.post("/studies", content=cut, headers={"content-type": content_type})
    assert response.status_code == 400
    assert "malformed multipart" in response.json()["error"]
    no_boundary = client.post("/studies", content=body,
                              headers={"content-type": 'multipart/related; type="application/dicom"'})
    assert no_boundary.status_code == 400
    assert client.get(f"/studies/{ds.StudyInstanceUID}/metadata").status_code == 404


def test_quoted_boundary_and_parts_without_content_type(client: httpx.Client) -> None:
    ds = make_instance()
    boundary = "OHIF-boundary-123"
    body = (f"--{boundary}\r\n\r\n".encode() + to_bytes(ds) + f"\r\n--{boundary}--".encode())
    response = client.post("/studies", content=body, headers={
        "content-type": f'multipart/related; type="application/dicom"; boundary="{boundary}"'})
    assert response.status_code == 200


def test_dicomweb_client_can_store(server: Server) -> None:
    web = DICOMwebClient(url=server.dicomweb, headers=server.auth)
    datasets = [make_instance() for _ in range(2)]
    result = web.store_instances(datasets)
    stored = sorted(item.ReferencedSOPInstanceUID for item in result.ReferencedSOPSequence)
    assert stored == sorted(ds.SOPInstanceUID for ds in datasets)


def test_acknowledged_instances_are_on_disk_and_indexed(fresh_server: Server) -> None:
    fresh_server.start()
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth) as http:
        raws = [to_bytes(make_instance()) for _ in range(3)]
        assert stow(http, raws).status_code == 200
    check = run_cli(["check", "--data", str(fresh_server.data_dir)], fresh_server.database_url)
    assert check.returncode == 0, check.stdout
    assert "checked 3 index rows and 3 blobs: clean" in check.stdout


def test_a_derived_object_without_the_issuer_joins_its_study(client: httpx.Client) -> None:
    """Viewers' SRs copy PatientID but drop IssuerOfPatientID: same study, same patient."""
    study = generate_uid()
    assert stow(client, [to_bytes(make_instance(study=study, patient_id="D-1",
                                                issuer="HOSP_X"))]).status_code == 200
    derived = make_instance(study=study, patient_id="D-1")
    assert stow(client, [to_bytes(derived)]).status_code == 200
    found = client.get("/studies", params={"StudyInstanceUID": study,
                                           "includefield": "00201208"}).json()
    assert found[0]["00100021"]["Value"] == ["HOSP_X"] and found[0]["00201208"]["Value"] == [2]
    other_patient = make_instance(study=study, patient_id="D-2")
    refused = stow(client, [to_bytes(other_patient)])
    assert refused.status_code == 409
    assert "another patient" in refused.json()["00081198"]["Value"][0]["00F11001"]["Value"][0]


def test_a_refused_instance_does_not_poison_its_batch(client: httpx.Client) -> None:
    """A new patient whose instance is refused (its study belongs to someone else) is rolled
    back; a later instance of the same new patient in the same batch is still stored."""
    taken = generate_uid()
    assert stow(client, [to_bytes(make_instance(study=taken, patient_id="OWNER"))]).status_code == 200
    refused = make_instance(study=taken, patient_id="NEWCOMER")
    fine = make_instance(patient_id="NEWCOMER")
    answer = stow(client, [to_bytes(refused), to_bytes(fine)])
    assert answer.status_code == 202, answer.text
    stored = [r["00081155"]["Value"][0] for r in answer.json()["00081199"]["Value"]]
    assert stored == [fine.SOPInstanceUID]
