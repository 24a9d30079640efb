"""``cloudfilm demo`` end to end: generate, import, serve, and find what the truth file says."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conftest import Server, database_url_for, run_cli


@pytest.fixture(scope="module")
def demo_server(database_kind: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    data = tmp_path_factory.mktemp(f"demo-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data)
    result = run_cli(["demo", "--data", str(data), "--patients", "3", "--slices", "40"], url)
    assert result.returncode == 0, result.stdout + result.stderr
    server = Server(data, url).start()
    yield server, json.loads((data / "demo-truth.json").read_text())
    server.stop()
    if schema:
        schema.drop()


def test_every_demo_study_is_queryable_with_its_slices(demo_server) -> None:  # type: ignore[no-untyped-def]
    server, truth = demo_server
    studies = [s for p in truth["patients"] for s in p["studies"]]
    with httpx.Client(base_url=server.dicomweb, headers=server.auth) as http:
        found = http.get("/studies", params={"includefield": "00201208"}).json()
        assert {s["0020000D"]["Value"][0] for s in found} == {s["study_uid"] for s in studies}
        assert all(s["00201208"]["Value"] == [40] for s in found)


def test_a_patient_has_studies_from_two_hospitals(demo_server) -> None:  # type: ignore[no-untyped-def]
    server, truth = demo_server
    zhang = next(p for p in truth["patients"] if p["patient_name"].startswith("Zhang"))
    with httpx.Client(base_url=server.dicomweb, headers=server.auth) as http:
        found = http.get("/studies", params={"PatientName": "张^三",
                                             "includefield": "IssuerOfPatientID"}).json()
    issuers = {s["00100021"]["Value"][0] for s in found}
    assert issuers == {r["issuer"] for r in zhang["records"]} and len(issuers) == 2
    assert len(found) == len(zhang["studies"])


def test_the_nodule_centre_slice_renders(demo_server) -> None:  # type: ignore[no-untyped-def]
    server, truth = demo_server
    study = truth["patients"][0]["studies"][0]
    nodule = study["nodules"][0]
    url = (f"/studies/{study['study_uid']}/series/{study['series_uid']}/instances/"
           f"{nodule['instance_uid_at_center']}/rendered")
    with httpx.Client(base_url=server.dicomweb, headers=server.auth) as http:
        image = http.get(url, params={"window": "-600,1500"}, headers={"accept": "image/png"})
    assert image.status_code == 200 and image.content.startswith(b"\x89PNG")


def test_check_is_clean_after_the_demo(demo_server) -> None:  # type: ignore[no-untyped-def]
    server, _ = demo_server
    result = run_cli(["check", "--data", str(server.data_dir)], server.database_url)
    assert result.returncode == 0 and "clean" in result.stdout
