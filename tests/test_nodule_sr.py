"""Nodule measurements as DICOM SR TID 1500: written with highdicom, stored over STOW-RS,
read back through WADO-RS, and OHIF/dcmjs measurement reports imported.

Images are real synthetic chest CT slices from the demo generator, whose truth file says
where each nodule is, so outlines and centres can be checked against known geometry.
"""

from __future__ import annotations

import io
import subprocess
from datetime import date
from pathlib import Path
from typing import Any

import highdicom as hd
import httpx
import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cloudfilm.domain.nodule import Calcification, Lobe, Measurement, Method, NoduleType
from cloudfilm.services.demo.generate import DemoOptions, demo_truth, iter_demo_datasets
from cloudfilm.services.nodules.sr import (
    ImportedMeasurement,
    SrNodule,
    build_nodule_sr,
    centre_from_points,
    read_nodule_sr,
)
from factory import parse_multipart, stow, to_bytes

OPTIONS = DemoOptions(patients=1, slices=40)
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
ENHANCED_SR = "1.2.840.10008.5.1.4.1.1.88.22"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


# -- fixtures ------------------------------------------------------------------------------

class Demo:
    """The first demo study: its truth and the CT slices through its two nodules."""

    def __init__(self) -> None:
        self.study = demo_truth(OPTIONS)["patients"][0]["studies"][0]
        self.truth = self.study["nodules"][:2]
        wanted = {n["instance_uid_at_center"] for n in self.truth}
        self.slices: dict[str, pydicom.Dataset] = {}
        for ds, _ in iter_demo_datasets(OPTIONS):
            if ds.StudyInstanceUID != self.study["study_uid"]:
                break
            if ds.SOPInstanceUID in wanted:
                self.slices[ds.SOPInstanceUID] = ds
        assert len(self.slices) == 2

    def measurement(self, i: int, **kw: Any) -> Measurement:
        n = self.truth[i]
        d = float(n["diameter_mm"])
        fields: dict[str, Any] = {
            "study_uid": self.study["study_uid"], "series_uid": self.study["series_uid"],
            "instance_uid": n["instance_uid_at_center"],
            "centre_mm": tuple(n["center_patient_mm"]), "long_axis_mm": d,
            "short_axis_mm": round(d - 0.6, 1), "nodule_type": NoduleType.SOLID,
            "study_date": date(2024, 9, 8), "measured_by": "dr-a",
        }
        return Measurement(**(fields | kw))

    def circle(self, i: int, points: int = 24) -> list[tuple[float, float]]:
        """The nodule's outline on its centre slice, in SCOORD image coordinates."""
        n = self.truth[i]
        col, row = n["center_voxel"][0] + 0.5, n["center_voxel"][1] + 0.5
        radius = n["diameter_mm"] / 2 / OPTIONS.pixel_spacing_mm
        return [(col + radius * np.cos(a), row + radius * np.sin(a))
                for a in np.linspace(0, 2 * np.pi, points, endpoint=False)]

    def long_axis(self, i: int) -> list[tuple[float, float]]:
        return [self.circle(i)[0], self.circle(i)[12]]


@pytest.fixture(scope="module")
def demo() -> Demo:
    return Demo()


def two_nodules(demo: Demo) -> list[SrNodule]:
    """N1: semi-automatic part-solid with contour and volume; N2: manual, long-axis line."""
    n1 = demo.measurement(0, nodule_type=NoduleType.PART_SOLID, solid_component_mm=2.4,
                          method=Method.SEMI_AUTOMATIC, volume_mm3=101.7, lobe=Lobe.RUL)
    n2 = demo.measurement(1, method=Method.MANUAL, calcification=Calcification.POPCORN,
                          lobe=Lobe.LLL)
    return [SrNodule(n1, "N1", "2.25.1001", demo.circle(0)),
            SrNodule(n2, "N2", "2.25.1002", demo.long_axis(1))]


def sr_of(demo: Demo, nodules: list[SrNodule] | None = None) -> pydicom.Dataset:
    return build_nodule_sr(list(demo.slices.values()), nodules or two_nodules(demo),
                           series_number=901, instance_number=1, author="Doe^Jane")


def round_trip(ds: pydicom.Dataset) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(to_bytes(ds)))


def assert_same_numbers(got: ImportedMeasurement, nodule: SrNodule) -> None:
    m = nodule.measurement
    assert got.tracking_identifier == nodule.label and got.tracking_uid == nodule.tracking_uid
    assert (got.study_uid, got.series_uid, got.instance_uid) == (
        m.study_uid, m.series_uid, m.instance_uid)
    assert got.long_axis_mm == pytest.approx(m.long_axis_mm)
    assert got.short_axis_mm == pytest.approx(m.short_axis_mm)
    assert got.mean_diameter_mm == pytest.approx(float(m.mean_diameter_mm))
    assert got.volume_mm3 == (pytest.approx(m.volume_mm3) if m.volume_mm3 else None)
    assert got.solid_component_mm == (pytest.approx(m.solid_component_mm)
                                      if m.solid_component_mm else None)
    assert (got.nodule_type, got.lobe, got.method) == (m.nodule_type, m.lobe, m.method)
    expected_calcification = None if m.calcification is Calcification.NONE else m.calcification
    assert got.calcification == expected_calcification
    assert got.observer == "Doe^Jane"


# -- writing -------------------------------------------------------------------------------

def test_sr_for_two_nodules_is_a_valid_comprehensive_3d_sr_in_the_ct_study(demo: Demo) -> None:
    sr = round_trip(sr_of(demo))
    ct = next(iter(demo.slices.values()))
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR and sr.Modality == "SR"
    assert sr.StudyInstanceUID == ct.StudyInstanceUID
    assert (sr.PatientID, sr.PatientName, sr.IssuerOfPatientID) == (
        ct.PatientID, ct.PatientName, ct.IssuerOfPatientID)
    assert sr.ConceptNameCodeSequence[0].CodeValue == "126000"  # what OHIF checks for TID 1500
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = {s.ReferencedSOPInstanceUID
                for st in sr.CurrentRequestedProcedureEvidenceSequence
                for se in st.ReferencedSeriesSequence for s in se.ReferencedSOPSequence}
    assert evidence == set(demo.slices)


def test_highdicom_parses_our_sr_back_into_its_tid_1500_templates(demo: Demo) -> None:
    sr = hd.sr.Comprehensive3DSR.from_dataset(round_trip(sr_of(demo)))
    [planar] = sr.content.get_planar_roi_measurement_groups()
    [line] = sr.content.get_image_measurement_groups()
    assert planar.tracking_uid == "2.25.1001" and line.tracking_uid == "2.25.1002"
    assert planar.roi is not None and planar.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    names = {m.name.value: m.value for m in planar.get_measurements()}
    assert names["103339001"] == pytest.approx(6.0) and names["118565006"] == pytest.approx(101.7)
    assert planar.finding_type == codes.SCT.Nodule
    [site] = planar.finding_sites
    assert site.value.value == "42400003"


def test_dcmtk_reads_the_sr_without_content_errors(demo: Demo, tmp_path: Path) -> None:
    path = tmp_path / "nodules.dcm"
    path.write_bytes(to_bytes(sr_of(demo)))
    out = subprocess.run(["dsrdump", "-q", str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert 'Tracking Unique Identifier")="2.25.1001"' in out.stdout
    assert '"Finding")=(27925004,SCT,"Nodule")' in out.stdout
    assert '"Texture")=(RID50152,RADLEX,"part-solid pulmonary nodule")' in out.stdout


def test_outline_long_axis_and_centre_point_are_the_three_ways_to_locate_a_nodule(
        demo: Demo) -> None:
    nodules = two_nodules(demo)
    point_only = SrNodule(demo.measurement(0, method=Method.MANUAL), "N3", "2.25.1003")
    sr = round_trip(sr_of(demo, [*nodules, point_only]))
    contour, line, point = read_nodule_sr(sr)
    assert len(contour.points) == 25 and contour.points[0] == contour.points[-1]  # closed
    assert np.allclose(contour.points[:24], demo.circle(0), atol=1e-4)  # FL precision
    assert np.allclose(line.points, demo.long_axis(1), atol=1e-4)
    assert point.points == () and point.centre_in_space_mm == pytest.approx(
        demo.truth[0]["center_patient_mm"])


def test_every_nodule_needs_its_image_and_one_study(demo: Demo) -> None:
    [n1, n2] = two_nodules(demo)
    with pytest.raises(ValueError, match="N2 is measured on instance"):
        build_nodule_sr([demo.slices[n1.measurement.instance_uid]], [n1, n2], series_number=1,
                        instance_number=1, author="x")
    with pytest.raises(ValueError, match="tracking_uid"):
        SrNodule(n1.measurement, "N1", "not-a-uid")
    with pytest.raises(ValueError, match="2 points"):
        SrNodule(n1.measurement, "N1", "2.25.1", [(1.0, 2.0)])


# -- reading our own ------------------------------------------------------------------------

def test_read_nodule_sr_gives_back_what_was_written(demo: Demo) -> None:
    nodules = two_nodules(demo)
    found = read_nodule_sr(round_trip(sr_of(demo, nodules)))
    assert len(found) == 2
    for got, nodule in zip(found, nodules, strict=True):
        assert_same_numbers(got, nodule)


def test_reading_a_ct_image_is_refused(demo: Demo) -> None:
    with pytest.raises(ValueError, match="TID 1500"):
        read_nodule_sr(next(iter(demo.slices.values())))


# -- through the archive --------------------------------------------------------------------

def test_sr_stored_by_stow_reads_back_through_wado_rs(client: httpx.Client, demo: Demo) -> None:
    nodules = two_nodules(demo)
    sr = sr_of(demo, nodules)
    response = stow(client, [to_bytes(ds) for ds in demo.slices.values()] + [to_bytes(sr)])
    assert response.status_code == 200, response.text
    base = f"/studies/{sr.StudyInstanceUID}/series/{sr.SeriesInstanceUID}"

    listed = client.get(f"/studies/{sr.StudyInstanceUID}/series",
                        params={"includefield": "0008103E"}).json()
    [sr_series] = [s for s in listed if s["0020000E"]["Value"] == [sr.SeriesInstanceUID]]
    assert sr_series["00080060"]["Value"] == ["SR"]

    meta = client.get(f"{base}/instances/{sr.SOPInstanceUID}/metadata",
                      headers={"accept": "application/dicom+json"})
    assert meta.status_code == 200
    [doc] = meta.json()
    assert doc["00080016"]["Value"] == [COMPREHENSIVE_3D_SR]
    assert doc["0040A043"]["Value"][0]["00080100"]["Value"] == ["126000"]
    groups = [g for item in doc["0040A730"]["Value"] if _code_of(item) == "126010"
              for g in item["0040A730"]["Value"]]
    assert [_text(g, "112039") for g in groups] == ["N1", "N2"]
    assert [_uid(g) for g in groups] == ["2.25.1001", "2.25.1002"]
    assert _num(groups[0], "103339001") == pytest.approx(6.0)
    assert _num(groups[0], "118565006") == pytest.approx(101.7)
    assert _value_code(groups[1], "363698007") == "41224006"

    from_metadata = read_nodule_sr(pydicom.Dataset.from_json(doc))
    retrieved = client.get(f"{base}/instances/{sr.SOPInstanceUID}",
                           headers={"accept": 'multipart/related; type="application/dicom"'})
    [(_, part)] = parse_multipart(retrieved)
    from_instance = read_nodule_sr(pydicom.dcmread(io.BytesIO(part)))
    for found in (from_metadata, from_instance):
        for got, nodule in zip(found, nodules, strict=True):
            assert_same_numbers(got, nodule)

    ct = client.get(f"/studies/{sr.StudyInstanceUID}/series/{demo.study['series_uid']}/instances/"
                    f"{nodules[0].measurement.instance_uid}/metadata").json()[0]
    centre = centre_from_points(from_metadata[0].points, ct)  # on the slice nearest the centre
    assert centre[:2] == pytest.approx(demo.truth[0]["center_patient_mm"][:2], abs=0.01)
    assert centre[2] == pytest.approx(float(ct["00200032"]["Value"][2]))


def _code_of(item: dict[str, Any], tag: str = "0040A043") -> str | None:
    seq = item.get(tag, {}).get("Value")
    return seq[0]["00080100"]["Value"][0] if seq else None


def _item(group: dict[str, Any], code: str) -> dict[str, Any]:
    return next(i for i in group["0040A730"]["Value"] if _code_of(i) == code)


def _text(group: dict[str, Any], code: str) -> str:
    return str(_item(group, code)["0040A160"]["Value"][0])


def _uid(group: dict[str, Any]) -> str:
    return str(_item(group, "112040")["0040A124"]["Value"][0])


def _num(group: dict[str, Any], code: str) -> float:
    return float(_item(group, code)["0040A300"]["Value"][0]["0040A30A"]["Value"][0])


def _value_code(group: dict[str, Any], code: str) -> str | None:
    return _code_of(_item(group, code), "0040A168")


# -- OHIF / dcmjs ---------------------------------------------------------------------------

def _code(value: str, scheme: str, meaning: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.CodeValue, ds.CodingSchemeDesignator, ds.CodeMeaning = value, scheme, meaning
    return ds


def _item_ds(relationship: str, value_type: str, name: pydicom.Dataset, **attrs: Any
             ) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.RelationshipType, ds.ValueType = relationship, value_type
    ds.ConceptNameCodeSequence = [name]
    for keyword, value in attrs.items():
        setattr(ds, keyword, value)
    return ds


def _dcmjs_num(meaning: str, srt: str, value: float, points: list[float], sop: str,
               unit: str = "mm") -> pydicom.Dataset:
    """dcmjs TID300 Length / Bidirectional axis: NUM, INFERRED FROM SCOORD POLYLINE,
    SELECTED FROM IMAGE (dcmjs src/utilities/TID300/Length.js, Bidirectional.js)."""
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT_IMAGE, sop
    image = pydicom.Dataset()
    image.RelationshipType, image.ValueType, image.ReferencedSOPSequence = (
        "SELECTED FROM", "IMAGE", [ref])
    scoord = pydicom.Dataset()
    scoord.RelationshipType, scoord.ValueType, scoord.GraphicType = (
        "INFERRED FROM", "SCOORD", "POLYLINE")
    scoord.GraphicData, scoord.ContentSequence = points, [image]
    measured = pydicom.Dataset()
    measured.MeasurementUnitsCodeSequence = [_code(unit, "UCUM", "millimeter")]
    measured.NumericValue = value
    return _item_ds("CONTAINS", "NUM", _code(srt, "SRT", meaning),
                    MeasuredValueSequence=[measured], ContentSequence=[scoord])


def _dcmjs_3d_length(value: float, points_mm: list[float], frame_of_reference: str
                     ) -> pydicom.Dataset:
    """dcmjs TID300 Length with use3DSpatialCoordinates (OHIF MPR viewports): SCOORD3D
    POLYLINE with a ReferencedFrameOfReferenceUID and no image reference."""
    scoord = pydicom.Dataset()
    scoord.RelationshipType, scoord.ValueType, scoord.GraphicType = (
        "INFERRED FROM", "SCOORD3D", "POLYLINE")
    scoord.GraphicData, scoord.ReferencedFrameOfReferenceUID = points_mm, frame_of_reference
    measured = pydicom.Dataset()
    measured.MeasurementUnitsCodeSequence = [_code("mm", "UCUM", "millimeter")]
    measured.NumericValue = value
    return _item_ds("CONTAINS", "NUM", _code("G-D7FE", "SRT", "Length"),
                    MeasuredValueSequence=[measured], ContentSequence=[scoord])


def _dcmjs_group(tool: str, numbers: list[pydicom.Dataset], label: str = "",
                 tag: str = "Cornerstone3DTools@^0.1.0") -> pydicom.Dataset:
    """dcmjs TID1501MeasurementGroup + TID300Measurement tracking and finding items; a
    user's label is a CORNERSTONEFREETEXT finding site (adapters/Cornerstone3D)."""
    content = [
        _item_ds("HAS OBS CONTEXT", "TEXT", _code("112039", "DCM", "Tracking Identifier"),
                 TextValue=f"{tag}:{tool}"),
        _item_ds("HAS OBS CONTEXT", "UIDREF", _code("112040", "DCM", "Tracking Unique Identifier"),
                 UID=generate_uid()),
        *([_item_ds("CONTAINS", "CODE", _code("363698007", "SCT", "Finding Site"),
                    ConceptCodeSequence=[_code("CORNERSTONEFREETEXT", "CORNERSTONEJS", label)])]
          if label else []),
        *numbers,
    ]
    return _item_ds("CONTAINS", "CONTAINER", _code("125007", "DCM", "Measurement Group"),
                    ContinuityOfContent="SEPARATE", ContentSequence=content)


def ohif_sr(ct: pydicom.Dataset, groups: list[pydicom.Dataset]) -> pydicom.Dataset:
    """An SR shaped like the one OHIF v3 saves: dcmjs's Cornerstone3D MeasurementReport,
    read from dcmjs-org/dcmjs (src/adapters/Cornerstone3D/MeasurementReport.js,
    src/utilities/TID1500/TID1500MeasurementReport.js, TID1501MeasurementGroup.js,
    TID300/Length.js, Bidirectional.js, derivations StructuredReport): Enhanced SR,
    legacy SRT codes (Length G-D7FE, Long Axis G-A185, Short Axis G-A186), observer
    "unknown^unknown", a "99dcmjs" procedure, one measurement group per tool, 2-D SCOORD
    POLYLINE points in image coordinates, evidence per referenced SOP instance."""
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = ENHANCED_SR, generate_uid(), "SR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = ct.StudyInstanceUID, generate_uid()
    ds.PatientID, ds.PatientName = ct.PatientID, ct.PatientName
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = [_code("126000", "DCM", "Imaging Measurement Report")]
    template = pydicom.Dataset()
    template.MappingResource, template.TemplateIdentifier = "DCMR", "1500"
    ds.ContentTemplateSequence = [template]
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    ref = pydicom.Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = CT_IMAGE, ct.SOPInstanceUID
    series = pydicom.Dataset()
    series.SeriesInstanceUID, series.ReferencedSOPSequence = ct.SeriesInstanceUID, [ref]
    study = pydicom.Dataset()
    study.StudyInstanceUID, study.ReferencedSeriesSequence = ct.StudyInstanceUID, [series]
    ds.CurrentRequestedProcedureEvidenceSequence = [study]
    ds.ContentSequence = [
        _item_ds("HAS OBS CONTEXT", "PNAME", _code("121008", "DCM", "Person Observer Name"),
                 PersonName="unknown^unknown"),
        _item_ds("HAS CONCEPT MOD", "CODE", _code("121058", "DCM", "Procedure reported"),
                 ConceptCodeSequence=[_code("1", "99dcmjs", "Unknown procedure")]),
        _item_ds("CONTAINS", "CONTAINER", _code("126010", "DCM", "Imaging Measurements"),
                 ContinuityOfContent="SEPARATE", ContentSequence=groups),
    ]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ENHANCED_SR
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


@pytest.mark.filterwarnings("ignore:The value length")  # dcmjs's 19-character SH code value
def test_an_ohif_length_and_bidirectional_are_imported(demo: Demo) -> None:
    ct = demo.slices[demo.truth[0]["instance_uid_at_center"]]
    sop = str(ct.SOPInstanceUID)
    length = _dcmjs_group("Length", [_dcmjs_num("Length", "G-D7FE", 12.3,
                                                 [150.5, 290.0, 168.0, 295.5], sop)], label="N1")
    bidirectional = _dcmjs_group("Bidirectional", [
        _dcmjs_num("Long Axis", "G-A185", 8.1, [152.0, 293.0, 164.0, 293.0], sop),
        _dcmjs_num("Short Axis", "G-A186", 6.2, [158.0, 288.0, 158.0, 297.0], sop)])
    arrow = _dcmjs_group("ArrowAnnotate", [])
    uncalibrated = _dcmjs_group("Length", [_dcmjs_num("Length", "G-D7FE", 40.0,
                                                       [1.0, 1.0, 41.0, 1.0], sop, unit="1")])
    sr = round_trip(ohif_sr(ct, [length, arrow, bidirectional, uncalibrated]))

    first, second = read_nodule_sr(sr)
    assert (first.tool, second.tool) == ("Length", "Bidirectional")
    assert first.long_axis_mm == pytest.approx(12.3) and first.short_axis_mm is None
    assert first.points == ((150.5, 290.0), (168.0, 295.5))
    assert (first.study_uid, first.series_uid, first.instance_uid, first.frame_number) == (
        ct.StudyInstanceUID, ct.SeriesInstanceUID, sop, None)
    assert (second.long_axis_mm, second.short_axis_mm) == (pytest.approx(8.1), pytest.approx(6.2))
    assert len(second.points) == 4
    assert (first.label, second.label) == ("N1", None)
    for found in (first, second):
        assert found.observer is None  # dcmjs's placeholder name
        assert found.method is None and found.nodule_type is None and found.lobe is None
        assert found.tracking_uid is not None and found.sr_instance_uid == sr.SOPInstanceUID


@pytest.mark.filterwarnings("ignore:The value length")
def test_an_ohif_length_drawn_in_a_volume_viewport_is_located_in_space(demo: Demo) -> None:
    ct = demo.slices[demo.truth[0]["instance_uid_at_center"]]
    frame_of_reference = str(ct.FrameOfReferenceUID)
    centre = demo.truth[0]["center_patient_mm"]
    ends = [centre[0] - 3.0, centre[1], centre[2], centre[0] + 3.0, centre[1], centre[2]]
    legacy = _dcmjs_group("Length", [_dcmjs_num("Length", "G-D7FE", 7.0,
                                                [1.0, 2.0, 8.0, 2.0], str(ct.SOPInstanceUID))],
                          tag="cornerstoneTools@^4.0.0")
    in_space = _dcmjs_group("Length", [_dcmjs_3d_length(6.0, ends, frame_of_reference)])
    old, found = read_nodule_sr(round_trip(ohif_sr(ct, [legacy, in_space])))
    assert old.tool == "Length" and old.instance_uid == ct.SOPInstanceUID
    assert found.instance_uid is None and found.series_uid is None and found.points == ()
    assert found.frame_of_reference_uid == frame_of_reference
    assert found.long_axis_mm == pytest.approx(6.0)
    assert found.centre_in_space_mm == pytest.approx(centre, abs=1e-3)  # FL precision


def test_another_writers_lobe_and_mean_diameter_forms_are_understood(demo: Demo) -> None:
    """PS3.16 CID 6170 "Upper lobe of lung" + Laterality Left, Diameter with Derivation
    Mean, volume in cm3, GGO as DCM 112120, Automated method: all mapped to our model."""
    ct = demo.slices[demo.truth[0]["instance_uid_at_center"]]
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
        graphic_data=np.array([[158.0, 293.0], [162.0, 293.0]]),
        source_image=hd.sr.SourceImageForRegion.from_source_image(ct))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(identifier="lesion 1"),
        referenced_region=region, finding_type=codes.SCT.Nodule,
        method=codes.SCT.Automated,
        finding_sites=[hd.sr.FindingSite(codes.SCT.UpperLobeOfLung, laterality=codes.SCT.Left)],
        measurements=[
            hd.sr.Measurement(name=codes.SCT.Diameter, value=0.55, unit=codes.UCUM.Centimeter,
                              derivation=codes.SCT.Mean),
            hd.sr.Measurement(name=codes.SCT.Volume, value=0.09,
                              unit=hd.sr.CodedConcept("cm3", "UCUM", "cubic centimeter"))],
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(
            hd.sr.CodedConcept("C41144", "NCIt", "Texture"),
            hd.sr.CodedConcept("112120", "DCM", "Ground glass opacity"))])
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(),
                                     procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=[group])
    sr = hd.sr.Comprehensive3DSR(evidence=[ct], content=report[0],
                                 series_instance_uid=generate_uid(), series_number=5,
                                 sop_instance_uid=generate_uid(), instance_number=1)
    [found] = read_nodule_sr(round_trip(sr))
    assert found.lobe is Lobe.LUL and found.nodule_type is NoduleType.GROUND_GLASS
    assert found.mean_diameter_mm == pytest.approx(5.5) and found.long_axis_mm is None
    assert found.volume_mm3 == pytest.approx(90.0)
    assert found.method is Method.SEMI_AUTOMATIC
    assert found.tracking_uid is not None and found.tool is None


# -- geometry --------------------------------------------------------------------------------

def _image(position: list[float], orientation: list[float], spacing: list[float]
           ) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.ImagePositionPatient, ds.ImageOrientationPatient, ds.PixelSpacing = (
        position, orientation, spacing)
    return ds


def test_centre_from_points_matches_a_hand_calculation() -> None:
    """Axial, row spacing 0.5 mm, column spacing 0.8 mm. Mean of the points is (20.5, 30.5);
    SCOORD puts pixel centres at +0.5, so that is pixel (20, 30):
    x = -100 + 0.8*20 = -84, y = -50 + 0.5*30 = -35, z = 20."""
    image = _image([-100.0, -50.0, 20.0], [1, 0, 0, 0, 1, 0], [0.5, 0.8])
    assert centre_from_points([(10.5, 20.5), (30.5, 40.5)], image) == pytest.approx(
        (-84.0, -35.0, 20.0))
    square = [(10.5, 20.5), (30.5, 20.5), (30.5, 40.5), (10.5, 40.5), (10.5, 20.5)]  # closed
    assert centre_from_points(square, image) == pytest.approx((-84.0, -35.0, 20.0))


def test_centre_from_points_on_a_sagittal_image_from_dataset_or_dicom_json() -> None:
    """Rows run anterior->posterior (+y), columns head->feet (-z): pixel (4, 10) with
    0.7 mm spacing sits at (12, -30 + 0.7*4, 80 - 0.7*10) = (12, -27.2, 73)."""
    image = _image([12.0, -30.0, 80.0], [0, 1, 0, 0, 0, -1], [0.7, 0.7])
    expected = (12.0, -27.2, 73.0)
    assert centre_from_points([(4.5, 10.5)], image) == pytest.approx(expected)
    metadata = image.to_json_dict() | {"7FE00010": {"vr": "OW", "BulkDataURI": "x/bulk"}}
    assert centre_from_points([(4.5, 10.5)], metadata) == pytest.approx(expected)
    to_patient = hd.spatial.ImageToReferenceTransformer(
        image_position=image.ImagePositionPatient, image_orientation=image.ImageOrientationPatient,
        pixel_spacing=image.PixelSpacing)
    assert to_patient(np.array([[4.5, 10.5]]))[0] == pytest.approx(expected)


def test_centre_from_points_of_the_demo_outline_is_the_true_centre(demo: Demo) -> None:
    ct = demo.slices[demo.truth[1]["instance_uid_at_center"]]
    assert centre_from_points(demo.circle(1), ct)[:2] == pytest.approx(
        demo.truth[1]["center_patient_mm"][:2], abs=0.01)


def test_centre_from_points_on_a_frame_of_an_enhanced_multi_frame_image() -> None:
    """Enhanced CT keeps geometry in functional groups (PS3.3 C.7.6.16): orientation and
    spacing shared, position per frame. Frame 2 at z = 22.5: pixel (20, 30) as above."""
    shared = pydicom.Dataset()
    orientation, measures = pydicom.Dataset(), pydicom.Dataset()
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    measures.PixelSpacing = [0.5, 0.8]
    shared.PlaneOrientationSequence, shared.PixelMeasuresSequence = [orientation], [measures]
    frames = []
    for z in (20.0, 22.5):
        frame, position = pydicom.Dataset(), pydicom.Dataset()
        position.ImagePositionPatient = [-100.0, -50.0, z]
        frame.PlanePositionSequence = [position]
        frames.append(frame)
    image = pydicom.Dataset()
    image.SharedFunctionalGroupsSequence, image.PerFrameFunctionalGroupsSequence = [shared], frames
    points = [(10.5, 20.5), (30.5, 40.5)]
    assert centre_from_points(points, image, frame_number=2) == pytest.approx((-84.0, -35.0, 22.5))
    assert centre_from_points(points, image.to_json_dict(), frame_number=1)[2] == pytest.approx(20)
    with pytest.raises(ValueError, match="frame_number"):
        centre_from_points(points, image)


def test_centre_from_points_needs_geometry() -> None:
    image = pydicom.Dataset()
    image.ImagePositionPatient, image.ImageOrientationPatient = [0, 0, 0], [1, 0, 0, 0, 1, 0]
    with pytest.raises(ValueError, match="PixelSpacing"):
        centre_from_points([(1.0, 1.0)], image)
