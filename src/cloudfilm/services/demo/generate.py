"""Synthetic chest-CT demo data with known ground truth.

Why: the archive needs realistic, shareable data to demonstrate one lifelong case
folder per patient (same person at two hospitals, Chinese names, yearly follow-up)
and to check measurement/registration features against exact answers. Nothing here
is real patient data.

Each patient has 2-3 yearly CT chest studies (CT Image Storage, Explicit VR Little
Endian, int16 stored values with RescaleIntercept -1024). Anatomy is defined once per
patient in a "body frame"; each study places the body at a slightly different table
offset (patient coordinate = body coordinate + ``body_offset_mm``), so a follow-up
comparison needs registration. Nodules are anti-aliased spheres (supersampled partial
volume) whose diameters change between studies exactly as the truth dict says.
Everything is generated slice by slice and is deterministic from ``DemoOptions.seed``.
"""

from __future__ import annotations

import json
import math
import pathlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

GENERATOR = "cloudfilm.services.demo/1"
CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")

AIR_HU, LUNG_HU, FAT_HU, SOFT_HU = -1000.0, -850.0, -100.0, 40.0
BONE_HU, MARROW_HU, CSF_HU, VESSEL_HU = 700.0, 250.0, 10.0, 40.0
NODULE_HU = {"solid": 40.0, "ground-glass": -500.0}
NOISE_SD_HU = 8.0
RESCALE_INTERCEPT = -1024
WINDOW_CENTER, WINDOW_WIDTH = -600, 1500

_REFERENCE_FOV_MM = 358.4     # anatomy below is sized for this field of view
_CLEARANCE_MM = 16.0          # free lung around every nodule (beyond its radius)
_EDGE_MARGIN_MM = 8.0         # nodule surface to first/last slice, in every study
_MAX_SHIFT_MM = (6.0, 6.0, 5.0)
_SUPERSAMPLE = 5              # sub-samples per voxel axis for nodule partial volume


@dataclass(frozen=True)
class DemoOptions:
    """What to generate; defaults give a realistic thin-slice chest CT."""

    patients: int = 3
    slices: int = 120              # per CT series; slice thickness/spacing ~1.25 mm
    rows: int = 512
    columns: int = 512
    pixel_spacing_mm: float = 0.7  # ~358 mm field of view
    seed: int = 20261122
    slice_thickness_mm: float = 1.25  # = spacing between slices (contiguous)


@dataclass(frozen=True)
class _Hospital:
    """A source archive: its own patient-ID namespace, charset and table origin."""

    issuer: str
    name: str
    charset: str
    id_format: str
    accession_prefix: str
    station: str
    table_z_mm: float
    physicians: tuple[str, ...]


HOSPITALS: dict[str, _Hospital] = {
    "HOSP-A": _Hospital("HOSP-A", "Riverside General Hospital", "ISO_IR 192",
                        "RGH{:07d}", "RA", "CT-RGH-1", -162.5,
                        ("Chen^Li", "Moreau^Claire")),
    "HOSP-B": _Hospital("HOSP-B", "St. Mary Lakeside Medical Center", "GB18030",
                        "SM-{:06d}", "MB", "CT-SMLMC-2", -418.0,
                        ("Patel^Arjun", "Okoye^Ngozi")),
}


@dataclass(frozen=True)
class _Template:
    """A hand-written patient: name, visits (year, issuer) and nodule course."""

    name: str
    birth_date: str
    sex: str
    visits: tuple[tuple[int, str], ...]
    nodules: tuple[tuple[str, tuple[float, ...]], ...]


_TEMPLATES: tuple[_Template, ...] = (
    _Template("Zhang^San=张^三", "19580312", "M",
              ((2024, "HOSP-A"), (2025, "HOSP-B"), (2026, "HOSP-A")),
              (("solid", (6.0, 7.2, 8.5)), ("solid", (5.0, 5.0, 5.0)))),
    _Template("Doe^Jane", "19650721", "F",
              ((2024, "HOSP-A"), (2025, "HOSP-A"), (2026, "HOSP-A")),
              (("ground-glass", (9.0, 9.0, 10.0)), ("solid", (5.5, 6.5, 7.7)))),
    _Template("Smith^Robert", "19490102", "M",
              ((2025, "HOSP-B"), (2026, "HOSP-A")),
              (("solid", (7.0, 8.4)),)),
)

_EXTRA_NAMES: tuple[tuple[str, str], ...] = (
    ("Garcia^Maria", "F"), ("Wang^Fang=王^芳", "F"), ("Okafor^Chidi", "M"),
    ("Novak^Petra", "F"), ("Chen^Jie=陈^杰", "M"), ("Rossi^Luca", "M"),
    ("Tanaka^Yuki=田中^由紀", "F"), ("Schmidt^Anna", "F"), ("Liu^Yang=刘^洋", "M"),
    ("Haddad^Omar", "M"), ("Silva^Joana", "F"), ("Nguyen^An", "M"),
)


@dataclass(frozen=True)
class _Nodule:
    """A sphere fixed in the body frame; one diameter per study (0 = absent)."""

    id: str
    kind: str
    center_body: tuple[float, float, float]
    diameters: tuple[float, ...]


@dataclass(frozen=True)
class _Vessel:
    """A straight tube in the lung: x,y at body z=0 plus dx/dz, dy/dz slopes."""

    x: float
    y: float
    tx: float
    ty: float
    radius: float


@dataclass(frozen=True)
class _Study:
    """One CT study with a single axial series, placed by ``offset`` in patient space."""

    index: int
    hospital: _Hospital
    patient_id: str
    date: str
    time: str
    accession: str
    study_id: str
    referring: str
    study_uid: str
    series_uid: str
    frame_uid: str
    offset: tuple[float, float, float]
    path: str


@dataclass(frozen=True)
class _Patient:
    """Everything needed to render and describe one person's studies."""

    index: int
    name: str
    birth_date: str
    sex: str
    studies: tuple[_Study, ...]
    nodules: tuple[_Nodule, ...]
    vessels: tuple[_Vessel, ...]


@dataclass(frozen=True)
class _Anatomy:
    """Body-frame sizes in mm, scaled to the field of view so any matrix looks alike."""

    a: float          # body half width (x)
    b: float          # body half depth (y)
    length: float     # scanned length (z)

    @classmethod
    def of(cls, options: DemoOptions) -> _Anatomy:
        """Derive sizes from the options (anatomy never exceeds the reference FOV)."""
        fov = min(options.rows, options.columns) * options.pixel_spacing_mm
        scale = min(1.0, fov / _REFERENCE_FOV_MM)
        return cls(150.0 * scale, 104.0 * scale, options.slices * options.slice_thickness_mm)


# --------------------------------------------------------------------------- helpers

def _rng(options: DemoOptions, *keys: int) -> np.random.Generator:
    """An independent, order-free random stream for (seed, keys...)."""
    return np.random.default_rng([options.seed % 2**63, *keys])


def _uid(options: DemoOptions, *parts: object) -> str:
    """A UID that depends only on the seed and the object's identity."""
    return str(generate_uid(entropy_srcs=["cloudfilm-demo", str(options.seed), *map(str, parts)]))


def _sop_uid(options: DemoOptions, patient: int, study: int, slice_index: int) -> str:
    """SOP Instance UID of one slice (also used for truth ``instance_uid_at_center``)."""
    return _uid(options, "sop", patient, study, slice_index)


def _first_slice_z(options: DemoOptions, hospital: _Hospital) -> float:
    """Patient z of slice 0: the hospital's table origin minus half the scan length."""
    return hospital.table_z_mm - (options.slices - 1) / 2 * options.slice_thickness_mm


def _grid_origin(options: DemoOptions) -> tuple[float, float]:
    """Patient x,y of the first pixel centre; the FOV is centred on the table axis."""
    ps = options.pixel_spacing_mm
    return -(options.columns - 1) / 2 * ps, -(options.rows - 1) / 2 * ps


# ------------------------------------------------------------------------- anatomy

def _ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float,
             ax: float, ay: float) -> np.ndarray:
    """Normalised squared elliptic radius (<= 1 inside); broadcasts row/column vectors."""
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2


def _lung_mask(an: _Anatomy, x: np.ndarray, y: np.ndarray, z: np.ndarray | float) -> np.ndarray:
    """Both lungs (tapering towards the apex, notched by the heart) in body mm."""
    s = np.sqrt(np.clip(1.0 - ((z + 0.1 * an.length) / (1.1 * an.length)) ** 2, 0.05, 1.0))
    ax, ay = 0.33 * an.a * s, 0.66 * an.b * s
    lungs = (_ellipse(x, y, -0.47 * an.a, 0.0, ax, ay) <= 1.0) | (
        _ellipse(x, y, 0.47 * an.a, 0.0, ax, ay) <= 1.0)
    h = np.sqrt(np.clip(1.0 - ((z + 0.3 * an.length) / (0.45 * an.length)) ** 2, 0.0, 1.0))
    heart = _ellipse(x, y, 0.15 * an.a, -0.2 * an.b,
                     np.maximum(0.3 * an.a * h, 1e-6), np.maximum(0.35 * an.b * h, 1e-6)) <= 1.0
    return lungs & ~heart


def _body_slice(an: _Anatomy, x: np.ndarray, y: np.ndarray, z: float) -> np.ndarray:
    """Air, fat, soft tissue, ribs, sternum and spine of one axial slice (float32 HU)."""
    q = _ellipse(x, y, 0.0, 0.0, an.a, an.b)
    hu = np.full(q.shape, AIR_HU, dtype=np.float32)
    hu[q <= 1.0] = FAT_HU
    hu[q <= 0.94**2] = SOFT_HU
    angle_shift = 45.0 * (y / an.b)                     # ribs run obliquely
    rib_phase = np.mod(z + angle_shift, 28.0) < 9.0
    ribs = (q >= 0.86**2) & (q <= 0.91**2) & rib_phase & ((np.abs(x) > 0.25 * an.a) | (y > 0))
    hu[ribs] = BONE_HU
    hu[_ellipse(x, y, 0.0, -0.85 * an.b, 0.1 * an.a, 0.04 * an.b) <= 1.0] = 400.0  # sternum
    _draw_spine(hu, an, x, y)
    return hu


def _draw_spine(hu: np.ndarray, an: _Anatomy, x: np.ndarray, y: np.ndarray) -> None:
    """Vertebral body (cortex + marrow), posterior arch and spinal canal (in a window)."""
    r_body, cy = 0.1 * an.a, 0.62 * an.b
    canal_cy, r_arch = cy + r_body + 0.05 * an.a, 0.075 * an.a
    rows, cols = _window(y, cy - r_body - 1, canal_cy + r_arch + 1), _window(x, 0.0, r_body + 1)
    view, x, y = hu[rows, cols], x[:, cols], y[rows, :]
    d_body = np.sqrt(_ellipse(x, y, 0.0, cy, 1.0, 1.0))
    view[d_body <= r_body] = BONE_HU
    view[d_body <= r_body - 2.0] = MARROW_HU
    d_canal = np.sqrt(_ellipse(x, y, 0.0, canal_cy, 1.0, 1.0))
    view[d_canal <= r_arch] = 600.0
    view[d_canal <= 0.045 * an.a] = CSF_HU


def _draw_vessels(hu: np.ndarray, lung: np.ndarray, vessels: Sequence[_Vessel],
                  x: np.ndarray, y: np.ndarray, z: float, ps: float) -> None:
    """Anti-aliased tubes, only inside the lungs, each drawn in a small window."""
    for v in vessels:
        cx, cy = v.x + v.tx * z, v.y + v.ty * z
        cols = _window(x, cx, v.radius + 2 * ps)
        rows = _window(y, cy, v.radius + 2 * ps)
        if cols.stop <= cols.start or rows.stop <= rows.start:
            continue
        px, py = x[0, cols] - v.x, y[rows, 0:1] - v.y
        norm = math.sqrt(v.tx**2 + v.ty**2 + 1.0)
        along = (px * v.tx + py * v.ty + z) / norm
        dist = np.sqrt(np.maximum(px**2 + py**2 + z**2 - along**2, 0.0))
        f = np.clip(0.5 - (dist - v.radius) / ps, 0.0, 1.0) * lung[rows, cols]
        hu[rows, cols] += (VESSEL_HU - hu[rows, cols]) * f


def _window(axis: np.ndarray, center: float, half: float) -> slice:
    """Index range of a sorted coordinate vector within ``center ± half``."""
    flat = axis.ravel()
    return slice(int(np.searchsorted(flat, center - half)), int(np.searchsorted(flat, center + half)))


def _draw_nodules(hu: np.ndarray, nodules: Sequence[_Nodule], study: int,
                  x: np.ndarray, y: np.ndarray, z: float, ps: float, t: float) -> None:
    """Blend each sphere by its supersampled voxel coverage (partial volume)."""
    sub = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - 0.5
    for n in nodules:
        r = n.diameters[study] / 2
        cx, cy, cz = n.center_body
        if r <= 0 or abs(cz - z) > r + t / 2:
            continue
        cols, rows = _window(x, cx, r + ps), _window(y, cy, r + ps)
        dx2 = ((x[0, cols, None] + sub * ps - cx) ** 2).ravel()
        dy2 = ((y[rows, 0, None] + sub * ps - cy) ** 2).ravel()
        dz2 = (z + sub * t - cz) ** 2
        inside = (dz2[:, None, None] + dy2[None, :, None] + dx2[None, None, :]) <= r * r
        n_r, n_c = rows.stop - rows.start, cols.stop - cols.start
        k = _SUPERSAMPLE
        f = inside.reshape(k, n_r, k, n_c, k).mean(axis=(0, 2, 4), dtype=np.float32)
        hu[rows, cols] += (NODULE_HU[n.kind] - hu[rows, cols]) * f


def _render_slice(options: DemoOptions, patient: _Patient, study: _Study, k: int) -> np.ndarray:
    """Stored int16 pixels of slice ``k``: anatomy, vessels, nodules, then noise."""
    an, ps, t = _Anatomy.of(options), options.pixel_spacing_mm, options.slice_thickness_mm
    x0, y0 = _grid_origin(options)
    ox, oy, oz = study.offset
    x = (x0 + ps * np.arange(options.columns, dtype=np.float32) - ox)[None, :]
    y = (y0 + ps * np.arange(options.rows, dtype=np.float32) - oy)[:, None]
    z = _first_slice_z(options, study.hospital) + k * t - oz
    hu = _body_slice(an, x, y, z)
    lung = _lung_mask(an, x, y, z)
    hu[lung] = LUNG_HU
    _draw_vessels(hu, lung, patient.vessels, x, y, z, ps)
    _draw_nodules(hu, patient.nodules, study.index, x, y, z, ps, t)
    noise = _rng(options, 2, patient.index, study.index, k).standard_normal(hu.shape, np.float32)
    hu += noise * NOISE_SD_HU
    return np.asarray(np.rint(hu - RESCALE_INTERCEPT).astype("<i2"))


# ------------------------------------------------------------------------ planning

def _fibonacci_sphere(n: int = 96) -> np.ndarray:
    """Roughly uniform unit directions, for clearance checks."""
    i = np.arange(n) + 0.5
    phi, theta = np.arccos(1 - 2 * i / n), math.pi * (1 + 5**0.5) * i
    return np.stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)], 1)


def _has_clearance(an: _Anatomy, center: np.ndarray, radius: float) -> bool:
    """True if a ball of ``radius`` around ``center`` lies entirely in lung."""
    pts = np.concatenate([center + f * radius * _fibonacci_sphere() for f in (0.5, 1.0)])
    return bool(_lung_mask(an, pts[:, 0], pts[:, 1], pts[:, 2]).all())


def _place_nodules(options: DemoOptions, rng: np.random.Generator,
                   specs: Sequence[tuple[str, tuple[float, ...]]]) -> tuple[_Nodule, ...]:
    """Rejection-sample centres deep in the lungs, well apart and inside the scan."""
    an = _Anatomy.of(options)
    placed: list[_Nodule] = []
    for i, (kind, diameters) in enumerate(specs):
        r = max(diameters) / 2
        z_lim = an.length / 2 - options.slice_thickness_mm - _MAX_SHIFT_MM[2] - r - _EDGE_MARGIN_MM
        if z_lim <= 0:
            raise ValueError(f"demo scan too short for a {2 * r:g} mm nodule: add slices")
        for _ in range(2000):
            side = 1.0 if (i + rng.integers(2)) % 2 else -1.0
            c = np.array([side * 0.47 * an.a + rng.uniform(-0.2, 0.2) * an.a,
                          rng.uniform(-0.5, 0.5) * an.b, rng.uniform(-z_lim, z_lim)])
            apart = all(np.linalg.norm(c - n.center_body) > r + max(n.diameters) / 2
                        + 2 * _CLEARANCE_MM for n in placed)
            if apart and _has_clearance(an, c, r + _CLEARANCE_MM):
                centre = (round(float(c[0]), 2), round(float(c[1]), 2), round(float(c[2]), 2))
                placed.append(_Nodule(f"n{i + 1}", kind, centre,
                                      tuple(float(d) for d in diameters)))
                break
        else:
            raise ValueError("cannot place demo nodules: field of view or scan too small")
    return tuple(placed)


def _place_vessels(options: DemoOptions, rng: np.random.Generator,
                   nodules: Sequence[_Nodule], count: int = 10) -> tuple[_Vessel, ...]:
    """Random lung tubes that keep ``_CLEARANCE_MM`` away from every nodule."""
    an = _Anatomy.of(options)
    vessels: list[_Vessel] = []
    for _ in range(count * 50):
        if len(vessels) == count:
            break
        side = 1.0 if len(vessels) % 2 else -1.0
        v = _Vessel(float(side * 0.47 * an.a + rng.uniform(-0.22, 0.22) * an.a),
                    float(rng.uniform(-0.5, 0.5) * an.b), float(rng.uniform(-0.3, 0.3)),
                    float(rng.uniform(-0.3, 0.3)), float(rng.uniform(0.8, 2.0)))
        if all(_line_distance(v, n.center_body) > max(n.diameters) / 2 + v.radius
               + _CLEARANCE_MM for n in nodules):
            vessels.append(v)
    return tuple(vessels)


def _line_distance(v: _Vessel, point: Sequence[float]) -> float:
    """Distance from a body-frame point to the vessel's axis."""
    u = np.array([v.tx, v.ty, 1.0]) / math.sqrt(v.tx**2 + v.ty**2 + 1.0)
    d = np.asarray(point, dtype=float) - np.array([v.x, v.y, 0.0])
    return float(np.linalg.norm(d - d.dot(u) * u))


def _template(p: int, rng: np.random.Generator) -> _Template:
    """Hand-written patients first, then reproducible random ones."""
    if p < len(_TEMPLATES):
        return _TEMPLATES[p]
    name, sex = _EXTRA_NAMES[(p - len(_TEMPLATES)) % len(_EXTRA_NAMES)]
    cycle = (p - len(_TEMPLATES)) // len(_EXTRA_NAMES)
    if cycle:
        alpha, _, ideo = name.partition("=")
        name = f"{alpha}^{chr(ord('A') + (cycle - 1) % 26)}" + (f"={ideo}" if ideo else "")
    n_visits = int(rng.integers(2, 4))
    visits = tuple((2027 - n_visits + i, str(rng.choice(sorted(HOSPITALS))))
                   for i in range(n_visits))
    nodules = []
    for _ in range(int(rng.integers(1, 3))):
        kind = "ground-glass" if rng.random() < 0.25 else "solid"
        d0 = rng.uniform(8.0, 11.0) if kind == "ground-glass" else rng.uniform(5.0, 8.0)
        growth = 1.0 if rng.random() < 0.4 else rng.uniform(1.1, 1.25)
        nodules.append((kind, tuple(round(d0 * growth**i, 1) for i in range(n_visits))))
    birth = f"{rng.integers(1940, 1976)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
    return _Template(name, birth, sex, visits, tuple(nodules))


def _plan_studies(options: DemoOptions, p: int, tpl: _Template,
                  rng: np.random.Generator) -> tuple[_Study, ...]:
    """Dates, identifiers, UIDs and table offsets for each yearly visit."""
    month, studies = int(rng.integers(1, 13)), []
    ids = {h: HOSPITALS[h].id_format.format(int(rng.integers(10, 99)) * 10000 + p)
           for h in sorted(HOSPITALS)}
    for s, (year, issuer) in enumerate(tpl.visits):
        hosp = HOSPITALS[issuer]
        date = f"{year}{month:02d}{int(rng.integers(1, 29)):02d}"
        hh, mm, ss = int(rng.integers(8, 18)), int(rng.integers(0, 60)), int(rng.integers(0, 60))
        dx, dy, dz = (round(float(rng.uniform(-m, m)), 2) for m in _MAX_SHIFT_MM)
        studies.append(_Study(
            s, hosp, ids[issuer], date, f"{hh:02d}{mm:02d}{ss:02d}",
            accession=f"{hosp.accession_prefix}{year % 100:02d}{p + 1:05d}{s + 1}",
            study_id=str(1000 + 10 * p + s),
            referring=hosp.physicians[(p + s) % len(hosp.physicians)],
            study_uid=_uid(options, "study", p, s), series_uid=_uid(options, "series", p, s),
            frame_uid=_uid(options, "frame", p, s),
            offset=(dx, dy, round(hosp.table_z_mm + dz, 2)),
            path=f"P{p + 1:03d}/{date}_{issuer}/S002"))
    return tuple(studies)


def _plan_patient(options: DemoOptions, p: int) -> _Patient:
    """The complete, reproducible description of patient ``p``."""
    rng = _rng(options, 1, p)
    tpl = _template(p, rng)
    studies = _plan_studies(options, p, tpl, rng)
    nodules = _place_nodules(options, rng, tpl.nodules)
    vessels = _place_vessels(options, rng, nodules)
    return _Patient(p, tpl.name, tpl.birth_date, tpl.sex, studies, nodules, vessels)


def _plan(options: DemoOptions) -> list[_Patient]:
    """Plan every patient (cheap: no pixels)."""
    if options.patients < 1 or options.slices < 1:
        raise ValueError("patients and slices must be >= 1")
    return [_plan_patient(options, p) for p in range(options.patients)]


# ----------------------------------------------------------------------- datasets

def _age(birth: str, date: str) -> str:
    """DICOM AS value (e.g. ``066Y``) at the study date."""
    years = int(date[:4]) - int(birth[:4]) - (date[4:] < birth[4:])
    return f"{years:03d}Y"


def _series_header(options: DemoOptions, patient: _Patient, study: _Study) -> list[tuple[str, object]]:
    """Attributes shared by every slice of a series, in keyword/value form."""
    h, t = study.hospital, options.slice_thickness_mm
    return [
        ("SpecificCharacterSet", h.charset), ("ImageType", ["ORIGINAL", "PRIMARY", "AXIAL"]),
        ("SOPClassUID", CT_IMAGE_STORAGE), ("StudyDate", study.date), ("SeriesDate", study.date),
        ("AcquisitionDate", study.date), ("ContentDate", study.date), ("StudyTime", study.time),
        ("SeriesTime", study.time), ("AcquisitionTime", study.time), ("ContentTime", study.time),
        ("AccessionNumber", study.accession), ("Modality", "CT"), ("Manufacturer", "cloudfilm"),
        ("InstitutionName", h.name), ("ReferringPhysicianName", study.referring),
        ("StationName", h.station), ("StudyDescription", "CT CHEST"),
        ("SeriesDescription", f"CHEST AXIAL {t:g}mm LUNG"),
        ("ManufacturerModelName", "Synthetic Demo CT"),
        ("PatientName", patient.name), ("PatientID", study.patient_id),
        ("IssuerOfPatientID", h.issuer), ("PatientBirthDate", patient.birth_date),
        ("PatientSex", patient.sex), ("PatientAge", _age(patient.birth_date, study.date)),
        ("PatientComments", "Synthetic demo data (cloudfilm); not a real person."),
        ("BodyPartExamined", "CHEST"), ("SliceThickness", t), ("KVP", "120"),
        ("SoftwareVersions", GENERATOR), ("ConvolutionKernel", "LUNG"), ("PatientPosition", "HFS"),
        ("StudyInstanceUID", study.study_uid), ("SeriesInstanceUID", study.series_uid),
        ("StudyID", study.study_id), ("SeriesNumber", 2), ("AcquisitionNumber", 1),
        ("ImageOrientationPatient", ["1", "0", "0", "0", "1", "0"]), ("FrameOfReferenceUID", study.frame_uid),
        ("PositionReferenceIndicator", ""), ("SamplesPerPixel", 1),
        ("PhotometricInterpretation", "MONOCHROME2"), ("Rows", options.rows),
        ("Columns", options.columns),
        ("PixelSpacing", [options.pixel_spacing_mm, options.pixel_spacing_mm]),
        ("BitsAllocated", 16), ("BitsStored", 16), ("HighBit", 15), ("PixelRepresentation", 1),
        ("WindowCenter", str(WINDOW_CENTER)), ("WindowWidth", str(WINDOW_WIDTH)),
        ("WindowCenterWidthExplanation", "LUNG"), ("RescaleIntercept", str(RESCALE_INTERCEPT)),
        ("RescaleSlope", "1"), ("RescaleType", "HU"),
    ]


def _slice_dataset(options: DemoOptions, patient: _Patient, study: _Study,
                   header: list[tuple[str, object]], k: int) -> pydicom.Dataset:
    """A complete Part-10-ready dataset for slice ``k`` (fresh elements, safe to keep)."""
    ds = pydicom.Dataset()
    for keyword, value in header:
        setattr(ds, keyword, value)
    x0, y0 = _grid_origin(options)
    z = round(_first_slice_z(options, study.hospital) + k * options.slice_thickness_mm, 4)
    ds.SOPInstanceUID = _sop_uid(options, patient.index, study.index, k)
    ds.InstanceNumber = k + 1
    ds.ImagePositionPatient = [round(x0, 4), round(y0, 4), z]
    ds.SliceLocation = z
    ds.PixelData = _render_slice(options, patient, study, k).tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def _iter_patient(options: DemoOptions, patient: _Patient) -> Iterator[tuple[pydicom.Dataset, dict[str, Any]]]:
    """All slices of all studies of one planned patient."""
    for study in patient.studies:
        header = _series_header(options, patient, study)
        for k in range(options.slices):
            info = {"path": f"{study.path}/{k + 1:04d}.dcm", "patient_index": patient.index,
                    "study_index": study.index, "slice_index": k}
            yield _slice_dataset(options, patient, study, header, k), info


# -------------------------------------------------------------------------- truth

def _nodule_truth(options: DemoOptions, patient: _Patient, study: _Study, n: _Nodule) -> dict[str, Any]:
    """Where nodule ``n`` is in this study, in mm and in voxel indices."""
    x0, y0 = _grid_origin(options)
    ps, t = options.pixel_spacing_mm, options.slice_thickness_mm
    c = [n.center_body[i] + study.offset[i] for i in range(3)]
    voxel = [(c[0] - x0) / ps, (c[1] - y0) / ps, (c[2] - _first_slice_z(options, study.hospital)) / t]
    k = min(max(int(round(voxel[2])), 0), options.slices - 1)
    return {"id": n.id, "center_patient_mm": [round(v, 3) for v in c],
            "diameter_mm": n.diameters[study.index], "type": n.kind,
            "center_voxel": [round(v, 3) for v in voxel],
            "instance_uid_at_center": _sop_uid(options, patient.index, study.index, k)}


def _study_truth(options: DemoOptions, patient: _Patient, study: _Study) -> dict[str, Any]:
    """Identifiers, geometry and nodules of one study."""
    return {"study_uid": study.study_uid, "series_uid": study.series_uid,
            "frame_of_reference_uid": study.frame_uid, "study_date": study.date,
            "hospital": study.hospital.name, "patient_id": study.patient_id,
            "issuer": study.hospital.issuer, "accession_number": study.accession,
            "path": study.path, "slices": options.slices,
            "slice_thickness_mm": options.slice_thickness_mm,
            "pixel_spacing_mm": options.pixel_spacing_mm,
            "body_offset_mm": list(study.offset),
            "nodules": [_nodule_truth(options, patient, study, n)
                        for n in patient.nodules if n.diameters[study.index] > 0]}


def _patient_truth(options: DemoOptions, patient: _Patient) -> dict[str, Any]:
    """One person: demographics, per-hospital records and studies."""
    records = {(s.patient_id, s.hospital.issuer) for s in patient.studies}
    return {"patient_name": patient.name, "birth_date": patient.birth_date, "sex": patient.sex,
            "records": [{"patient_id": pid, "issuer": iss} for pid, iss in sorted(records)],
            "studies": [_study_truth(options, patient, s) for s in patient.studies]}


def _truth(options: DemoOptions, patients: Sequence[_Patient]) -> dict[str, Any]:
    """The JSON-serialisable ground truth for a planned data set."""
    return {"generator": GENERATOR, "options": asdict(options),
            "patients": [_patient_truth(options, p) for p in patients]}


# --------------------------------------------------------------------- public API

def demo_truth(options: DemoOptions = DemoOptions()) -> dict[str, Any]:
    """Ground truth without rendering pixels (same dict ``generate_demo`` returns)."""
    return _truth(options, _plan(options))


def iter_demo_datasets(options: DemoOptions = DemoOptions()) -> Iterator[tuple[pydicom.Dataset, dict[str, Any]]]:
    """Yield ``(dataset, info)`` slice by slice; ``info['path']`` is the relative file path.

    Why: lets callers stream straight into an archive without touching disk.
    """
    for patient in _plan(options):
        yield from _iter_patient(options, patient)


def generate_demo(out_dir: pathlib.Path, options: DemoOptions = DemoOptions()) -> dict[str, Any]:
    """Write Part-10 files under out_dir/<patient>/<study>/<series>/<n>.dcm and return the truth dict."""
    out_dir = pathlib.Path(out_dir)
    patients = _plan(options)
    for patient in patients:
        for ds, info in _iter_patient(options, patient):
            path = out_dir / info["path"]
            path.parent.mkdir(parents=True, exist_ok=True)
            ds.save_as(path, enforce_file_format=True)
    return _truth(options, patients)


def write_truth(path: pathlib.Path, truth: dict[str, Any]) -> None:
    """Write the truth dict as indented UTF-8 JSON (Chinese names kept readable)."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
