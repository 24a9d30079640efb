"""Automatic cloud films (issue 12, part 1): ``cloudfilm node add … --issuer X --issue-films``
has every study of hospital X that arrives from then on issued one film once it is
stable (``CLOUDFILM_STABLE_AGE`` seconds without a new instance), against a real
``cloudfilm serve`` on SQLite and PostgreSQL.

The watcher handles waiting studies oldest first, so "no film for A" is checked once a
study B sent after A has its film: the round that filmed B had A before it. No test
asserts how long anything takes; deadlines are only there so a failure ends.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom.uid import generate_uid

from conftest import Server, database_url_for, free_port, run_cli
from factory import make_instance, stow, to_bytes
from test_dimse import HOST, dcmtk
from test_people import Account, make_account, unique

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")

HOSPITAL = "HOSP-X"  # the node's IssuerOfPatientID
NODE, NODE_AET = "pacs-x", "HOSPX"
STABLE_AGE = "1"
DEADLINE = 120  # seconds before a wait gives up


@pytest.fixture(scope="module")
def site(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with DIMSE on and a 1 s stable age; HOSP-X's PACS registered with
    ``--issue-films`` through the CLI, as an administrator would."""
    data_dir = tmp_path_factory.mktemp(f"autofilm-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url, dimse_port=free_port(),
                 extra_env={"CLOUDFILM_STABLE_AGE": STABLE_AGE})
    try:
        srv.start()
        cli(srv, "node", "add", NODE, "--aet", NODE_AET, "--host", HOST, "--port", "104",
            "--issuer", HOSPITAL, "--issue-films")
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


@pytest.fixture(scope="module")
def desk(site: Server) -> Iterator[Account]:
    account = make_account(site, "operator")
    yield account
    account.http.close()


def cli(server: Server, *args: str) -> str:
    done = run_cli([*args, "--data", str(server.data_dir)], server.database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def instances(study: str, patient_id: str, issuer: str, count: int = 2) -> list[Any]:
    series = generate_uid()
    return [make_instance(study=study, series=series, patient_id=patient_id, issuer=issuer,
                          patient_name="Auto^Film", instance_number=n, rows=4, columns=4,
                          InstitutionName="Hospital X")
            for n in range(1, count + 1)]


def send_from_node(server: Server, folder: Path, datasets: list[Any]) -> None:
    """C-STORE with dcmtk's storescu, as the registered node (its AE title and host)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ds in datasets:
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    sent = dcmtk("storescu", "-v", "-aet", NODE_AET, "-aec", server.ae_title, HOST,
                 server.dimse_port, *paths)
    assert sent.returncode == 0, sent.stdout
    assert sent.stdout.count("Received Store Response (Success)") == len(paths), sent.stdout


def send_by_stow(server: Server, datasets: list[Any]) -> None:
    """STOW-RS as the test administrator (a hospital source too)."""
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
        response = stow(http, [to_bytes(ds) for ds in datasets])
    assert response.status_code == 200, response.text


def films_of(desk: Account, study: str) -> list[dict[str, Any]]:
    response = desk.http.get("/api/films", params={"study_uid": study})
    assert response.status_code == 200, response.text
    films: list[dict[str, Any]] = response.json()
    return films


def wait_for_film(desk: Account, study: str) -> dict[str, Any]:
    """The study's films once there is one; exactly one is the contract."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        films = films_of(desk, study)
        if films:
            assert len(films) == 1, films
            return films[0]
        time.sleep(0.3)
    raise AssertionError(f"no film for study {study} in {DEADLINE} s")


def sent_study(site: Server, tmp_path: Path, issuer: str = HOSPITAL, count: int = 2) -> str:
    study = generate_uid()
    send_from_node(site, tmp_path / study, instances(study, unique("AF"), issuer, count))
    return study


def node_line(server: Server, name: str) -> str:
    """The node's line in ``cloudfilm node list``."""
    return next(line for line in cli(server, "node", "list").splitlines()
                if line.split("\t")[0] == name)


def path_of(url: str) -> str:
    return "/" + url.split("://", 1)[1].split("/", 1)[1]


# -- issuing -------------------------------------------------------------------------------


def test_a_study_sent_by_the_node_gets_one_film_that_opens_without_an_account(
        site: Server, desk: Account, tmp_path: Path) -> None:
    study = sent_study(site, tmp_path)
    film = wait_for_film(desk, study)
    assert film["issued_by"] == f"auto:{NODE}" and film["issuer"] == HOSPITAL
    assert film["status"] == "active" and film["valid_until"] is None
    assert film["has_pin"] is False
    with httpx.Client(base_url=site.url, timeout=60) as phone:
        opened = phone.get(path_of(film["url"]), follow_redirects=False)
        assert opened.status_code == 303 and opened.headers["location"] == "/shared"
        series = phone.get(f"/dicomweb/studies/{study}/series")
        assert series.status_code == 200 and len(series.json()) == 1


def test_the_desk_shows_the_automatic_film_with_its_qr_code_and_slip(
        site: Server, desk: Account, tmp_path: Path) -> None:
    study = sent_study(site, tmp_path)
    film = wait_for_film(desk, study)
    page = desk.http.get("/admin/films", params={"study": study})
    assert page.status_code == 200
    assert f"/api/films/{film['id']}/qr.png" in page.text
    assert f"/api/films/{film['id']}/slip.pdf" in page.text
    qr = desk.http.get(f"/api/films/{film['id']}/qr.png")
    assert qr.status_code == 200 and qr.content.startswith(b"\x89PNG")
    slip = desk.http.get(f"/api/films/{film['id']}/slip.pdf")
    assert slip.status_code == 200 and slip.content.startswith(b"%PDF")


def test_the_issue_is_audited_as_the_node(site: Server, desk: Account, tmp_path: Path) -> None:
    study = sent_study(site, tmp_path)
    wait_for_film(desk, study)
    with site.http() as http:
        records = http.get("/api/audit", params={"format": "json", "limit": 10_000}).json()
    created = [r for r in records if r["action"] == "share-create" and r["study"] == study]
    assert [(r["who"], r["role"], r["outcome"]) for r in created] == [
        (f"auto:{NODE}", "operator", "success")]


# -- what gets no (second) film ------------------------------------------------------------


def test_a_study_of_another_hospital_gets_no_film(site: Server, desk: Account,
                                                 tmp_path: Path) -> None:
    other = generate_uid()
    send_by_stow(site, instances(other, unique("OY"), "HOSP-Y"))
    wait_for_film(desk, sent_study(site, tmp_path))  # sent after: filmed in a later round
    assert films_of(desk, other) == []


def test_a_later_instance_in_the_same_study_brings_no_second_film(
        site: Server, desk: Account, tmp_path: Path) -> None:
    study, patient = generate_uid(), unique("AF")
    first = instances(study, patient, HOSPITAL)
    send_from_node(site, tmp_path / "first", first)
    film = wait_for_film(desk, study)
    late = make_instance(study=study, series=str(first[0].SeriesInstanceUID), patient_id=patient,
                         issuer=HOSPITAL, patient_name="Auto^Film", instance_number=9,
                         rows=4, columns=4)
    send_from_node(site, tmp_path / "late", [late])
    wait_for_film(desk, sent_study(site, tmp_path))
    assert [f["id"] for f in films_of(desk, study)] == [film["id"]]


def test_a_withdrawn_automatic_film_is_not_issued_again(site: Server, desk: Account,
                                                        tmp_path: Path) -> None:
    study = sent_study(site, tmp_path)
    film = wait_for_film(desk, study)
    assert desk.http.delete(f"/api/films/{film['id']}").status_code == 204
    wait_for_film(desk, sent_study(site, tmp_path))
    films = films_of(desk, study)
    assert [(f["id"], f["status"]) for f in films] == [(film["id"], "revoked")]


def test_a_study_filmed_at_the_desk_gets_no_automatic_film(site: Server, desk: Account,
                                                           tmp_path: Path) -> None:
    """The operator issued one while instances were still arriving."""
    study, patient = generate_uid(), unique("AF")
    send_by_stow(site, instances(study, patient, HOSPITAL))
    manual = desk.http.post("/api/films", json={"study_uid": study})
    assert manual.status_code == 201, manual.text
    wait_for_film(desk, sent_study(site, tmp_path))
    assert [f["issued_by"] for f in films_of(desk, study)] == [manual.json()["issued_by"]]


def test_studies_archived_before_films_were_turned_on_get_none(
        site: Server, desk: Account, tmp_path: Path) -> None:
    issuer = unique("HOSP-Z")
    old = generate_uid()
    send_by_stow(site, instances(old, unique("OZ"), issuer))
    time.sleep(1.5)  # index times are whole seconds: the old study is a second older
    cli(site, "node", "add", "pacs-z", "--aet", "HOSPZ", "--host", HOST, "--port", "104",
        "--issuer", issuer, "--issue-films")
    new = generate_uid()
    send_by_stow(site, instances(new, unique("OZ"), issuer))
    assert wait_for_film(desk, new)["issued_by"] == "auto:pacs-z"
    assert films_of(desk, old) == []


def test_turning_films_off_stops_them_and_node_list_shows_the_setting(
        site: Server, desk: Account, tmp_path: Path) -> None:
    issuer = unique("HOSP-W")
    cli(site, "node", "add", "pacs-w", "--aet", "HOSPW", "--host", HOST, "--port", "104",
        "--issuer", issuer, "--issue-films")
    assert re.search(rf"\tissuer={issuer}\tissue_films=\d{{4}}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\tai=-$",
                     node_line(site, "pacs-w"))
    cli(site, "node", "edit", "pacs-w", "--no-issue-films")
    assert node_line(site, "pacs-w").endswith(f"\tissuer={issuer}\tissue_films=off\tai=-")
    study = generate_uid()
    send_by_stow(site, instances(study, unique("OW"), issuer))
    wait_for_film(desk, sent_study(site, tmp_path))
    assert films_of(desk, study) == []


def test_two_servers_on_one_database_issue_each_study_one_film(
        database_kind: str, tmp_path: Path) -> None:
    """Two ``serve`` processes share the index (and the data directory): both watch, and
    each study still gets exactly one film, audited once."""
    data_dir = tmp_path / "data"
    url, schema = database_url_for(database_kind, data_dir)
    env = {"CLOUDFILM_STABLE_AGE": STABLE_AGE}
    first, second = Server(data_dir, url, extra_env=env), Server(data_dir, url, extra_env=env)
    try:
        first.start()
        second.start()
        cli(first, "node", "add", NODE, "--aet", NODE_AET, "--host", HOST, "--port", "104",
            "--issuer", HOSPITAL, "--issue-films")
        studies = [generate_uid() for _ in range(8)]
        send_by_stow(first, [ds for study in studies
                             for ds in instances(study, unique("TW"), HOSPITAL, count=1)])
        desk = make_account(second, "operator")
        films = {study: wait_for_film(desk, study)["id"] for study in studies}
        time.sleep(2)  # a late duplicate would be issued by now (it is looked for, not timed)
        assert {study: [f["id"] for f in films_of(desk, study)] for study in studies} == {
            study: [film] for study, film in films.items()}
        with first.http() as http:
            records = http.get("/api/audit", params={"format": "json", "limit": 10_000}).json()
        created = sorted(r["study"] for r in records if r["action"] == "share-create")
        assert created == sorted(studies)
    finally:
        second.stop()
        first.stop()
        if schema:
            schema.drop()


def test_issue_films_needs_the_hospitals_issuer(site: Server) -> None:
    done = run_cli(["node", "add", "no-issuer", "--aet", "NOISSUER", "--host", HOST, "--port",
                    "104", "--issue-films", "--data", str(site.data_dir)], site.database_url)
    assert done.returncode == 2 and "issuer" in done.stdout, done.stdout + done.stderr
    assert "no-issuer\t" not in cli(site, "node", "list")


# -- settings ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["soon", "0", "1.5"])
def test_a_bad_stable_age_stops_serve_with_one_line_naming_it(tmp_path: Path,
                                                              value: str) -> None:
    env = dict(os.environ, CLOUDFILM_DATA=str(tmp_path / "data"), CLOUDFILM_STABLE_AGE=value)
    env.pop("CLOUDFILM_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "cloudfilm", "serve", "--port", "0",
                           "--dimse-port", "0"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: CLOUDFILM_STABLE_AGE={value!r}: use a whole number of at least 1"]
    assert not (tmp_path / "data").exists(), "serve opened the archive before checking"
