"""The synthetic demo data must be valid DICOM whose pixels agree with its truth file.

Why: demos, measurement and registration checks rely on the truth dict being exact;
a generator that silently drifts (wrong geometry, wrong nodule size, merged patient
records, mangled Chinese names, non-reproducible UIDs) would make them meaningless.
Uses a small matrix (256x256 @ 1.0 mm, 64 slices @ 1.25 mm) so the suite stays fast.
"""

from __future__ import annotations

import json
import math
import pathlib
from functools import cache
from typing import Any

import numpy as np
import pydicom
import pytest

from cloudfilm.services.demo.generate import (
    CT_IMAGE_STORAGE,
    DemoOptions,
    demo_truth,
    generate_demo,
    iter_demo_datasets,
    write_truth,
)

OPTS = DemoOptions(patients=2, slices=64, rows=256, columns=256, pixel_spacing_mm=1.0,
                   slice_thickness_mm=1.25, seed=7)
NODULE_HU = {"solid": 40.0, "ground-glass": -500.0}
LUNG_HU = -850.0


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, dict]:
    """Generate once per module: (root directory, truth dict)."""
    root = tmp_path_factory.mktemp("demo")
    return root, generate_demo(root, OPTS)


def _studies(truth: dict) -> list[dict]:
    """Every study of every patient, flattened."""
    return [s for p in truth["patients"] for s in p["studies"]]


def _series_files(root: pathlib.Path, study: dict) -> list[pathlib.Path]:
    """The files of a study's series, in file-name order."""
    return sorted((root / study["path"]).glob("*.dcm"))


@cache
def _volume(series_dir: pathlib.Path) -> tuple[np.ndarray, list[pydicom.Dataset]]:
    """HU volume indexed [slice, row, col] (slices sorted by InstanceNumber) plus headers."""
    datasets = sorted((pydicom.dcmread(f) for f in series_dir.glob("*.dcm")),
                      key=lambda d: int(d.InstanceNumber))
    hu = np.stack([(d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)).astype(np.float32)
                   for d in datasets])
    return hu, datasets


def _box(hu: np.ndarray, nodule: dict, margin_mm: float) -> np.ndarray:
    """Voxels within (radius + margin) of the nodule centre along each axis."""
    half_mm = nodule["diameter_mm"] / 2 + margin_mm
    col, row, k = (int(round(v)) for v in nodule["center_voxel"])
    hc = math.ceil(half_mm / OPTS.pixel_spacing_mm)
    hk = math.ceil(half_mm / OPTS.slice_thickness_mm)
    assert hk <= k < hu.shape[0] - hk, "nodule box leaves the scanned range"
    return hu[k - hk:k + hk + 1, row - hc:row + hc + 1, col - hc:col + hc + 1]


def _measured_diameter(hu: np.ndarray, nodule: dict) -> float:
    """Equivalent-sphere diameter from voxels above the lung/nodule midpoint HU."""
    threshold = -400.0 if nodule["type"] == "solid" else (LUNG_HU + NODULE_HU["ground-glass"]) / 2
    voxels = int((_box(hu, nodule, 4.0) > threshold).sum())
    volume = voxels * OPTS.pixel_spacing_mm**2 * OPTS.slice_thickness_mm
    return (6.0 * volume / math.pi) ** (1.0 / 3.0)


def test_every_file_is_a_readable_ct_image(demo: tuple[pathlib.Path, dict]) -> None:
    """All expected files exist and are Part-10 CT Image Storage, Explicit VR LE."""
    root, truth = demo
    files = sorted(root.rglob("*.dcm"))
    assert len(files) == len(_studies(truth)) * OPTS.slices
    for f in files[:: OPTS.slices // 4]:
        ds = pydicom.dcmread(f)
        assert ds.preamble is not None and len(ds.preamble) == 128
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
        assert ds.SOPClassUID == CT_IMAGE_STORAGE == ds.file_meta.MediaStorageSOPClassUID
        assert (ds.Modality, ds.BodyPartExamined, ds.StudyDescription) == ("CT", "CHEST", "CT CHEST")
        assert ds.pixel_array.shape == (OPTS.rows, OPTS.columns)
        assert ds.pixel_array.dtype == np.int16 and ds.PixelRepresentation == 1
        assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (1.0, -1024.0)
        assert (float(ds.WindowCenter), float(ds.WindowWidth)) == (-600.0, 1500.0)
        assert ds.AccessionNumber and ds.StudyID and ds.SeriesDescription
        assert "ReferringPhysicianName" in ds


def test_geometry_is_consistent(demo: tuple[pathlib.Path, dict]) -> None:
    """z steps by the slice spacing; x/y origin, orientation and spacing are constant."""
    root, truth = demo
    frames = set()
    for study in _studies(truth):
        _, dss = _volume(root / study["path"])
        z = np.array([float(d.ImagePositionPatient[2]) for d in dss])
        assert np.allclose(np.diff(z), OPTS.slice_thickness_mm, atol=1e-3)
        assert np.allclose([float(d.SliceLocation) for d in dss], z, atol=1e-3)
        assert [d.InstanceNumber for d in dss] == list(range(1, OPTS.slices + 1))
        assert {tuple(map(float, d.ImagePositionPatient[:2])) for d in dss} == {
            (-(OPTS.columns - 1) / 2 * OPTS.pixel_spacing_mm, -(OPTS.rows - 1) / 2 * OPTS.pixel_spacing_mm)}
        assert all([float(v) for v in d.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0] for d in dss)
        assert all([float(v) for v in d.PixelSpacing] == [OPTS.pixel_spacing_mm] * 2 for d in dss)
        assert {float(d.SliceThickness) for d in dss} == {OPTS.slice_thickness_mm}
        assert {d.FrameOfReferenceUID for d in dss} == {study["frame_of_reference_uid"]}
        assert {d.SeriesInstanceUID for d in dss} == {study["series_uid"]}
        assert {d.StudyInstanceUID for d in dss} == {study["study_uid"]}
        frames.add(study["frame_of_reference_uid"])
    assert len(frames) == len(_studies(truth))


def test_truth_voxel_and_mm_coordinates_agree(demo: tuple[pathlib.Path, dict]) -> None:
    """center_patient_mm = IPP(slice) + voxel * spacing, and the centre UID is that slice."""
    root, truth = demo
    for study in _studies(truth):
        _, dss = _volume(root / study["path"])
        for n in study["nodules"]:
            col, row, k = n["center_voxel"]
            first = [float(v) for v in dss[0].ImagePositionPatient]
            expected = [first[0] + col * OPTS.pixel_spacing_mm, first[1] + row * OPTS.pixel_spacing_mm,
                        first[2] + k * OPTS.slice_thickness_mm]
            assert np.allclose(n["center_patient_mm"], expected, atol=0.01)
            assert dss[int(round(k))].SOPInstanceUID == n["instance_uid_at_center"]


def test_nodule_and_lung_intensities(demo: tuple[pathlib.Path, dict]) -> None:
    """Nodule centres have the nodule HU; the lung shell around them is -850 HU + noise."""
    root, truth = demo
    kinds = set()
    for study in _studies(truth):
        hu, _ = _volume(root / study["path"])
        for n in study["nodules"]:
            col, row, k = (int(round(v)) for v in n["center_voxel"])
            assert abs(hu[k, row, col] - NODULE_HU[n["type"]]) < 40.0
            box = _box(hu, n, 8.0)
            kk, rr, cc = np.indices(box.shape)
            centre = (np.array(box.shape) - 1) / 2
            d_mm = np.sqrt(((kk - centre[0]) * OPTS.slice_thickness_mm) ** 2
                           + ((rr - centre[1]) * OPTS.pixel_spacing_mm) ** 2
                           + ((cc - centre[2]) * OPTS.pixel_spacing_mm) ** 2)
            shell = box[d_mm > n["diameter_mm"] / 2 + 4.0]
            assert abs(shell.mean() - LUNG_HU) < 5.0 and 3.0 < shell.std() < 20.0
            kinds.add(n["type"])
    assert kinds == {"solid", "ground-glass"}


def test_measured_diameters_match_truth(demo: tuple[pathlib.Path, dict]) -> None:
    """Equivalent-sphere diameter from thresholded voxels is within 0.5 mm of truth."""
    root, truth = demo
    for study in _studies(truth):
        hu, _ = _volume(root / study["path"])
        for n in study["nodules"]:
            assert abs(_measured_diameter(hu, n) - n["diameter_mm"]) <= 0.5, (study["path"], n)


def test_measured_centres_match_truth(demo: tuple[pathlib.Path, dict]) -> None:
    """The HU-weighted centroid of each nodule lies within 0.3 mm of the truth centre."""
    root, truth = demo
    spacing = np.array([OPTS.slice_thickness_mm, OPTS.pixel_spacing_mm, OPTS.pixel_spacing_mm])
    for study in _studies(truth):
        hu, _ = _volume(root / study["path"])
        for n in study["nodules"]:
            box = _box(hu, n, 4.0)
            weight = np.clip((box - LUNG_HU) / (NODULE_HU[n["type"]] - LUNG_HU), 0.0, 1.0)
            weight[weight < 0.1] = 0.0   # ignore lung noise
            centroid = np.array([(np.indices(box.shape)[a] * weight).sum() / weight.sum() for a in range(3)])
            offset_mm = (centroid - (np.array(box.shape) - 1) / 2) * spacing
            col, row, k = n["center_voxel"]
            rounding_mm = (np.array([k, row, col]) - np.rint([k, row, col])) * spacing
            assert np.allclose(offset_mm, rounding_mm, atol=0.3), (study["path"], n["id"])


def test_growth_between_studies_matches_truth(demo: tuple[pathlib.Path, dict]) -> None:
    """Measured first-to-last change per nodule equals the truth change (±0.5 mm)."""
    root, truth = demo
    growing = 0
    for patient in truth["patients"]:
        first, last = patient["studies"][0], patient["studies"][-1]
        for n0 in first["nodules"]:
            n1 = next(n for n in last["nodules"] if n["id"] == n0["id"])
            d0 = _measured_diameter(_volume(root / first["path"])[0], n0)
            d1 = _measured_diameter(_volume(root / last["path"])[0], n1)
            assert abs((d1 - d0) - (n1["diameter_mm"] - n0["diameter_mm"])) <= 0.5
            growing += n1["diameter_mm"] - n0["diameter_mm"] >= 1.0
    assert growing >= 2


def test_table_offset_differs_between_studies(demo: tuple[pathlib.Path, dict]) -> None:
    """The same nodule moves in patient space between studies, so registration is needed."""
    _, truth = demo
    for patient in truth["patients"]:
        centres = [tuple(s["nodules"][0]["center_patient_mm"]) for s in patient["studies"]]
        assert len(set(centres)) == len(centres)


def test_two_hospitals_keep_separate_patient_ids(demo: tuple[pathlib.Path, dict]) -> None:
    """Same person at HOSP-A and HOSP-B: same demographics, different ID and issuer."""
    root, truth = demo
    patient = truth["patients"][0]
    by_issuer: dict[str, pydicom.Dataset] = {}
    for study in patient["studies"]:
        by_issuer[study["issuer"]] = pydicom.dcmread(_series_files(root, study)[0])
    assert set(by_issuer) == {"HOSP-A", "HOSP-B"}
    a, b = by_issuer["HOSP-A"], by_issuer["HOSP-B"]
    assert a.PatientID != b.PatientID and a.IssuerOfPatientID != b.IssuerOfPatientID
    assert a.InstitutionName != b.InstitutionName
    assert (str(a.PatientName), a.PatientBirthDate, a.PatientSex) == (
        str(b.PatientName), b.PatientBirthDate, b.PatientSex)
    assert sorted((r["patient_id"], r["issuer"]) for r in patient["records"]) == sorted(
        (d.PatientID, d.IssuerOfPatientID) for d in (a, b))


def test_chinese_name_round_trips(demo: tuple[pathlib.Path, dict]) -> None:
    """The ideographic group survives encoding in both UTF-8 and GB18030 files."""
    root, truth = demo
    charsets = set()
    for study in truth["patients"][0]["studies"]:
        raw = _series_files(root, study)[0].read_bytes()
        ds = pydicom.dcmread(_series_files(root, study)[0])
        assert ds.PatientName.alphabetic == "Zhang^San"
        assert ds.PatientName.ideographic == "张^三"
        encoding = {"ISO_IR 192": "utf-8", "GB18030": "gb18030"}[ds.SpecificCharacterSet]
        assert "张^三".encode(encoding) in raw
        charsets.add(ds.SpecificCharacterSet)
    assert charsets == {"ISO_IR 192", "GB18030"}
    assert truth["patients"][0]["patient_name"] == "Zhang^San=张^三"


def test_same_seed_same_uids_and_pixels(demo: tuple[pathlib.Path, dict]) -> None:
    """Re-planning gives identical truth; the first slice re-renders bit-identically."""
    root, truth = demo
    assert demo_truth(OPTS) == truth
    other = demo_truth(DemoOptions(**{**truth["options"], "seed": OPTS.seed + 1}))
    assert {s["study_uid"] for s in _studies(other)}.isdisjoint(s["study_uid"] for s in _studies(truth))
    ds, info = next(iter_demo_datasets(OPTS))
    on_disk = pydicom.dcmread(root / info["path"])
    assert ds.SOPInstanceUID == on_disk.SOPInstanceUID
    assert ds.PixelData == on_disk.PixelData


def test_uids_are_unique_and_valid(demo: tuple[pathlib.Path, dict]) -> None:
    """No two studies, series or instances share a UID; UIDs are ≤ 64 chars of digits/dots."""
    root, truth = demo
    uids = [pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in root.rglob("*.dcm")]
    uids += [s[k] for s in _studies(truth) for k in ("study_uid", "series_uid")]
    assert len(uids) == len(set(uids))
    assert all(len(u) <= 64 and set(u) <= set("0123456789.") for u in uids)


def test_write_truth_is_json_round_trip(demo: tuple[pathlib.Path, dict], tmp_path: pathlib.Path) -> None:
    """The truth file reloads to the same dict and keeps the Chinese name readable."""
    _, truth = demo
    path = tmp_path / "sub" / "truth.json"
    write_truth(path, truth)
    text = path.read_text(encoding="utf-8")
    loaded: Any = json.loads(text)
    assert loaded == truth and "张^三" in text and text.startswith("{\n  ")
