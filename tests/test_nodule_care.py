"""Nodule care over HTTP on demo data: measure, track across hospitals, assess, SR, FHIR, pages.

A real server (SQLite and PostgreSQL) over `cloudfilm demo` data; the demo patient's
three CTs come from two hospitals whose table positions differ by ~255 mm, so tracking
must register the scans. Who may do what follows the access rules: physicians whose grant
allows writing measure, a view-only grant reads, patients read, a physician without a
grant gets 404.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import httpx
import pydicom
import pytest

from conftest import Server, admin_token, database_url_for, demo_data, run_cli
from factory import stow
from jobs_wait import wait_for_tracking


@dataclass
class Site:
    server: Server
    truth: dict[str, Any]
    tokens: dict[str, str]

    def http(self, who: str = "admin") -> httpx.Client:
        token = self.server.token if who == "admin" else self.tokens[who]
        return httpx.Client(base_url=self.server.url, timeout=120,
                            headers={"Authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def site(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    data_dir = tmp_path_factory.mktemp(f"nodules-{database_kind}") / "data"
    # Images only: these tests measure the demo's nodules themselves, from a clean slate.
    schema = None
    if database_kind == "sqlite":
        url = demo_data(tmp_path_factory, data_dir, images_only=True)
    else:
        url, schema = database_url_for(database_kind, data_dir)
        made = run_cli(["demo", "--data", str(data_dir), "--patients", "2", "--slices", "80",
                        "--images-only"], url)
        assert made.returncode == 0, made.stdout + made.stderr
    assert run_cli(["demo-logins", "--data", str(data_dir)], url).returncode == 0
    truth = json.loads((data_dir / "demo-truth.json").read_text())
    tokens = {name: admin_token(url, name, role) for name, role in
              (("demo-patient", "patient"), ("demo-physician", "physician"),
               ("other-physician", "physician"), ("viewing-physician", "physician"))}
    server = Server(data_dir, url).start()
    try:
        site = Site(server, truth, tokens)
        _share_with_physicians(site)
        yield site
    finally:
        server.stop()
        if schema:
            schema.drop()


def _share_with_physicians(site: Site) -> None:
    """The patient lets the demo physician measure (writing needs a grant that allows it)
    and another physician only look."""
    with site.http("demo-patient") as http:
        person = http.get("/api/me").json()["person_id"]
        for physician, permissions in (("demo-physician", ["view", "download", "upload"]),
                                       ("viewing-physician", ["view"])):
            shared = http.post("/api/shares", json={
                "scope": {"patient": person, "include_future": True},
                "audience": {"physician": physician}, "permissions": permissions})
            assert shared.status_code == 201, shared.text


def _manual(study: dict[str, Any], nodule: dict[str, Any], **extra: Any) -> dict[str, Any]:
    d = nodule["diameter_mm"]
    return {"series_uid": study["series_uid"], "instance_uid": nodule["instance_uid_at_center"],
            "center_patient_mm": nodule["center_patient_mm"], "long_axis_mm": d,
            "short_axis_mm": d, "nodule_type": nodule["type"], "lobe": "RUL"} | extra


def test_manual_measurements_are_tracked_across_hospitals_and_assessed(site: Site) -> None:
    patient = site.truth["patients"][0]
    first, second = patient["studies"][0], patient["studies"][1]
    assert first["issuer"] != second["issuer"]  # two hospitals, unrelated table positions
    with site.http("demo-physician") as http:
        for study in (first, second):
            for nodule in study["nodules"]:
                r = http.post(f"/api/studies/{study['study_uid']}/nodules",
                              json=_manual(study, nodule))
                assert r.status_code == 201, r.text
                assert r.json()["tracking"] == "pending"  # registration runs in a job
        labels = {(study["study_uid"], _truth_id(study, m)): m["label"]
                  for study in (first, second)
                  for m in wait_for_tracking(http, study["study_uid"])["measurements"]}
        # Registration links each nodule of the second scan to its own prior.
        for nodule in second["nodules"]:
            assert labels[(second["study_uid"], nodule["id"])] == \
                labels[(first["study_uid"], nodule["id"])]
        body = http.get(f"/api/studies/{second['study_uid']}/nodules").json()
        assessment = body["assessment"]
        assert assessment["guideline"] == "fleischner-2017"
        assert assessment["rule"].startswith("Fleischner 2017")
        exam_day = "{}-{}-{}".format(second["study_date"][:4], second["study_date"][4:6],
                                     second["study_date"][6:])
        assert assessment["input"]["exam"]["date"] == exam_day
        assert assessment["next_scan"]["earliest"] > exam_day  # the demo nodules need follow-up
        growing = next(n for n in second["nodules"] if n["id"] == "n1")
        prior = next(n for n in first["nodules"] if n["id"] == "n1")
        n1 = next(n for n in assessment["nodules"]
                  if n["id"] == labels[(second["study_uid"], "n1")])
        assert n1["growth_mm"] == pytest.approx(growing["diameter_mm"] - prior["diameter_mm"],
                                                abs=0.05)
        assert n1["vdt_days"] is not None and n1["vdt_days"] > 0


def test_the_nodule_report_is_a_tid1500_sr_in_the_study(site: Site) -> None:
    study = site.truth["patients"][0]["studies"][0]
    with site.http() as http:
        series = http.get(f"/dicomweb/studies/{study['study_uid']}/series",
                          params={"Modality": "SR"}).json()
        ours = [s for s in series if s.get("0008103E", {}).get("Value") ==
                ["cloudfilm nodule measurements"]]
        assert len(ours) == 1
        uid = ours[0]["0020000E"]["Value"][0]
        metadata = http.get(f"/dicomweb/studies/{study['study_uid']}/series/{uid}/metadata").json()
        assert len(metadata) == 1  # the report is replaced, not piled up
        assert metadata[0]["0040A043"]["Value"][0]["00080100"]["Value"] == ["126000"]
        text = json.dumps(metadata)
        assert "112040" in text  # Tracking Unique Identifier
        nodules = http.get(f"/api/studies/{study['study_uid']}/nodules").json()["measurements"]
        assert {m["sr_instance_uid"] for m in nodules if m["source"] == "cloudfilm"} == \
            {metadata[0]["00080018"]["Value"][0]}


def test_fhir_export_has_one_observation_per_nodule(site: Site) -> None:
    study = site.truth["patients"][0]["studies"][0]
    with site.http("demo-physician") as http:
        r = http.get(f"/api/studies/{study['study_uid']}/nodules/fhir")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/fhir+json")
    bundle = r.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "collection"
    observations = [e["resource"] for e in bundle["entry"]]
    assert len(observations) == len(study["nodules"])
    assert all(o["resourceType"] == "Observation" for o in observations)
    sizes = sorted(c["valueQuantity"]["value"] for o in observations for c in o["component"]
                   if c["code"]["coding"][0]["code"] == "103339001")  # Long Axis
    assert sizes == sorted(n["diameter_mm"] for n in study["nodules"])


def test_physician_can_link_unlink_and_mark_new(site: Site) -> None:
    study = site.truth["patients"][0]["studies"][1]
    with site.http("demo-physician") as http:
        measurements = http.get(f"/api/studies/{study['study_uid']}/nodules").json()["measurements"]
        first, second = measurements[0], measurements[1]
        new = http.post(f"/api/nodule-measurements/{first['id']}/new").json()["measurement"]
        assert new["link"] == "new" and new["nodule_id"] != first["nodule_id"]
        clash = http.post(f"/api/nodule-measurements/{first['id']}/link",
                          json={"nodule_id": second["nodule_id"]})
        assert clash.status_code == 422  # one measurement per nodule and study
        back = http.post(f"/api/nodule-measurements/{first['id']}/link",
                         json={"nodule_id": first["nodule_id"]}).json()["measurement"]
        assert back["link"] == "confirmed" and back["label"] == first["label"]
        gone = http.post(f"/api/nodule-measurements/{second['id']}/unlink").json()["measurement"]
        assert gone["link"] == "unlinked" and gone["nodule_id"] is None
        assessed = wait_for_tracking(http, study["study_uid"])["assessment"]
        assert [n["id"] for n in assessed["nodules"]] == [first["label"]]
        relinked = http.post(f"/api/nodule-measurements/{second['id']}/link",
                             json={"nodule_id": second["nodule_id"]})
        assert relinked.status_code == 200
        wait_for_tracking(http, study["study_uid"])


def test_who_may_measure_and_read(site: Site) -> None:
    study = site.truth["patients"][0]["studies"][0]
    nodule = study["nodules"][0]
    path = f"/api/studies/{study['study_uid']}/nodules"
    with site.http("demo-patient") as http:
        assert http.get(path).status_code == 200  # the patient reads their own
        assert http.post(path, json=_manual(study, nodule)).status_code == 403
    with site.http("other-physician") as http:
        assert http.get(path).status_code == 404  # no grant: as if it did not exist
        assert http.post(path, json=_manual(study, nodule)).status_code == 404
    with site.http("viewing-physician") as http:
        assert http.get(path).status_code == 200  # a view-only grant reads
        assert http.post(path, json=_manual(study, nodule)).status_code == 403
        assert http.post(f"{path}/assess", json={}).status_code == 403
        form = http.post(f"/studies/{study['study_uid']}/nodules/assess",
                         data={"guideline": "fleischner-2017"}, follow_redirects=False)
        assert form.status_code == 403  # the study page's form: the same rule
        shown = http.get(f"/studies/{study['study_uid']}", params={"lang": "en"})
        page = shown.text
        assert shown.status_code == 200 and 'id="nodules"' in page  # reads the panel...
        assert "?tool=nodule" not in page and "/nodules/assess" not in page  # ...no forms
    with site.http("demo-physician") as http:
        page = http.get(f"/studies/{study['study_uid']}", params={"lang": "en"}).text
        assert "?tool=nodule" in page  # a grant that allows writing: offered the tool
        bad = http.post(path, json=_manual(study, nodule, long_axis_mm=3.0, short_axis_mm=5.0))
        assert bad.status_code == 422 and "short axis" in bad.json()["error"]
        for field, value in (("spiculated", "yes"), ("lobe", 5), ("nodule_type", "cystic")):
            wrong = http.post(path, json=_manual(study, nodule, **{field: value}))
            assert wrong.status_code == 422 and field.split("_")[-1] in wrong.json()["error"], \
                (field, wrong.text)


def test_growth_chart_and_explanation_pages(site: Site) -> None:
    person_id = None
    with site.http("demo-patient") as http:
        study = site.truth["patients"][0]["studies"][1]
        page = http.get(f"/studies/{study['study_uid']}", params={"lang": "en"})
        assert page.status_code == 200
        assert 'id="nodules"' in page.text and "nodule-explanation" in page.text
        assert "your doctor" in page.text.lower()
        zh = http.get(f"/studies/{study['study_uid']}", params={"lang": "zh"})
        assert "医生" in zh.text
        person_id = http.get("/api/me").json()["person_id"]
    assert person_id is not None
    with site.http("demo-physician") as http:
        folder = http.get(f"/patients/{person_id}", params={"lang": "en"})
        assert folder.status_code == 200
        assert 'id="tracking-table"' in folder.text and "growth-chart" in folder.text
        trajectories = http.get(f"/api/persons/{person_id}/nodules").json()["nodules"]
    followed = [n for n in trajectories if len(n["measurements"]) >= 2]
    assert followed, "a nodule measured on two scans has a trajectory"
    n = followed[0]["measurements"]
    assert n[1]["change"]["diameter_mm"] == pytest.approx(
        n[1]["mean_diameter_mm"] - n[0]["mean_diameter_mm"], abs=0.11)
    assert math.isfinite(n[1]["change"]["volume_percent"])


def test_cloudfilm_report_is_not_imported_back(site: Site) -> None:
    """Reading a study imports other software's SRs, never cloudfilm's own report."""
    study = site.truth["patients"][0]["studies"][0]
    with site.http() as http:
        before = http.get(f"/api/studies/{study['study_uid']}/nodules").json()["measurements"]
        again = http.get(f"/api/studies/{study['study_uid']}/nodules").json()["measurements"]
    assert len(again) == len(before)
    assert all(m["source"] == "cloudfilm" for m in again)


def ohif_nodule_sr(http: httpx.Client, study: dict[str, Any]) -> tuple[pydicom.Dataset, bytes]:
    """OHIF's TID 1500 SR (as dcmjs writes it) of a demo study's first nodule, beside an
    18 cm line across the chest; and its Part 10 bytes. ``http`` is a client of the
    server's /dicomweb root (the CT's metadata is read through it)."""
    from test_nodule_sr import _dcmjs_group, _dcmjs_num, ohif_sr

    nodule = study["nodules"][0]
    col, row, _ = nodule["center_voxel"]
    half = nodule["diameter_mm"] / 2 / study["pixel_spacing_mm"]
    ct_json = http.get(f"/studies/{study['study_uid']}/series/{study['series_uid']}"
                       f"/instances/{nodule['instance_uid_at_center']}/metadata").json()[0]
    ct_json.pop("7FE00010", None)  # pixels are not needed to reference the image
    ct = pydicom.Dataset.from_json(ct_json)
    sop = nodule["instance_uid_at_center"]
    group = _dcmjs_group("Bidirectional", [
        _dcmjs_num("Long Axis", "G-A185", nodule["diameter_mm"],
                   [col - half, row, col + half, row], sop),
        _dcmjs_num("Short Axis", "G-A186", nodule["diameter_mm"],
                   [col, row - half, col, row + half], sop)])
    chest = _dcmjs_group("Length", [_dcmjs_num("Length", "G-D7FE", 180.0,
                                                [10.0, 250.0, 400.0, 250.0], sop)])
    sr = ohif_sr(ct, [group, chest])
    buffer = io.BytesIO()
    sr.save_as(buffer, enforce_file_format=True)
    return sr, buffer.getvalue()


def test_an_ohif_measurement_stored_by_stow_joins_the_nodule_model(site: Site) -> None:
    """OHIF saves dcmjs TID 1500 SRs via STOW; reading the study imports them as nodules."""
    patient = site.truth["patients"][1]
    study = patient["studies"][0]
    nodule = study["nodules"][0]
    with httpx.Client(base_url=site.server.dicomweb, headers=site.server.auth,
                      timeout=120) as http:
        sr, part10 = ohif_nodule_sr(http, study)
        stored = stow(http, [part10])
        assert stored.status_code == 200, stored.text
    # Six readers at once (as on several nodes): the SR is imported once, not per reader.
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda _: _nodules(site, study["study_uid"]), range(6)))
    assert all(a.status_code == 200 for a in answers), [a.text for a in answers]
    with site.http() as http:
        measurements = wait_for_tracking(http, study["study_uid"])["measurements"]
    imported = [m for m in measurements if m["source"] == "sr-import"]
    assert len(imported) == 1  # the 18 cm line across the chest is not a nodule
    m = imported[0]
    assert m["long_axis_mm"] == pytest.approx(nodule["diameter_mm"], abs=0.05)
    assert m["label"] and m["sr_instance_uid"] == str(sr.SOPInstanceUID)
    assert math.dist(m["center_patient_mm"], nodule["center_patient_mm"]) < 1.5
    with site.http() as http:  # read again: imported once, not twice
        again = http.get(f"/api/studies/{study['study_uid']}/nodules").json()["measurements"]
        assert [x["id"] for x in again if x["source"] == "sr-import"] == [m["id"]]
        # A physician removes it: it stays removed (the SR is not read again).
        assert http.delete(f"/api/nodule-measurements/{m['id']}").status_code == 204
        after = wait_for_tracking(http, study["study_uid"])["measurements"]
    assert [x for x in after if x["source"] == "sr-import"] == []


def _nodules(site: Site, study_uid: str) -> httpx.Response:
    with site.http() as http:
        return http.get(f"/api/studies/{study_uid}/nodules")


def test_a_click_measures_the_nodule_in_3d_and_tracks_it(site: Site) -> None:
    """The viewer's "measure nodule" request: segmentation within ±0.5 mm of the demo truth."""
    patient = site.truth["patients"][1]
    measured = []
    for study in patient["studies"][1:]:
        nodule = next(n for n in study["nodules"] if n["type"] == "solid")
        col, row, _ = nodule["center_voxel"]
        with site.http() as http:  # an admin: the demo physician sees only the first patient
            r = http.post(f"/api/studies/{study['study_uid']}/nodules/measure", json={
                "series_uid": study["series_uid"], "instance_uid": nodule["instance_uid_at_center"],
                "x": col + 1, "y": row - 1})  # a click a pixel off the centre
        assert r.status_code == 201, r.text
        m = r.json()["measurement"]
        assert m["mean_diameter_mm"] == pytest.approx(nodule["diameter_mm"], abs=0.5)
        assert m["volume_mm3"] == pytest.approx(math.pi * nodule["diameter_mm"] ** 3 / 6, rel=0.1)
        assert m["method"] == "semi-automatic" and m["suggested_type"] == "solid"
        assert math.dist(m["center_patient_mm"], nodule["center_patient_mm"]) < 1.0
        contour = m["outline"]["contour"]
        assert len(contour) >= 8 and m["outline"]["instance_uid"]
        assert r.json()["tracking"] == "pending" and r.json()["nodule"] is None
        measured.append((study["study_uid"], m["id"]))
    with site.http() as http:
        labels = [next(m["label"] for m in wait_for_tracking(http, uid)["measurements"]
                       if m["id"] == measurement_id) for uid, measurement_id in measured]
    assert labels[0] == labels[1]  # the second scan's nodule is the first one's
    with site.http() as http:
        away = http.post(f"/api/studies/{study['study_uid']}/nodules/measure", json={
            "series_uid": study["series_uid"], "instance_uid": nodule["instance_uid_at_center"],
            "x": 5, "y": 5})  # outside the body
        assert away.status_code == 422 and away.json()["error"]
        missing = http.post(f"/api/studies/{study['study_uid']}/nodules/measure", json={
            "series_uid": "1.2.3.4", "instance_uid": "1.2.3.5", "x": 5, "y": 5})
        assert missing.status_code == 404


def test_measuring_the_older_scan_last_still_links_the_newer_one(site: Site) -> None:
    """Order must not matter: the later scan is re-tracked once its prior is measured."""
    patient = site.truth["patients"][1]
    older, newer = patient["studies"][1], patient["studies"][2]
    nodule_new = next(n for n in newer["nodules"] if n["type"] == "ground-glass")
    nodule_old = next(n for n in older["nodules"] if n["id"] == nodule_new["id"])
    with site.http() as http:
        first = http.post(f"/api/studies/{newer['study_uid']}/nodules",
                          json=_manual(newer, nodule_new)).json()["measurement"]
        second = http.post(f"/api/studies/{older['study_uid']}/nodules",
                           json=_manual(older, nodule_old)).json()["measurement"]
        relinked = next(m for m in wait_for_tracking(http, newer["study_uid"])["measurements"]
                        if m["id"] == first["id"])
        prior = next(m for m in wait_for_tracking(http, older["study_uid"])["measurements"]
                     if m["id"] == second["id"])
    assert relinked["nodule_id"] == prior["nodule_id"] is not None


# -- the order of measuring does not matter ---------------------------------------------------

def _reset(http: httpx.Client, patient: dict[str, Any]) -> None:
    """Remove every measurement of the patient (the next order starts from nothing)."""
    for study in patient["studies"]:
        for m in http.get(f"/api/studies/{study['study_uid']}/nodules").json()["measurements"]:
            gone = http.delete(f"/api/nodule-measurements/{m['id']}")
            assert gone.status_code in (200, 204), gone.text


def _truth_id(study: dict[str, Any], measurement: dict[str, Any]) -> str:
    """The demo nodule a measurement is of (its centre is within 2 mm of the truth)."""
    near = [n["id"] for n in study["nodules"]
            if math.dist(n["center_patient_mm"], measurement["center_patient_mm"]) < 2.0]
    assert len(near) == 1, (measurement, study["nodules"])
    return near[0]


def _outcome(http: httpx.Client, patient: dict[str, Any], person: int) -> dict[str, Any]:
    """What a reader sees: each scan's labels, links, growth and guideline result, and
    which measurements each followed nodule holds."""
    scans = []
    for study in patient["studies"]:
        body = wait_for_tracking(http, study["study_uid"])
        assessment = body["assessment"] or {}
        scans.append({
            "nodules": sorted((_truth_id(study, m), m["label"], m["link"],
                               None if m["match_distance_mm"] is None
                               else round(m["match_distance_mm"], 1))
                              for m in body["measurements"]),
            "category": assessment.get("category"), "rule": assessment.get("rule_id"),
            "next_scan": assessment.get("next_scan"),
            "growth": sorted((n["id"], n["growth_mm"], n["vdt_days"])
                             for n in assessment.get("nodules", []))})
    uid_index = {s["study_uid"]: i for i, s in enumerate(patient["studies"])}
    followed = sorted((n["label"], tuple(
        (uid_index[m["study_uid"]], _truth_id(patient["studies"][uid_index[m["study_uid"]]], m))
        for m in n["measurements"])) for n in
        http.get(f"/api/persons/{person}/nodules").json()["nodules"])
    return {"scans": scans, "followed": followed}


def _measure_manually(http: httpx.Client, patient: dict[str, Any], order: tuple[int, ...]) -> None:
    for index in order:
        study = patient["studies"][index]
        for nodule in study["nodules"]:
            r = http.post(f"/api/studies/{study['study_uid']}/nodules", json=_manual(study, nodule))
            assert r.status_code == 201, r.text
    for study in patient["studies"]:
        wait_for_tracking(http, study["study_uid"])


def test_tracking_does_not_depend_on_the_order_scans_are_measured_in(site: Site) -> None:
    """Three scans of one patient (two hospitals) measured in all six orders: the same
    nodules, labels, links and guideline results each time."""
    from itertools import permutations

    patient = site.truth["patients"][0]
    assert len(patient["studies"]) == 3
    with site.http("demo-patient") as http:
        person = http.get("/api/me").json()["person_id"]
    outcomes = {}
    with site.http("demo-physician") as http:
        for order in permutations(range(3)):
            _reset(http, patient)
            _measure_manually(http, patient, order)
            outcomes[order] = _outcome(http, patient, person)
    oldest_first = outcomes[(0, 1, 2)]
    # Each demo nodule is one followed nodule over the three scans, never split in two.
    truth_ids = {n["id"] for n in patient["studies"][0]["nodules"]}
    assert sorted(list(steps) for _, steps in oldest_first["followed"]) == \
        [[(0, t), (1, t), (2, t)] for t in sorted(truth_ids)]
    assert oldest_first["scans"][2]["growth"][0][1] is not None  # growth is measured
    for order, outcome in outcomes.items():
        assert outcome == oldest_first, order


def test_clicks_on_the_newest_scan_first_still_follow_each_nodule(site: Site) -> None:
    """The viewer's measure path (3D segmentation), newest scan first: no nodule is "seen
    for the first time" on the newest scan, and the result is that of oldest first."""
    import re
    patient = site.truth["patients"][0]
    with site.http("demo-patient") as http:
        person = http.get("/api/me").json()["person_id"]
    outcomes = []
    with site.http("demo-physician") as http:
        for order in ((2, 1, 0), (0, 1, 2)):
            _reset(http, patient)
            for index in order:
                study = patient["studies"][index]
                for nodule in study["nodules"]:
                    col, row, _ = nodule["center_voxel"]
                    r = http.post(f"/api/studies/{study['study_uid']}/nodules/measure", json={
                        "series_uid": study["series_uid"],
                        "instance_uid": nodule["instance_uid_at_center"], "x": col, "y": row})
                    assert r.status_code == 201, r.text
            outcomes.append(_outcome(http, patient, person))
    assert outcomes[0] == outcomes[1]
    assert all(len(steps) == 3 for _, steps in outcomes[0]["followed"])
    newest = patient["studies"][2]
    with site.http("demo-patient") as http:
        text = http.get(f"/studies/{newest['study_uid']}", params={"lang": "en"}).text
    assert "First seen on this scan" not in text and "first scan in your folder" not in text
    # The growing nodule (+1.3 mm, volume measured up by more than 25 %) reads as grown,
    # the steady one as about the same: the text agrees with the numbers beside it.
    change = re.search(r'class="explanation-part explanation-change">(.*?)</div>', text, re.S)
    assert change is not None
    assert "It has grown since your scan of" in change.group(1)
    assert "went up by about" in change.group(1)
    assert "about the same size as on your scan of" in change.group(1)


def test_the_study_pages_apply_button_changes_the_guideline(site: Site) -> None:
    """The Nodules panel's "Apply" form, posted as the page has it, re-runs the guideline."""
    import re

    patient = site.truth["patients"][0]
    study = patient["studies"][2]
    uid = study["study_uid"]
    with site.http("demo-physician") as http:
        if not http.get(f"/api/studies/{uid}/nodules").json()["measurements"]:
            _measure_manually(http, patient, (0, 1, 2))
        page = http.get(f"/studies/{uid}", params={"lang": "en"}).text
        form = re.search(r'<form method="post" action="([^"]*/nodules/assess)"[^>]*>(.*?)</form>',
                         page, re.S)
        assert form is not None, "the panel offers the guideline form"
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"',
                                 form.group(2)))
        options = re.findall(r'<option value="([^"]+)"', form.group(2))
        assert "lung-rads-2022" in options and "low" in options
        for guideline, risk in (("lung-rads-2022", "high"), ("fleischner-2017", "low")):
            applied = http.post(form.group(1), data=fields | {"guideline": guideline,
                                                              "risk": risk},
                                follow_redirects=False)
            assert applied.status_code == 303, applied.text
            assert applied.headers["location"].endswith(f"/studies/{uid}#nodules")
            assessment = http.get(f"/api/studies/{uid}/nodules").json()["assessment"]
            assert assessment["guideline"] == guideline
            assert assessment["input"]["patient"]["risk"] == risk


def _english_guideline_words(assessment: dict[str, Any]) -> list[str]:
    return [assessment["category"], assessment["recommendation"], assessment["rule"]]


def test_chinese_study_pages_word_the_guideline_for_patient_and_physician(site: Site) -> None:
    """zh pages: the physician reads the guideline's own wording and the record's identity,
    the patient plain words and the plain-language text; neither reads English."""
    import re
    from html import unescape

    patient = site.truth["patients"][0]
    study = patient["studies"][2]
    uid = study["study_uid"]
    with site.http("demo-physician") as http:
        if not http.get(f"/api/studies/{uid}/nodules").json()["measurements"]:
            _measure_manually(http, patient, (0, 1, 2))
        assessment = http.post(f"/api/studies/{uid}/nodules/assess",
                               json={"guideline": "fleischner-2017", "risk": "high"}).json()
        assessment = http.get(f"/api/studies/{uid}/nodules").json()["assessment"]
        doctor = unescape(http.get(f"/studies/{uid}", params={"lang": "zh"}).text)
        doctor_en = unescape(http.get(f"/studies/{uid}", params={"lang": "en"}).text)
    with site.http("demo-patient") as http:
        own = unescape(http.get(f"/studies/{uid}", params={"lang": "zh"}).text)
    english = _english_guideline_words(assessment)
    for page in (doctor, own):
        category = re.search(r'<dd id="nodule-category">([^<]*)</dd>', page)
        advice = re.search(r'<dd id="nodule-recommendation">([^<]*)</dd>', page)
        assert category and advice and re.search(r"[\u4e00-\u9fff]", category.group(1))
        assert re.search(r"[\u4e00-\u9fff]", advice.group(1))
        assert not [words for words in english if words in page]
    assert "表A（实性），多发，高危" in doctor  # the cell, in the clinician's words
    assert assessment["category"] in doctor_en and assessment["recommendation"] in doctor_en
    # The physician: who the patient is, in clinician wording; not the patient's texts.
    header = re.search(r'<dl class="pairs" id="patient-header">(.*?)</dl>', doctor, re.S)
    assert header is not None
    for words in ("张三", "男", f"{int(study['study_date'][:4]) - 1958}岁", "患者ID",
                  "1958年3月12日", study["patient_id"], study["hospital"]):
        assert words in header.group(1), words
    assert 'id="nodule-explanation"' not in doctor and "Brock" in doctor_en
    # The patient: the plain-language text and plain words, never Brock or the rule row.
    assert 'id="nodule-explanation"' in own and 'id="patient-header"' not in own
    assert "Brock" not in own and "MacMahon" not in own and "高危" not in own


def test_a_second_click_on_a_nodule_measures_it_again_not_a_second_nodule(site: Site) -> None:
    """The viewer's tool clicked twice on one nodule (a little off centre the second time):
    still one measurement of it, with the new geometry, in the same nodule."""
    patient = site.truth["patients"][0]
    study = patient["studies"][2]
    nodule = study["nodules"][0]
    col, row, _ = nodule["center_voxel"]
    with site.http("demo-physician") as http:
        _reset(http, patient)
        clicks = []
        for dx in (0.0, 2.0):
            r = http.post(f"/api/studies/{study['study_uid']}/nodules/measure", json={
                "series_uid": study["series_uid"], "instance_uid": nodule["instance_uid_at_center"],
                "x": col + dx, "y": row + dx})
            assert r.status_code == 201, r.text
            clicks.append(r.json()["measurement"])
        got = wait_for_tracking(http, study["study_uid"])["measurements"]
    assert clicks[0]["id"] == clicks[1]["id"]
    assert [m["id"] for m in got] == [clicks[0]["id"]]
    assert abs(got[0]["long_axis_mm"] - nodule["diameter_mm"]) <= 1.0
