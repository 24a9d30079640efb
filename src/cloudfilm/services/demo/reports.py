"""The demo's radiology reports: one in Chinese and one in English for every demo study.

Why: a newcomer should see what a patient reads when a hospital sends its report with the
images (issue 12, part 8), next to cloudfilm's own nodule tracking. Each report is a Basic
Text SR shaped as TID 2000 (Basic Diagnostic Imaging Report: a Language item, Findings and
Impression containers), written in the hospital's character set and marked VERIFIED by one
of its radiologists, as a hospital's reporting system sends it. Like a real hospital report
it compares only with that hospital's own earlier scan: a scan at the other hospital is
exactly the prior the radiologist could not see. The words come from the demo's truth file,
so they agree with the pixels. Nothing here is real patient data.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from cloudfilm.services.demo.generate import HOSPITALS

BASIC_TEXT_SR = UID("1.2.840.10008.5.1.4.1.1.88.11")
REPORT_SERIES_NUMBER = 900
GROWN_MM = 1.0  # a radiologist's "larger than before": more than 1 mm across


@dataclass(frozen=True)
class _Words:
    """One language's sentences of a report."""

    code: str  # RFC 5646 (PS3.16 CID 5000)
    meaning: str
    findings: str
    impression: str


def _code(value: str, scheme: str, meaning: str) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _item(value_type: str, name: pydicom.Dataset, relationship: str = "CONTAINS",
          **values: Any) -> pydicom.Dataset:
    item = pydicom.Dataset()
    item.RelationshipType, item.ValueType = relationship, value_type
    item.ConceptNameCodeSequence = Sequence([name])
    for keyword, value in values.items():
        setattr(item, keyword, value)
    return item


def _side_zone(nodule: dict[str, Any], slices: int) -> tuple[str, str]:
    """("right"|"left", "upper"|"lower"): LPS x grows to the patient's left, z to the head."""
    side = "right" if nodule["center_patient_mm"][0] < 0 else "left"
    zone = "upper" if nodule["center_voxel"][2] >= slices / 2 else "lower"
    return side, zone


def _same_hospital_prior(studies: list[dict[str, Any]], index: int) -> dict[str, Any] | None:
    study = studies[index]
    earlier = [s for s in studies[:index] if s["issuer"] == study["issuer"]]
    return earlier[-1] if earlier else None


def _prior_size(prior: dict[str, Any] | None, nodule_id: str) -> float | None:
    if prior is None:
        return None
    return next((n["diameter_mm"] for n in prior["nodules"] if n["id"] == nodule_id), None)


def _zh(studies: list[dict[str, Any]], index: int) -> _Words:
    study, prior = studies[index], _same_hospital_prior(studies, index)
    side_zh = {"right": "右", "left": "左"}
    zone_zh = {"upper": "上", "lower": "下"}
    kind_zh = {"solid": "实性", "ground-glass": "磨玻璃密度"}
    found, summary = ["胸廓对称，气管居中。"], []
    for n in study["nodules"]:
        side, zone = _side_zone(n, study["slices"])
        where = f"{side_zh[side]}肺{zone_zh[zone]}野"
        before = _prior_size(prior, n["id"])
        if prior is None or before is None:
            compare, change = "本院无既往胸部CT可供对比", "请与既往外院影像对比"
        elif n["diameter_mm"] - before > GROWN_MM:
            compare = f"较{_day(prior)}本院CT（约{before:g} mm）增大"
            change = "较前增大"
        else:
            compare = f"与{_day(prior)}本院CT（约{before:g} mm）大致相仿"
            change = "较前相仿"
        found.append(f"{where}见一{kind_zh[n['type']]}结节，大小约{n['diameter_mm']:g} mm，"
                     f"边界清楚，{compare}。")
        summary.append(f"{where}{kind_zh[n['type']]}结节（约{n['diameter_mm']:g} mm），{change}。")
    found.append("纵隔内未见肿大淋巴结，双侧胸腔未见积液。")
    impression = "".join(summary) or "双肺未见明确结节。"
    return _Words("zh-CN", "Chinese (China)", "".join(found),
                  impression + "请按临床医生建议随访。")


def _en(studies: list[dict[str, Any]], index: int) -> _Words:
    study, prior = studies[index], _same_hospital_prior(studies, index)
    kind_en = {"solid": "solid", "ground-glass": "ground-glass"}
    found, summary = ["The chest is symmetric and the trachea is midline."], []
    for n in study["nodules"]:
        side, zone = _side_zone(n, study["slices"])
        where = f"{side} {zone} zone"
        before = _prior_size(prior, n["id"])
        if prior is None or before is None:
            compare = "no earlier chest CT at this hospital for comparison"
            change = "compare with outside priors"
        elif n["diameter_mm"] - before > GROWN_MM:
            compare = f"larger than on our CT of {_day(prior)} (about {before:g} mm)"
            change = "larger than before"
        else:
            compare = f"about the same as on our CT of {_day(prior)} (about {before:g} mm)"
            change = "stable"
        found.append(f"A well-defined {kind_en[n['type']]} nodule of about "
                     f"{n['diameter_mm']:g} mm in the {where}; {compare}.")
        summary.append(f"{kind_en[n['type']].capitalize()} nodule in the {where} "
                       f"(about {n['diameter_mm']:g} mm), {change}.")
    found.append("No enlarged mediastinal lymph nodes. No pleural effusion.")
    impression = " ".join(summary) or "No lung nodule seen."
    return _Words("en-US", "English (United States)", " ".join(found),
                  impression + " Follow-up as advised by the referring physician.")


def _day(study: dict[str, Any]) -> str:
    d = study["study_date"]
    return f"{d[:4]}-{d[4:6]}-{d[6:]}"


def _header(patient: dict[str, Any], study: dict[str, Any], words: _Words,
            number: int) -> pydicom.Dataset:
    hospital = HOSPITALS[study["issuer"]]
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = hospital.charset
    ds.SOPClassUID = BASIC_TEXT_SR
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[study["study_uid"], "report", words.code])
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study["study_uid"], study["study_date"], ""
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[study["study_uid"], "report series"])
    ds.AccessionNumber, ds.StudyID = study["accession_number"], ""
    ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "SR", REPORT_SERIES_NUMBER, number
    ds.SeriesDescription, ds.StudyDescription = "Radiology report", "CT CHEST"
    ds.InstitutionName, ds.Manufacturer = hospital.name, "cloudfilm demo RIS"
    ds.ReferringPhysicianName = ""
    ds.PatientName, ds.PatientID = patient["patient_name"], study["patient_id"]
    ds.IssuerOfPatientID = hospital.issuer
    ds.PatientBirthDate, ds.PatientSex = patient["birth_date"], patient["sex"]
    ds.ContentDate, ds.ContentTime = study["study_date"], "170000"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "VERIFIED"
    observer = pydicom.Dataset()
    observer.VerifyingObserverName = hospital.physicians[0]
    observer.VerifyingOrganization = hospital.name
    observer.VerificationDateTime = f"{study['study_date']}173000"
    observer.VerifyingObserverIdentificationCodeSequence = Sequence([])
    ds.VerifyingObserverSequence = Sequence([observer])
    ds.PerformedProcedureCodeSequence = Sequence([])
    ds.ReferencedPerformedProcedureStepSequence = Sequence([])
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = BASIC_TEXT_SR, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    return ds


def report_dataset(patient: dict[str, Any], index: int, words: _Words,
                   number: int) -> pydicom.Dataset:
    """One verified TID 2000 report of study ``index`` of a truth patient."""
    ds = _header(patient, patient["studies"][index], words, number)
    ds.ValueType, ds.ContinuityOfContent = "CONTAINER", "SEPARATE"
    ds.ConceptNameCodeSequence = Sequence([_code("18748-4", "LN", "Diagnostic imaging report")])
    language = _item("CODE", _code("121049", "DCM", "Language of Content Item and Descendants"),
                     "HAS CONCEPT MOD",
                     ConceptCodeSequence=Sequence([_code(words.code, "RFC5646", words.meaning)]))
    findings = _item("CONTAINER", _code("121070", "DCM", "Findings"),
                     ContinuityOfContent="SEPARATE", ContentSequence=Sequence([
                         _item("TEXT", _code("121071", "DCM", "Finding"),
                               TextValue=words.findings)]))
    impression = _item("CONTAINER", _code("121072", "DCM", "Impressions"),
                       ContinuityOfContent="SEPARATE", ContentSequence=Sequence([
                           _item("TEXT", _code("121073", "DCM", "Impression"),
                                 TextValue=words.impression)]))
    ds.ContentSequence = Sequence([language, findings, impression])
    return ds


def iter_demo_reports(truth: dict[str, Any]) -> Iterator[tuple[pydicom.Dataset, str]]:
    """(report, relative path) for every study of the truth: Chinese first, then English."""
    for p, patient in enumerate(truth["patients"]):
        studies = patient["studies"]
        for s, study in enumerate(studies):
            for number, words in enumerate((_zh(studies, s), _en(studies, s)), start=1):
                path = f"reports/P{p + 1:03d}/{study['study_uid']}/{number}.dcm"
                yield report_dataset(patient, s, words, number), path


def write_demo_reports(out_dir: pathlib.Path, truth: dict[str, Any]) -> int:
    """Write every demo report as a Part-10 file under ``out_dir``; the number written."""
    count = 0
    for ds, relative in iter_demo_reports(truth):
        path = out_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
        count += 1
    return count
