"""Nodule measurements as DICOM SR "Measurement Report" (PS3.16 TID 1500), both ways.

Why SR: it is how the archive stores measurements so that OHIF draws them and other
systems (PACS, research tools, AI pipelines) read them, and it is what OHIF writes
back over STOW when a user saves measurements.

Writing uses highdicom's validated TID 1500 classes; one nodule is one measurement
group carrying:

* Tracking Identifier (DCM 112039) = the nodule label ("N1") and Tracking Unique
  Identifier (DCM 112040) = the nodule's tracking UID, constant across studies, which
  is what lets another system follow one nodule over time (PS3.16 TID 1410/1411);
* Finding (DCM 121071) = Nodule (SCT 27925004, PS3.16 CID 6102/6104) and Finding Site
  (SCT 363698007) = the lobe;
* the region: a closed SCOORD POLYLINE on the image (TID 1410) when an outline is
  given, the long-axis line as the coordinates of the Long Axis (TID 1501 + TID 300
  "INFERRED FROM", the shape OHIF/dcmjs writes) when two endpoints are given, else a
  SCOORD3D POINT at the centre (TID 1411 volume surface);
* measurements in UCUM units (PS3.16 CID 7470 linear, CID 7472 volume), the nodule
  type and calcification as coded evaluations, and the method (see the end of this text).

Reading (`read_nodule_sr`) is deliberately tolerant: it walks the content tree with
pydicom and accepts our SRs, OHIF/dcmjs ones (legacy SRT codes, Enhanced SR) and other
TID 1500 writers that use the same concepts.

Codes and where they were checked (pydicom 3's ``pydicom.sr`` dictionaries are
generated from PS3.16 and list each code's context groups):

=====================  ======================  =========================================
concept                code                    source
=====================  ======================  =========================================
Long Axis              SCT 103339001           PS3.16 CID 7470 (pydicom); dcmjs SRT G-A185
Short Axis             SCT 103340004           PS3.16 CID 7470 (pydicom); dcmjs SRT G-A186
Length                 SCT 410668003           PS3.16 CID 7470 (pydicom); dcmjs SRT G-D7FE
Diameter               SCT 81827009            PS3.16 CID 7470 (pydicom)
Volume                 SCT 118565006           PS3.16 CID 7472 (pydicom)
Mean diameter          RADLEX RID50155         "average diameter": ACR/RSNA OIDM pulmonary
                                               nodule CDE; read by a Siemens AI-Rad
                                               Companion SR parser.
Solid component        RADLEX RID50154         "solid component of part-solid pulmonary
                                               nodule": ACR/RSNA OIDM CDE.
Nodule type concept    NCIt C41144 "Texture"   QIICR lidc2dicom (LIDC-IDRI TID 1500 SRs in
                                               NCI Imaging Data Commons)
solid / part-solid /   RADLEX RID50151 /       same lidc2dicom source; the same RadLex
non-solid (GGN)        RID50152 / RID50153     series as RID50154/RID50155 above
Calcification          DCM 112030              "Calcification Descriptor" (pydicom DCM)
laminated, popcorn     SCT 88446008, 129749001 PS3.16 CID 6132 Chest Calcification Descr.
diffuse, central       SCT 19648000, 26216008  PS3.16 "Diffuse" (CID 6335), "Central"
                                               (CID 6124/211); qualifiers, not patterns
other calcification    SCT 237897009           "Calcified" (PS3.16 CID 3712)
Measurement Method     SCT 370129005           TID 1410 row; value Manual SCT 87982008
                                               (PS3.16 CID 7230 Automation of Measurement)
lobes                  SCT 42400003, 72481006, SNOMED CT lobe structures, as in the HL7
                       266005, 44714003,       Lithuanian lung IG value set (expanded by
                       41224006                tx.fhir.org, SNOMED Int. 2025-02) and the
                                               NZHTS lung lobe value set; PS3.16 CID 6170
                                               uses "Upper/Lower lobe of lung" + Laterality
                                               instead, which the reader also accepts
procedure reported     LN 25045-6              PS3.16 CID 100 "CT unspecified body region"
=====================  ======================  =========================================

The RadLex and NCIt codes are not in PS3.16's dictionary (as shipped with pydicom 3);
they are the ones real lung nodule SRs use, and PS3.16 Table 8-1 registers both schemes.

No DICOM or SNOMED code for "semi-automatic" could be verified, so a semi-automatic
measurement is identified by its algorithm (TID 4019 Algorithm Identification, with the
parameter "semi-automatic") instead of a coded method.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from pydicom.multival import MultiValue
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import RE_VALID_UID, generate_uid

from cloudfilm import __version__
from cloudfilm.domain.nodule import Calcification, Lobe, Measurement, Method, NoduleType

# -- codes ---------------------------------------------------------------------------------

NODULE = Code("27925004", "SCT", "Nodule")
FINDING = Code("121071", "DCM", "Finding")
FINDING_SITE = Code("363698007", "SCT", "Finding Site")
LATERALITY = Code("272741003", "SCT", "Laterality")
TRACKING_IDENTIFIER = Code("112039", "DCM", "Tracking Identifier")
TRACKING_UID = Code("112040", "DCM", "Tracking Unique Identifier")
PERSON_OBSERVER = Code("121008", "DCM", "Person Observer Name")
IMAGING_MEASUREMENTS = Code("126010", "DCM", "Imaging Measurements")
MEASUREMENT_GROUP = Code("125007", "DCM", "Measurement Group")
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")
MANUAL = Code("87982008", "SCT", "Manual")
AUTOMATED = Code("8359006", "SCT", "Automated")
CT_PROCEDURE = Code("25045-6", "LN", "CT unspecified body region")

LONG_AXIS = Code("103339001", "SCT", "Long Axis")
SHORT_AXIS = Code("103340004", "SCT", "Short Axis")
LENGTH = Code("410668003", "SCT", "Length")
DIAMETER = Code("81827009", "SCT", "Diameter")
MEAN = Code("373098007", "SCT", "Mean")
MEAN_DIAMETER = Code("RID50155", "RADLEX", "average diameter")
VOLUME = Code("118565006", "SCT", "Volume")
RADLEX_VOLUME = Code("RID28668", "RADLEX", "volume")  # read only (AI-Rad Companion SRs)
SOLID_COMPONENT = Code("RID50154", "RADLEX", "solid component of part-solid pulmonary nodule")
MM = Code("mm", "UCUM", "millimeter")
MM3 = Code("mm3", "UCUM", "cubic millimeter")

TEXTURE = Code("C41144", "NCIt", "Texture")
SOLIDNESS = Code("RID46010", "RADLEX", "solidness descriptor")  # read only (Philips AIR)
NODULE_TYPES: dict[NoduleType, Code] = {
    NoduleType.SOLID: Code("RID50151", "RADLEX", "solid pulmonary nodule"),
    NoduleType.PART_SOLID: Code("RID50152", "RADLEX", "part-solid pulmonary nodule"),
    NoduleType.GROUND_GLASS: Code("RID50153", "RADLEX", "non-solid pulmonary nodule"),
}
_NODULE_TYPE_SYNONYMS: list[tuple[Code, NoduleType]] = [
    (Code("RID5741", "RADLEX", "solid"), NoduleType.SOLID),
    (Code("RID46011", "RADLEX", "partially solid"), NoduleType.PART_SOLID),
    (Code("RID46016", "RADLEX", "non-solid"), NoduleType.GROUND_GLASS),
    (Code("112120", "DCM", "Ground glass opacity"), NoduleType.GROUND_GLASS),
]

CALCIFICATION = Code("112030", "DCM", "Calcification Descriptor")
CALCIFICATIONS: dict[Calcification, Code] = {
    Calcification.LAMINATED: Code("88446008", "SCT", "Laminated"),
    Calcification.POPCORN: Code("129749001", "SCT", "Coarse (popcorn-like) calcification"),
    Calcification.DIFFUSE: Code("19648000", "SCT", "Diffuse"),
    Calcification.CENTRAL: Code("26216008", "SCT", "Central"),
    Calcification.INDETERMINATE: Code("237897009", "SCT", "Calcified"),
}

LOBES: dict[Lobe, Code] = {
    Lobe.RUL: Code("42400003", "SCT", "Upper lobe of right lung"),
    Lobe.RML: Code("72481006", "SCT", "Middle lobe of right lung"),
    Lobe.RLL: Code("266005", "SCT", "Lower lobe of right lung"),
    Lobe.LUL: Code("44714003", "SCT", "Upper lobe of left lung"),
    Lobe.LLL: Code("41224006", "SCT", "Lower lobe of left lung"),
}
_UPPER_LOBE = Code("45653009", "SCT", "Upper lobe of lung")   # PS3.16 CID 6170
_LOWER_LOBE = Code("90572001", "SCT", "Lower lobe of lung")   # PS3.16 CID 6170
_LINGULA = Code("50837003", "SCT", "Lingula of lung")         # NZHTS lung lobe value set
_RIGHT = Code("24028007", "SCT", "Right")                     # PS3.16 CID 244
_LEFT = Code("7771000", "SCT", "Left")                        # PS3.16 CID 244

CORNERSTONE_FREE_TEXT = "CORNERSTONEFREETEXT"  # dcmjs adapters/Cornerstone3D/CodingScheme.js

_MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "um": 0.001, "m": 1000.0}
_MM3_PER_UNIT = {"mm3": 1.0, "cm3": 1000.0, "ml": 1000.0, "ul": 1.0}

# -- writing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SrNodule:
    """One nodule to write: the measurement, its label and tracking UID, and optionally
    an outline on the measured image as (column, row) points in DICOM image coordinates
    (PS3.3 C.18.6.1.2: (0, 0) is the top left corner of the top left pixel, so the
    centre of pixel index (i, j) is (i + 0.5, j + 0.5)). Three or more points are the
    segmentation contour; exactly two are the long-axis endpoints."""

    measurement: Measurement
    label: str
    tracking_uid: str
    outline: tuple[tuple[float, float], ...] | None = None

    def __post_init__(self) -> None:
        if not self.label.strip():
            raise ValueError("label is required: it is the Tracking Identifier (e.g. 'N1')")
        if not re.fullmatch(RE_VALID_UID, self.tracking_uid):
            raise ValueError(f"tracking_uid {self.tracking_uid!r} is not a valid DICOM UID")
        if self.outline is not None:
            points = tuple((float(p[0]), float(p[1])) for p in self.outline)
            if len(points) < 2:
                raise ValueError(f"outline of {self.label} needs 2 points (long axis) or 3+")
            object.__setattr__(self, "outline", points)


def build_nodule_sr(source_images: Sequence[pydicom.Dataset], nodules: Sequence[SrNodule], *,
                    series_number: int, instance_number: int, author: str,
                    series_instance_uid: str | None = None, sop_instance_uid: str | None = None,
                    algorithm_name: str = "cloudfilm nodule segmentation",
                    algorithm_version: str = __version__,
                    series_description: str = "Nodule measurements",
                    institution_name: str | None = None, final: bool = True) -> pydicom.Dataset:
    """A Comprehensive 3D SR (TID 1500) with one measurement group per nodule.

    ``source_images`` must contain the image each measurement points at (headers are
    enough; pixels are not read); only those are recorded as evidence. All nodules must
    be from one study: the SR joins that study. ``author`` becomes the Person Observer
    Name; ``algorithm_*`` identify the software for semi-automatic measurements.
    ``final`` sets Preliminary Flag FINAL (PS3.3 C.17.2): the reader saved these values;
    the document stays UNVERIFIED, as no verifying observer signs it.
    """
    if not nodules:
        raise ValueError("no nodules to report")
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source_images}
    images = [_image_of(n, by_uid) for n in nodules]
    studies = {str(ds.StudyInstanceUID) for ds in images}
    if len(studies) != 1:
        raise ValueError(f"nodules come from {len(studies)} studies; write one SR per study")
    algorithm = hd.sr.AlgorithmIdentification(name=algorithm_name, version=algorithm_version,
                                              parameters=["semi-automatic"])
    groups = [_group(n, image, algorithm) for n, image in zip(nodules, images, strict=True)]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_person_context=hd.sr.ObserverContext(
                observer_type=codes.cid270.Person,
                observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
                    name=_person_name(author)))),
        procedure_reported=CT_PROCEDURE, imaging_measurements=groups)
    evidence = list({str(ds.SOPInstanceUID): ds for ds in images}.values())
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence, content=report[0],
        series_instance_uid=series_instance_uid or generate_uid(), series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(), instance_number=instance_number,
        manufacturer="cloudfilm", institution_name=institution_name, is_complete=True,
        is_final=final)
    sr.SeriesDescription = series_description
    if "IssuerOfPatientID" in images[0]:  # highdicom copies the Patient ID, not its issuer
        sr.IssuerOfPatientID = images[0].IssuerOfPatientID
    return sr


_Group = (hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
          | hd.sr.MeasurementsAndQualitativeEvaluations
          | hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations)


def _person_name(author: str) -> str:
    """A login such as "demo-physician" as a PN value: a single family-name component
    keeps its trailing caret (PS3.5 6.2.1.2), so nobody reads it as a malformed name."""
    return author if "^" in author else f"{author}^"


def _image_of(nodule: SrNodule, by_uid: Mapping[str, pydicom.Dataset]) -> pydicom.Dataset:
    m = nodule.measurement
    image = by_uid.get(m.instance_uid)
    if image is None:
        raise ValueError(f"nodule {nodule.label} is measured on instance {m.instance_uid}, "
                         f"which is not among the {len(by_uid)} source images given")
    if str(image.SeriesInstanceUID) != m.series_uid or str(image.StudyInstanceUID) != m.study_uid:
        raise ValueError(f"nodule {nodule.label}: instance {m.instance_uid} belongs to another "
                         "study or series than the measurement says")
    return image


def _group(nodule: SrNodule, image: pydicom.Dataset,
           algorithm: hd.sr.AlgorithmIdentification) -> _Group:
    """TID 1410, 1501 or 1411 depending on what locates the nodule (see module doc)."""
    m = nodule.measurement
    frames = [m.frame_number] if m.frame_number is not None else None
    common: dict[str, Any] = {
        "tracking_identifier": hd.sr.TrackingIdentifier(identifier=nodule.label,
                                                        uid=nodule.tracking_uid),
        "finding_type": NODULE,
        "finding_sites": [hd.sr.FindingSite(LOBES[m.lobe])] if m.lobe is not None else None,
        "qualitative_evaluations": _evaluations(m),
        "method": MANUAL if m.method is Method.MANUAL else None,
        "algorithm_id": algorithm if m.method is Method.SEMI_AUTOMATIC else None,
    }
    outline = nodule.outline
    if outline is not None and len(outline) >= 3:
        closed = outline if outline[0] == outline[-1] else (*outline, outline[0])
        region = hd.sr.ImageRegion(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=np.array(closed),
            source_image=hd.sr.SourceImageForRegion.from_source_image(image, frames))
        return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            referenced_region=region, measurements=_measurements(m), **common)
    if outline is not None:
        line = hd.sr.CoordinatesForMeasurement(
            graphic_type=hd.sr.GraphicTypeValues.POLYLINE, graphic_data=np.array(outline),
            source_image=hd.sr.SourceImageForRegion.from_source_image(image, frames))
        return hd.sr.MeasurementsAndQualitativeEvaluations(
            measurements=_measurements(m, long_axis_line=line),
            source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(image, frames)],
            **common)
    surface = hd.sr.VolumeSurface(
        graphic_type=hd.sr.GraphicTypeValues3D.POINT, graphic_data=np.array([m.centre_mm]),
        frame_of_reference_uid=str(image.FrameOfReferenceUID),
        source_images=[hd.sr.SourceImageForSegmentation.from_source_image(image, frames)])
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(
        referenced_volume_surface=surface, measurements=_measurements(m), **common)


def _measurements(m: Measurement, long_axis_line: hd.sr.CoordinatesForMeasurement | None = None
                  ) -> list[hd.sr.Measurement]:
    """Axes and mean diameter in mm (as entered: no guideline rounding), volume in mm³."""
    items = [
        hd.sr.Measurement(name=LONG_AXIS, value=float(m.long_axis_mm), unit=MM,
                          referenced_coordinates=[long_axis_line] if long_axis_line else None),
        hd.sr.Measurement(name=SHORT_AXIS, value=float(m.short_axis_mm), unit=MM),
        hd.sr.Measurement(name=MEAN_DIAMETER, value=float(m.mean_diameter_mm), unit=MM),
    ]
    if m.volume_mm3 is not None:
        items.append(hd.sr.Measurement(name=VOLUME, value=float(m.volume_mm3), unit=MM3))
    if m.solid_component_mm is not None:
        items.append(hd.sr.Measurement(name=SOLID_COMPONENT, value=float(m.solid_component_mm),
                                       unit=MM))
    return items


def _evaluations(m: Measurement) -> list[hd.sr.QualitativeEvaluation]:
    items = [hd.sr.QualitativeEvaluation(TEXTURE, NODULE_TYPES[m.nodule_type])]
    if m.calcification is not Calcification.NONE:
        items.append(hd.sr.QualitativeEvaluation(CALCIFICATION, CALCIFICATIONS[m.calcification]))
    return items


# -- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportedMeasurement:
    """One measurement group read from a TID 1500 SR (ours, OHIF's, or another writer's).

    ``points`` are SCOORD (column, row) image coordinates on the referenced instance, in
    content order (an OHIF Bidirectional gives the long-axis ends, then the short-axis
    ends; a region outline ends where it started). ``points_mm`` holds SCOORD3D points
    (patient LPS, mm, in ``frame_of_reference_uid``) when the writer used those instead.
    OHIF does so for measurements drawn in a volume (MPR) viewport, and then names no
    image: ``instance_uid`` is None; take the study's slice nearest to
    ``centre_in_space_mm``.

    ``label`` is the free-text label a user typed in OHIF (dcmjs stores it as a
    CORNERSTONEFREETEXT code in the Finding or Finding Site), e.g. "N1". OHIF makes a new
    Tracking Unique Identifier on every save: it names the annotation, not the nodule, so
    match OHIF measurements to nodules by label or position, never by that UID.

    A single OHIF "Length" becomes ``long_axis_mm`` with ``short_axis_mm = None``: keep
    it as "long axis only" and ask for the short axis before building a `Measurement`;
    copying the long axis into the short one overstates the mean diameter that
    Fleischner and Lung-RADS use. OHIF measurements carry no method (``method = None``);
    one drawn by a person in OHIF is manual.
    """

    sr_instance_uid: str
    study_uid: str
    series_uid: str | None
    instance_uid: str | None
    frame_number: int | None
    points: tuple[tuple[float, float], ...]
    points_mm: tuple[tuple[float, float, float], ...]
    frame_of_reference_uid: str | None
    long_axis_mm: float | None
    short_axis_mm: float | None
    mean_diameter_mm: float | None
    volume_mm3: float | None
    solid_component_mm: float | None
    nodule_type: NoduleType | None
    calcification: Calcification | None
    lobe: Lobe | None
    method: Method | None
    tracking_identifier: str | None
    tracking_uid: str | None
    label: str | None
    observer: str | None

    @property
    def tool(self) -> str | None:
        """The Cornerstone tool of an OHIF measurement ("Length", "Bidirectional", ...):
        OHIF v3 writes Tracking Identifiers like "Cornerstone3DTools@^0.1.0:Length",
        OHIF v2 "cornerstoneTools@^4.0.0:Length"."""
        ident = self.tracking_identifier or ""
        if not ident.lower().startswith("cornerstone") or ":" not in ident:
            return None
        return ident.rsplit(":", 1)[1]

    @property
    def centre_in_space_mm(self) -> tuple[float, float, float] | None:
        """The mean of the SCOORD3D points, when the SR gave patient coordinates."""
        if not self.points_mm:
            return None
        pts = np.array(_open_polygon(self.points_mm), dtype=float)
        x, y, z = pts.mean(axis=0)
        return (float(x), float(y), float(z))


def read_nodule_sr(sr: pydicom.Dataset) -> list[ImportedMeasurement]:
    """Every measurement group with a size (axis, length, diameter or volume), in order.

    Groups without one (arrows, probes, text) are skipped. Raises ValueError when the
    dataset is not a TID 1500 measurement report at all.
    """
    root = list(sr.get("ContentSequence", []))
    title = _concept(sr)
    if title is None or title.value != "126000" or title.scheme_designator != "DCM":
        raise ValueError("not a TID 1500 Imaging Measurement Report (root concept is not "
                         "DCM 126000)")
    observer = _observer(root)
    locations = _evidence_locations(sr)
    groups = [g for item in root if _is(item, IMAGING_MEASUREMENTS)
              for g in item.get("ContentSequence", []) if _is(g, MEASUREMENT_GROUP)]
    found = (_read_group(g, sr, locations, observer) for g in groups)
    return [m for m in found if m is not None]


def _read_group(group: pydicom.Dataset, sr: pydicom.Dataset,
                locations: Mapping[str, tuple[str, str]], observer: str | None
                ) -> ImportedMeasurement | None:
    facts = _GroupFacts()
    for item in _walk(group.get("ContentSequence", [])):
        facts.add(item)
    if facts.long is None and facts.mean is None and facts.volume is None:
        return None
    if facts.image is None and not facts.points_mm:
        return None  # a size neither on an image nor in space cannot be tied to pixels
    sop, frame = facts.image or (None, None)
    study, series = locations.get(sop or "", (str(sr.StudyInstanceUID), None))
    return ImportedMeasurement(
        sr_instance_uid=str(sr.SOPInstanceUID), study_uid=study, series_uid=series,
        instance_uid=sop, frame_number=frame, points=tuple(facts.points),
        points_mm=tuple(facts.points_mm), frame_of_reference_uid=facts.frame_of_reference_uid,
        long_axis_mm=facts.long, short_axis_mm=facts.short, mean_diameter_mm=facts.mean,
        volume_mm3=facts.volume, solid_component_mm=facts.solid,
        nodule_type=facts.nodule_type, calcification=facts.calcification, lobe=facts.lobe,
        method=facts.method, tracking_identifier=facts.tracking_identifier,
        tracking_uid=facts.tracking_uid, label=facts.label, observer=observer)


class _GroupFacts:
    """What one measurement group says, collected item by item from its content tree."""

    def __init__(self) -> None:
        self.long: float | None = None
        self.short: float | None = None
        self.mean: float | None = None
        self.volume: float | None = None
        self.solid: float | None = None
        self.points: list[tuple[float, float]] = []
        self.points_mm: list[tuple[float, float, float]] = []
        self.frame_of_reference_uid: str | None = None
        self.image: tuple[str, int | None] | None = None
        self.nodule_type: NoduleType | None = None
        self.calcification: Calcification | None = None
        self.lobe: Lobe | None = None
        self.method: Method | None = None
        self.tracking_identifier: str | None = None
        self.tracking_uid: str | None = None
        self.label: str | None = None

    def add(self, item: pydicom.Dataset) -> None:
        kind = str(item.get("ValueType", ""))
        if kind == "NUM":
            self._number(item)
        elif kind == "SCOORD":
            data = [float(v) for v in item.GraphicData]
            self.points.extend(zip(data[0::2], data[1::2], strict=False))
        elif kind == "SCOORD3D":
            data = [float(v) for v in item.GraphicData]
            self.points_mm.extend(zip(data[0::3], data[1::3], data[2::3], strict=False))
            frame_of_reference = item.get("ReferencedFrameOfReferenceUID")
            if frame_of_reference and self.frame_of_reference_uid is None:
                self.frame_of_reference_uid = str(frame_of_reference)
        elif kind == "IMAGE":
            self._image(item)
        elif kind == "CODE":
            self._code(item)
        elif kind == "TEXT" and _is(item, TRACKING_IDENTIFIER):
            self.tracking_identifier = str(item.TextValue)
        elif kind == "TEXT" and _is(item, ALGORITHM_NAME) and self.method is None:
            self.method = Method.SEMI_AUTOMATIC
        elif kind == "UIDREF" and _is(item, TRACKING_UID):
            self.tracking_uid = str(item.UID)

    def _number(self, item: pydicom.Dataset) -> None:
        name = _concept(item)
        values = item.get("MeasuredValueSequence")
        if name is None or not values:
            return
        value = float(values[0].NumericValue)
        unit = _concept(values[0], "MeasurementUnitsCodeSequence")
        unit_code = unit.value.lower() if unit is not None else ""
        if _matches(name, VOLUME, RADLEX_VOLUME):
            if unit_code in _MM3_PER_UNIT:
                self.volume = value * _MM3_PER_UNIT[unit_code]
            return
        if unit_code not in _MM_PER_UNIT:
            return  # e.g. dcmjs "1"/"px" on an uncalibrated image: not a size
        mm = value * _MM_PER_UNIT[unit_code]
        if _matches(name, LONG_AXIS, LENGTH):
            self.long = mm
        elif _matches(name, SHORT_AXIS):
            self.short = mm
        elif _matches(name, MEAN_DIAMETER) or (_matches(name, DIAMETER) and _is_mean(item)):
            self.mean = mm
        elif _matches(name, SOLID_COMPONENT):
            self.solid = mm

    def _image(self, item: pydicom.Dataset) -> None:
        if self.image is not None or not item.get("ReferencedSOPSequence"):
            return
        ref = item.ReferencedSOPSequence[0]
        frames = ref.get("ReferencedFrameNumber")
        frame = None
        if frames is not None and str(frames).strip():
            first = frames[0] if isinstance(frames, MultiValue) else frames
            frame = int(first)
        self.image = (str(ref.ReferencedSOPInstanceUID), frame)

    def _code(self, item: pydicom.Dataset) -> None:
        name, value = _concept(item), _concept(item, "ConceptCodeSequence")
        if name is None or value is None:
            return
        if value.value == CORNERSTONE_FREE_TEXT:
            self.label = self.label or value.meaning or None
        elif _matches(name, FINDING_SITE):
            self.lobe = self.lobe or _lobe(value, item)
        elif _matches(name, TEXTURE, SOLIDNESS, FINDING):
            self.nodule_type = self.nodule_type or _nodule_type(value)
        elif _matches(name, CALCIFICATION):
            self.calcification = next((c for c, code in CALCIFICATIONS.items()
                                       if _matches(value, code)), Calcification.INDETERMINATE)
        elif _matches(name, MEASUREMENT_METHOD):
            if _matches(value, MANUAL):
                self.method = Method.MANUAL
            elif _matches(value, AUTOMATED):
                self.method = Method.SEMI_AUTOMATIC  # software-measured, reader-accepted


def _walk(items: Sequence[pydicom.Dataset]) -> Iterator[pydicom.Dataset]:
    """Depth-first: every content item below a group (measurements nest their
    coordinates and images, regions their source images)."""
    for item in items:
        yield item
        yield from _walk(item.get("ContentSequence", []))


def _concept(item: pydicom.Dataset, keyword: str = "ConceptNameCodeSequence") -> Code | None:
    seq = item.get(keyword)
    if not seq:
        return None
    code = seq[0]
    scheme = str(code.get("CodingSchemeDesignator", ""))
    value = str(code.get("CodeValue", "") or code.get("LongCodeValue", "") or
                code.get("URNCodeValue", ""))
    return Code(value, scheme, str(code.get("CodeMeaning", "")))


def _matches(code: Code, *candidates: Code) -> bool:
    """Same concept: SRT codes map to SCT (pydicom), designators compare case-blind
    (lidc2dicom writes "RadLex", PS3.16 "RADLEX")."""
    norm = Code(code.value, code.scheme_designator.upper(), code.meaning)
    return any(norm == Code(c.value, c.scheme_designator.upper(), c.meaning) for c in candidates)


def _is(item: pydicom.Dataset, code: Code) -> bool:
    name = _concept(item)
    return name is not None and _matches(name, code)


def _is_mean(item: pydicom.Dataset) -> bool:
    """A Diameter NUM with a Derivation (DCM 121401) of Mean (PS3.16 CID 7464)."""
    values = (_concept(child, "ConceptCodeSequence") for child in item.get("ContentSequence", []))
    return any(value is not None and _matches(value, MEAN) for value in values)


def _nodule_type(value: Code) -> NoduleType | None:
    for kind, code in NODULE_TYPES.items():
        if _matches(value, code):
            return kind
    return next((kind for code, kind in _NODULE_TYPE_SYNONYMS if _matches(value, code)), None)


def _lobe(value: Code, site: pydicom.Dataset) -> Lobe | None:
    """A precoordinated lobe code, the lingula, or CID 6170 "upper/lower lobe" + Laterality."""
    for lobe, code in LOBES.items():
        if _matches(value, code):
            return lobe
    if _matches(value, _LINGULA):
        return Lobe.LUL
    side = next((_concept(m, "ConceptCodeSequence") for m in site.get("ContentSequence", [])
                 if _is(m, LATERALITY)), None)
    if side is None:
        return None
    right = _matches(side, _RIGHT)
    if not right and not _matches(side, _LEFT):
        return None
    if _matches(value, _UPPER_LOBE):
        return Lobe.RUL if right else Lobe.LUL
    if _matches(value, _LOWER_LOBE):
        return Lobe.RLL if right else Lobe.LLL
    return None


def _observer(root: Sequence[pydicom.Dataset]) -> str | None:
    """Person Observer Name at the document root; dcmjs's placeholder "unknown^unknown"
    (written when OHIF knows no user) counts as no observer."""
    for item in root:
        if str(item.get("ValueType", "")) == "PNAME" and _is(item, PERSON_OBSERVER):
            name = str(item.PersonName).rstrip("^")
            if name.replace("^", "").replace("unknown", "").strip():
                return name
    return None


def _evidence_locations(sr: pydicom.Dataset) -> dict[str, tuple[str, str]]:
    """SOP Instance UID -> (study, series) from the SR's evidence sequences."""
    found: dict[str, tuple[str, str]] = {}
    for keyword in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for study in sr.get(keyword, []):
            for series in study.get("ReferencedSeriesSequence", []):
                for sop in series.get("ReferencedSOPSequence", []):
                    found[str(sop.ReferencedSOPInstanceUID)] = (
                        str(study.StudyInstanceUID), str(series.SeriesInstanceUID))
    return found


# -- geometry ------------------------------------------------------------------------------

_GEOMETRY_TAGS = ("00200032", "00200037", "00280030", "52009229", "52009230")


def centre_from_points(points_colrow: Sequence[Sequence[float]],
                       image_geometry: pydicom.Dataset | Mapping[str, Any],
                       frame_number: int | None = None) -> tuple[float, float, float]:
    """Patient-coordinate (LPS, mm) centre of image points, for `Measurement.centre_mm`.

    The centre is the mean of the distinct points (a closing point equal to the first is
    dropped), mapped with PS3.3 C.7.6.2.1.1: P = S + Δc·(c − ½)·X + Δr·(r − ½)·Y, where S
    is Image Position (Patient), X and Y the row and column direction cosines of Image
    Orientation (Patient), Δr, Δc = Pixel Spacing, and the ½ because SCOORD image
    coordinates put (0, 0) at the corner of the first pixel, not its centre (PS3.3
    C.18.6.1.2). ``image_geometry`` is the referenced image as a pydicom Dataset or as
    its DICOM JSON metadata (WADO-RS /metadata); enhanced multi-frame images need
    ``frame_number`` (1-based).
    """
    if len(points_colrow) == 0:
        raise ValueError("no points to take the centre of")
    ds = _geometry_dataset(image_geometry)
    origin, row_dir, col_dir, spacing = _plane(ds, frame_number)
    cols_rows = np.array(_open_polygon([(float(p[0]), float(p[1])) for p in points_colrow]))
    c, r = cols_rows.mean(axis=0)
    p = origin + spacing[1] * (c - 0.5) * row_dir + spacing[0] * (r - 0.5) * col_dir
    return (float(p[0]), float(p[1]), float(p[2]))


def _open_polygon(points: Sequence[tuple[float, ...]]) -> list[tuple[float, ...]]:
    pts = list(points)
    if len(pts) > 2 and all(math.isclose(a, b) for a, b in zip(pts[0], pts[-1], strict=True)):
        pts.pop()
    return pts


def _geometry_dataset(image: pydicom.Dataset | Mapping[str, Any]) -> pydicom.Dataset:
    if isinstance(image, pydicom.Dataset):
        return image
    return pydicom.Dataset.from_json({tag: image[tag] for tag in _GEOMETRY_TAGS if tag in image})


def _plane(ds: pydicom.Dataset, frame_number: int | None
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Origin, row and column direction cosines and (row, column) spacing of one plane."""
    position, orientation, spacing = (ds.get("ImagePositionPatient"),
                                      ds.get("ImageOrientationPatient"), ds.get("PixelSpacing"))
    if frame_number is not None and "PerFrameFunctionalGroupsSequence" in ds:
        frame = ds.PerFrameFunctionalGroupsSequence[frame_number - 1]
        shared = ds.get("SharedFunctionalGroupsSequence", [pydicom.Dataset()])[0]
        position = _functional(frame, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _functional(frame, shared, "PlaneOrientationSequence",
                                  "ImageOrientationPatient")
        spacing = _functional(frame, shared, "PixelMeasuresSequence", "PixelSpacing")
    for keyword, value in (("ImagePositionPatient", position),
                           ("ImageOrientationPatient", orientation), ("PixelSpacing", spacing)):
        if value is None:
            hint = (" (an enhanced multi-frame image needs frame_number)"
                    if "PerFrameFunctionalGroupsSequence" in ds and frame_number is None else "")
            raise ValueError(f"the referenced image has no {keyword}: cannot place points in "
                             f"patient coordinates{hint}")
    cosines = np.array([float(v) for v in orientation], dtype=float)
    return (np.array([float(v) for v in position], dtype=float), cosines[:3], cosines[3:],
            np.array([float(v) for v in spacing], dtype=float))


def _functional(frame: pydicom.Dataset, shared: pydicom.Dataset, macro: str, keyword: str
                ) -> Any:
    for group in (frame, shared):
        if macro in group and keyword in group[macro][0]:
            return group[macro][0].get(keyword)
    return None
