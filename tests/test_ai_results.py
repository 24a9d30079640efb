"""AI results in and out (issue 15, IHE AIR) against a real external AI service.

The AI service is a test double that is a real HTTP server on a free port (Starlette +
uvicorn in a thread): it takes the CT series cloudfilm sends it by STOW-RS and, once it
has answered, stores back by STOW-RS a TID 1500 SR built with highdicom, with a bearer
token of its ``ai-service`` account: one nodule as an image outline on its slice, one as
a SCOORD3D point with a volume and a probability, its device observer naming the
algorithm. The CT is a small synthetic chest (256x256, 40 slices of 1.25 mm, two lungs of
-850 HU) with two solid spheres whose centres and diameters are known.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest
import uvicorn
from pydicom.dataset import FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.services.detection.finder import DETECTOR_NAME, DETECTOR_VERSION
from conftest import Server, database_url_for, free_port, run_cli
from factory import multipart_related, to_bytes
from jobs_wait import wait_for_tracking

SIZE, PIXEL, SLICES, THICK = 256, 1.2, 40, 1.25
ORIGIN = (-153.0, -153.0, -100.0)
NODULE_A = ((60.0, 0.0, -75.0), 10.0)   # reported as an outline on its slice
NODULE_B = ((-60.0, 10.0, -80.0), 8.0)  # reported as a SCOORD3D point with a volume
ALGORITHM, VERSION = "LungAI", "2.1.0"
DEADLINE = 120.0


# -- a small synthetic chest CT ---------------------------------------------------------

def chest_ct(nodules: list[tuple[tuple[float, float, float], float]], *, slices: int = SLICES,
             patient_id: str = "AI-1", study: str | None = None) -> list[pydicom.Dataset]:
    """Air, an elliptic body of soft tissue, two lungs and solid spheres, 8 HU noise."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    x, y = ORIGIN[0] + cols * PIXEL, ORIGIN[1] + rows * PIXEL
    base = np.where((x / 140) ** 2 + (y / 100) ** 2 <= 1, 40.0, -1000.0)
    base[(((x - 60) / 45) ** 2 + (y / 70) ** 2 <= 1)
         | (((x + 60) / 45) ** 2 + (y / 70) ** 2 <= 1)] = -850.0
    rng = np.random.default_rng(7)
    study = study or generate_uid()
    series, frame = generate_uid(), generate_uid()
    out = []
    for k in range(slices):
        z = ORIGIN[2] + k * THICK
        hu = base.copy()
        for (cx, cy, cz), d in nodules:
            hu[(x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2 <= (d / 2) ** 2] = 40.0
        hu += rng.normal(0, 8, hu.shape)
        out.append(_slice(hu, k, study, series, frame, patient_id))
    return out


def _slice(hu: np.ndarray, k: int, study: str, series: str, frame: str,
           patient_id: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
    ds.PatientName, ds.PatientID = "Test^Ai", patient_id
    ds.PatientBirthDate, ds.PatientSex = "19600101", "M"
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20250301", "101500", "A1", "1"
    ds.ReferringPhysicianName, ds.StudyDescription = "", "CT CHEST"
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = "CT", 2, k + 1, "test"
    ds.BodyPartExamined, ds.ImageType = "CHEST", ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Rows = ds.Columns = SIZE
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.ImagePositionPatient = [ORIGIN[0], ORIGIN[1], ORIGIN[2] + k * THICK]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [PIXEL, PIXEL], THICK
    ds.PixelData = np.round(hu + 1024).astype(np.int16).tobytes()
    return ds


def slice_at(images: list[pydicom.Dataset], z: float) -> pydicom.Dataset:
    return min(images, key=lambda ds: abs(float(ds.ImagePositionPatient[2]) - z))


def pixel_of(x: float, y: float) -> tuple[float, float]:
    """(column, row) pixel indices of a point on an axial slice."""
    return (x - ORIGIN[0]) / PIXEL, (y - ORIGIN[1]) / PIXEL


# -- what the AI service answers --------------------------------------------------------

def _tracking(label: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=hd.UID(), identifier=label)


def result_sr(images: list[pydicom.Dataset]) -> pydicom.Dataset:
    """A TID 1500 report: A as a closed outline on its slice with a diameter, B as a
    SCOORD3D point with a volume and a probability; a device observer names the AI."""
    (ax, ay, az), ad = NODULE_A
    image = slice_at(images, az)
    col, row = pixel_of(ax, ay)
    t = np.linspace(0, 2 * np.pi, 17)
    outline = np.stack([col + 0.5 + ad / 2 / PIXEL * np.cos(t),
                        row + 0.5 + ad / 2 / PIXEL * np.sin(t)], axis=1)  # SCOORD: +0.5
    source = hd.sr.SourceImageForRegion(referenced_sop_class_uid=image.SOPClassUID,
                                        referenced_sop_instance_uid=image.SOPInstanceUID)
    on_image = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking("AI-1"), finding_type=codes.SCT.Nodule,
        referenced_region=hd.sr.ImageRegion(graphic_type="POLYLINE", graphic_data=outline,
                                            source_image=source),
        measurements=[hd.sr.Measurement(name=codes.SCT.Diameter, value=ad,
                                        unit=codes.UCUM.Millimeter)])
    (bx, by, bz), bd = NODULE_B
    in_space = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=_tracking("AI-2"), finding_type=codes.SCT.Nodule,
        referenced_region=hd.sr.ImageRegion3D(
            graphic_type="POINT", graphic_data=np.array([[bx, by, bz]]),
            frame_of_reference_uid=image.FrameOfReferenceUID),
        measurements=[
            hd.sr.Measurement(name=codes.SCT.Volume, value=round(np.pi / 6 * bd ** 3, 1),
                              unit=hd.sr.CodedConcept("mm3", "UCUM", "cubic millimeter")),
            hd.sr.Measurement(name=hd.sr.CodedConcept("PROB", "99TEST", "Probability of nodule"),
                              value=0.87, unit=hd.sr.CodedConcept("1", "UCUM", "no units"))])
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=hd.UID(), name=ALGORITHM, manufacturer_name="Acme AI", model_name="LN-3"))
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=device),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
        imaging_measurements=[on_image, in_space])
    sr = hd.sr.Comprehensive3DSR(evidence=images, content=report, series_instance_uid=hd.UID(),
                                 series_number=900, sop_instance_uid=hd.UID(),
                                 instance_number=1, manufacturer="Acme AI")
    sr.SoftwareVersions = VERSION
    return sr


def result_seg(images: list[pydicom.Dataset], nodule: tuple[tuple[float, float, float], float]
               ) -> pydicom.Dataset:
    """A binary SEG of one sphere, with its Segmentation Algorithm Identification."""
    (cx, cy, cz), d = nodule
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    x, y = ORIGIN[0] + cols * PIXEL, ORIGIN[1] + rows * PIXEL
    mask = np.stack([(x - cx) ** 2 + (y - cy) ** 2 + (float(ds.ImagePositionPatient[2]) - cz)
                     ** 2 <= (d / 2) ** 2 for ds in images])
    algorithm = hd.AlgorithmIdentificationSequence(
        name="LungSeg", family=codes.DCM.ArtificialIntelligence, version="0.9")
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label="nodule",
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Nodule,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm)
    return hd.seg.Segmentation(
        source_images=images, pixel_array=mask, segmentation_type="BINARY",
        segment_descriptions=[segment], series_instance_uid=hd.UID(), series_number=901,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Acme AI",
        manufacturer_model_name="LN-SEG", software_versions="0.9", device_serial_number="1")


# -- the AI service: a real HTTP server -------------------------------------------------

@dataclass
class AiService:
    """Receives STOW-RS; answers each received CT series with ``answer`` (STOW-RS back)."""

    port: int = field(default_factory=free_port)
    cloudfilm: str = ""
    token: str = ""
    answer: Callable[[list[pydicom.Dataset]], pydicom.Dataset] = result_sr
    received: dict[str, list[pydicom.Dataset]] = field(default_factory=dict)
    answers: list[httpx.Response] = field(default_factory=list)

    @property
    def dicomweb(self) -> str:
        return f"http://127.0.0.1:{self.port}/dicomweb"

    async def stow(self, request: Request) -> Response:
        match = re.search(r'boundary="?([^";]+)"?', request.headers["content-type"])
        assert match is not None
        body = await request.body()
        parts = body.split(b"--" + match.group(1).encode())[1:-1]
        images = [pydicom.dcmread(_payload(p)) for p in parts]
        for ds in images:
            self.received.setdefault(ds.SeriesInstanceUID, []).append(ds)
        return Response(b"{}", media_type="application/dicom+json",
                        background=BackgroundTask(self.reply, images))

    def reply(self, images: list[pydicom.Dataset]) -> None:
        """After answering: the result goes back to cloudfilm with the AI's token."""
        images.sort(key=lambda ds: float(ds.ImagePositionPatient[2]))
        self.answers.append(stow_as(self.cloudfilm, self.token, [self.answer(images)]))


def _payload(part: bytes) -> Any:
    import io
    _, _, data = part.partition(b"\r\n\r\n")
    return io.BytesIO(data[:-2] if data.endswith(b"\r\n") else data)


def stow_as(base: str, token: str, datasets: list[pydicom.Dataset]) -> httpx.Response:
    body, content_type = multipart_related([to_bytes(ds) for ds in datasets])
    return httpx.post(f"{base}/dicomweb/studies", content=body, timeout=60, headers={
        "content-type": content_type, "accept": "application/dicom+json",
        "authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
def ai_service(database_kind: str) -> Iterator[AiService]:
    """A fresh AI service per database run."""
    service = AiService()
    app = Starlette(routes=[Route("/dicomweb/studies", service.stow, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=service.port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield service
    server.should_exit = True
    thread.join(timeout=10)


@dataclass
class Site:
    server: Server
    ai: AiService
    http: httpx.Client


def cli(server: Server, *args: str) -> str:
    done = run_cli([*args, "--data", str(server.data_dir)], server.database_url)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def site(database_kind: str, tmp_path_factory: pytest.TempPathFactory,
         ai_service: AiService) -> Iterator[Site]:
    """cloudfilm with a 1 s stable age and the AI service registered through the CLI."""
    data_dir = tmp_path_factory.mktemp(f"ai-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    server = Server(data_dir, url, extra_env={"CLOUDFILM_STABLE_AGE": "1"})
    try:
        server.start()
        added = cli(server, "node", "add", "lungai", "--aet", "LUNGAI", "--host", "127.0.0.1",
                    "--port", "11112", "--dicomweb", ai_service.dicomweb, "--ai", "ct-chest")
        assert "cloudfilm token issue ai.lungai" in added
        ai_service.cloudfilm = server.url
        ai_service.token = cli(server, "token", "issue", "ai.lungai").strip()
        with server.http() as http:
            yield Site(server, ai_service, http)
    finally:
        server.stop()
        if schema:
            schema.drop()


def store(site: Site, images: list[pydicom.Dataset]) -> None:
    body, content_type = multipart_related([to_bytes(ds) for ds in images])
    stored = site.http.post("/dicomweb/studies", content=body, headers={
        "content-type": content_type, "accept": "application/dicom+json"})
    assert stored.status_code == 200, stored.text


def wait_for_candidates(http: httpx.Client, study: str, count: int,
                        source: str | None = None) -> list[dict[str, Any]]:
    deadline = time.monotonic() + DEADLINE
    while True:
        answer = http.get(f"/api/studies/{study}/ai-candidates")
        assert answer.status_code == 200, answer.text
        found = [c for c in answer.json()["candidates"] if source in (None, c["source"])]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} candidates after {DEADLINE:g} s")
        time.sleep(0.3)


def failure_reasons(response: httpx.Response) -> list[tuple[int, str]]:
    return [(item["00081197"]["Value"][0], item["00F11001"]["Value"][0])
            for item in response.json().get("00081198", {}).get("Value", [])]


@pytest.fixture(scope="module")
def exam(site: Site) -> dict[str, Any]:
    """A chest CT (sent to the AI, which answers) and a 5-slice CT of the same study (not
    sent: too few slices for ct-chest)."""
    images = chest_ct([NODULE_A, NODULE_B])
    study = images[0].StudyInstanceUID
    short = chest_ct([], slices=5, study=study)
    store(site, images)
    store(site, short)
    candidates = wait_for_candidates(site.http, study, 2)
    return {"images": images, "study": study, "series": images[0].SeriesInstanceUID,
            "short": short, "candidates": candidates}


def _near(candidate: dict[str, Any], centre: tuple[float, float, float], mm: float) -> bool:
    return bool(np.linalg.norm(np.subtract(candidate["center_mm"], centre)) <= mm)


def test_node_list_shows_the_ai_profile(site: Site) -> None:
    listed = cli(site.server, "node", "list")
    assert re.search(r"^lungai\t.*\tai=ct-chest$", listed, re.M), listed


def test_the_admin_api_registers_an_ai_service_with_its_account(site: Site) -> None:
    added = site.http.post("/api/admin/nodes", json={
        "name": "NoduleAI", "aet": "NODULEAI", "host": "127.0.0.1", "port": 11113,
        "dicomweb": "http://127.0.0.1:1/dicomweb", "ai": "ct-chest"})
    assert added.status_code == 201, added.text
    assert added.json()["ai"] == "ct-chest" and added.json()["account"] == "ai.noduleai"
    assert re.search(r"^NoduleAI\t.*\tai=ct-chest$", cli(site.server, "node", "list"), re.M)
    unknown = site.http.post("/api/admin/nodes", json={
        "name": "OtherAI", "aet": "OTHERAI", "host": "127.0.0.1", "port": 11114,
        "ai": "knee-mri"})
    assert unknown.status_code == 400 and "knee-mri" in unknown.text
    assert site.http.delete("/api/admin/nodes/NoduleAI").status_code == 204


def test_a_stable_chest_ct_goes_to_the_ai_once_and_its_sr_becomes_candidates(
        site: Site, exam: dict[str, Any]) -> None:
    assert list(site.ai.received) == [exam["series"]]  # the short series was not sent
    assert len(site.ai.received[exam["series"]]) == SLICES
    assert [r.status_code for r in site.ai.answers] == [200]
    a = next(c for c in exam["candidates"] if _near(c, NODULE_A[0], 1.0))
    b = next(c for c in exam["candidates"] if _near(c, NODULE_B[0], 0.1))
    for candidate in (a, b):
        assert candidate["source"] == "lungai" and candidate["status"] == "pending"
        assert candidate["algorithm"] == {"name": ALGORITHM, "version": VERSION}
        assert candidate["series_uid"] == exam["series"] and candidate["measurement"] is None
    assert a["diameter_mm"] == NODULE_A[1] and a["score"] is None
    assert a["instance_uid"] == slice_at(exam["images"], NODULE_A[0][2]).SOPInstanceUID
    assert (a["column"], a["row"]) == pytest.approx(pixel_of(*NODULE_A[0][:2]), abs=0.05)
    assert b["diameter_mm"] == pytest.approx(NODULE_B[1], abs=0.1) and b["score"] == 0.87
    assert b["instance_uid"] == slice_at(exam["images"], NODULE_B[0][2]).SOPInstanceUID
    assert (b["column"], b["row"]) == pytest.approx(pixel_of(*NODULE_B[0][:2]), abs=0.05)
    time.sleep(3)  # several scans later, still sent once
    assert len(site.ai.received[exam["series"]]) == SLICES


def test_accepting_measures_at_the_point_and_rejecting_marks(site: Site,
                                                             exam: dict[str, Any]) -> None:
    study = exam["study"]
    a = next(c for c in exam["candidates"] if _near(c, NODULE_A[0], 1.0))
    b = next(c for c in exam["candidates"] if _near(c, NODULE_B[0], 0.1))
    # The AI's measurements are no physician's: nothing is a measurement before accepting.
    assert wait_for_tracking(site.http, study)["measurements"] == []
    accepted = site.http.post(f"/api/ai-candidates/{a['id']}/accept")
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    measurement = body["measurement"]
    assert body["candidate"]["status"] == "accepted"
    assert body["candidate"]["decided_by"] == "test-admin"
    assert body["candidate"]["measurement"]["id"] == measurement["id"]
    assert measurement["method"] == "semi-automatic"
    assert measurement["mean_diameter_mm"] == pytest.approx(NODULE_A[1], abs=1.2)
    assert np.linalg.norm(np.subtract(measurement["center_patient_mm"], NODULE_A[0])) < 1.5
    assert site.http.post(f"/api/ai-candidates/{a['id']}/accept").status_code == 409
    rejected = site.http.post(f"/api/ai-candidates/{b['id']}/reject")
    assert rejected.status_code == 200 and rejected.json()["candidate"]["status"] == "rejected"
    assert site.http.post(f"/api/ai-candidates/{b['id']}/accept").status_code == 409
    assert site.http.post(f"/api/ai-candidates/{b['id']}/reject").status_code == 409
    tracked = wait_for_tracking(site.http, study)["measurements"]
    assert [m["id"] for m in tracked] == [measurement["id"]]  # only the accepted one
    listed = site.http.get(f"/api/studies/{study}/ai-candidates").json()["candidates"]
    assert {c["id"]: c["status"] for c in listed} == {a["id"]: "accepted", b["id"]: "rejected"}


def test_an_edited_point_that_does_not_segment_is_a_422_and_stays_pending(
        site: Site, exam: dict[str, Any]) -> None:
    """A SEG for the same series (a second result) gives a third candidate, at B."""
    seg = stow_as(site.server.url, site.ai.token, [result_seg(exam["images"], NODULE_B)])
    assert seg.status_code == 200, seg.text
    found = wait_for_candidates(site.http, exam["study"], 3)
    c = next(c for c in found if c["algorithm"]["name"] == "LungSeg")
    assert c["algorithm"]["version"] == "0.9" and c["series_uid"] == exam["series"]
    assert _near(c, NODULE_B[0], 0.3)
    assert c["diameter_mm"] == pytest.approx(NODULE_B[1], abs=0.5)
    assert c["volume_mm3"] == pytest.approx(np.pi / 6 * NODULE_B[1] ** 3, rel=0.1)
    far = {"instance_uid": c["instance_uid"], "column": 2.0, "row": 2.0}  # air, outside
    missed = site.http.post(f"/api/ai-candidates/{c['id']}/accept", json=far)
    assert missed.status_code == 422, missed.text
    assert site.http.get(f"/api/studies/{exam['study']}/ai-candidates").json()[
        "candidates"][-1]["status"] == "pending"
    bad = site.http.post(f"/api/ai-candidates/{c['id']}/accept", json={"column": 1})
    assert bad.status_code == 400


def test_the_ai_may_store_only_results_for_series_sent_to_it(site: Site,
                                                             exam: dict[str, Any]) -> None:
    token, url = site.ai.token, site.server.url
    before = site.http.get(f"/api/studies/{exam['study']}/ai-candidates").json()["candidates"]
    never_sent = stow_as(url, token, [result_sr(exam["short"])])
    assert never_sent.status_code == 409
    assert failure_reasons(never_sent) == [
        (0x0124, "this result references no series sent to AI node lungai")]
    elsewhere = chest_ct([NODULE_A], patient_id="AI-2")
    store(site, elsewhere)  # another study, not sent yet (and the AI account cannot see it)
    assert stow_as(url, token, [result_sr(elsewhere)]).status_code == 409
    image = chest_ct([], slices=1, study=exam["study"])[0]
    refused = stow_as(url, token, [image])
    assert failure_reasons(refused) == [
        (0x0124, "an AI service may store only its results: DICOM SR (TID 1500) or SEG")]
    ai = httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"})
    assert ai.get(f"/api/studies/{exam['study']}/ai-candidates").status_code == 404
    assert ai.get("/dicomweb/studies", params={"StudyInstanceUID": exam["study"]}).json() == []
    ai.close()
    listed = site.http.get(f"/api/studies/{exam['study']}/ai-candidates").json()["candidates"]
    assert [c["id"] for c in listed] == [c["id"] for c in before]  # nothing from the refused


def test_patients_never_see_an_ai_result_in_their_folder(site: Site,
                                                         exam: dict[str, Any]) -> None:
    """The record joins a patient's folder: the AI's SR is no report and no document of it.

    Runs after the accept test (cloudfilm's own nodule SR) and the SEG test, in the file's
    order, which `make test` keeps (``--dist loadfile``)."""
    from test_people import make_account
    patient = make_account(site.server, "patient")
    person = patient.person_id
    linked = site.http.post(f"/api/persons/{person}/records",
                            json={"patient_id": "AI-1", "issuer": ""})
    assert linked.status_code == 201, linked.text
    timeline = patient.http.get("/api/me/timeline").json()["studies"]
    assert [s["study_uid"] for s in timeline] == [exam["study"]]
    results = {c["result_sop_uid"] for c in site.http.get(
        f"/api/studies/{exam['study']}/ai-candidates").json()["candidates"]}
    assert len(results) == 2  # the SR and the SEG
    documents = {d["sop_uid"] for s in timeline for d in s.get("documents", [])}
    assert documents and not documents & results  # cloudfilm's own nodule SR only
    page = patient.http.get(f"/studies/{exam['study']}", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "Probability of nodule" not in page.text and "Diameter" not in page.text
    assert patient.http.get(f"/api/studies/{exam['study']}/ai-candidates").status_code == 404
    patient.http.close()


def test_the_builtin_detector_runs_as_a_job_and_reruns_replace_its_pending_candidates(
        site: Site) -> None:
    images = chest_ct([NODULE_A], patient_id="AI-3")
    study = images[0].StudyInstanceUID
    store(site, images)
    queued = site.http.post(f"/api/studies/{study}/nodules/detect")
    assert queued.status_code == 202 and queued.json()["status"] == "queued", queued.text
    found = wait_for_candidates(site.http, study, 1, source="builtin")
    assert {(c["algorithm"]["name"], c["algorithm"]["version"]) for c in found} == {
        (DETECTOR_NAME, DETECTOR_VERSION)}
    hit = next(c for c in found if _near(c, NODULE_A[0], 3.0))
    assert hit["series_uid"] == images[0].SeriesInstanceUID
    assert hit["diameter_mm"] == pytest.approx(NODULE_A[1], abs=2.0)
    rejected = site.http.post(f"/api/ai-candidates/{hit['id']}/reject")
    assert rejected.status_code == 200
    again = site.http.post(f"/api/studies/{study}/nodules/detect")
    assert again.status_code == 202
    wait_for_detection(site.http, study)
    listed = wait_for_candidates(site.http, study, 1, source="builtin")
    assert [c["status"] for c in listed if c["id"] == hit["id"]] == ["rejected"]
    assert not any(_near(c, NODULE_A[0], 3.0) for c in listed
                   if c["status"] == "pending")  # a rejected finding is not offered again


def wait_for_detection(http: httpx.Client, study: str) -> None:
    """Until the candidates list says the study's latest detection has ended, as the
    viewer polls it: queued or running, then idle (a finished job leaves the ledger)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        detection = http.get(f"/api/studies/{study}/ai-candidates").json()["detection"]
        assert detection["state"] in ("queued", "running", "idle"), detection
        if detection["state"] == "idle":
            return
        assert time.monotonic() < deadline, f"detection still {detection}"
        time.sleep(0.3)
