"""A nodule measurement as a FHIR R4 Observation, for EHRs and registries that speak FHIR.

Pure: builds plain JSON-ready dicts, no I/O. One Observation per nodule per study; the
nodule itself (label, tracking UID, lobe) is a contained BodyStructure that the
Observation's ``focus`` points at, the R4 rendering of how the HL7 "DICOM SR to FHIR
Resource Mapping" IG (profile dicom-sr-tracking-identifiers) carries TID 1500 Tracking
Identifier (DCM 112039) and Tracking Unique Identifier (DCM 112040). Because the
tracking UID is constant across studies, observations of one nodule over time share
it, while each Observation stays a separate measurement.

Codes (FHIR system URIs from the R4 / HL7 terminology conventions; sources):

* code: SNOMED CT 786838002 "Nodule of lung" (as in the HL7 Lithuanian lung IG's
  pulmonary nodule profile). No LOINC code for a lung nodule measurement was found.
* category: observation-category "imaging" (R4 base value set).
* bodySite: the SNOMED CT lobe structures 42400003, 72481006, 266005, 44714003,
  41224006 (HL7 Lithuanian lung IG lobe value set, expanded by tx.fhir.org; NZHTS).
* components: SNOMED CT 103339001 Long axis and 103340004 Short axis (DICOM PS3.16
  CID 7470), RadLex RID50155 "average diameter" (ACR/RSNA OIDM nodule CDE) for the
  mean diameter, SNOMED CT 118565006 Volume (PS3.16 CID 7472), RadLex RID50154 for the
  solid component, NCI Thesaurus C41144 "Texture" valued with RadLex RID50151/50152/
  50153 solid / part-solid / non-solid pulmonary nodule (as QIICR's LIDC-IDRI SRs),
  DICOM DCM 112030 "Calcification Descriptor" (PS3.16 CID 6132 values); quantities in
  UCUM "mm" and "mm3".
* method: SNOMED CT 87982008 "Manual" (PS3.16 CID 7230); no code for
  "semi-automatic" could be verified, so that one is text only.
"""

from __future__ import annotations

import html
import re
import uuid
from collections.abc import Sequence
from typing import Any

from cloudfilm.domain.nodule import Calcification, Lobe, Measurement, Method, NoduleType

SNOMED = "http://snomed.info/sct"
RADLEX = "http://radlex.org"
NCIT = "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DICOM_UID = "urn:dicom:uid"

NODULE_OF_LUNG = (SNOMED, "786838002", "Nodule of lung")
NODULE = (SNOMED, "27925004", "Nodule")
LONG_AXIS = (SNOMED, "103339001", "Long axis")
SHORT_AXIS = (SNOMED, "103340004", "Short axis")
MEAN_DIAMETER = (RADLEX, "RID50155", "average diameter")
VOLUME = (SNOMED, "118565006", "Volume")
SOLID_COMPONENT = (RADLEX, "RID50154", "solid component of part-solid pulmonary nodule")
TEXTURE = (NCIT, "C41144", "Texture")
CALCIFICATION = (DICOM_DCM, "112030", "Calcification Descriptor")
MANUAL = (SNOMED, "87982008", "Manual")
TRACKING_IDENTIFIER = (DICOM_DCM, "112039", "Tracking Identifier")
TRACKING_UID = (DICOM_DCM, "112040", "Tracking Unique Identifier")

NODULE_TYPES = {
    NoduleType.SOLID: (RADLEX, "RID50151", "solid pulmonary nodule"),
    NoduleType.PART_SOLID: (RADLEX, "RID50152", "part-solid pulmonary nodule"),
    NoduleType.GROUND_GLASS: (RADLEX, "RID50153", "non-solid pulmonary nodule"),
}
CALCIFICATIONS = {
    Calcification.LAMINATED: (SNOMED, "88446008", "Laminated"),
    Calcification.POPCORN: (SNOMED, "129749001", "Coarse (popcorn-like) calcification"),
    Calcification.DIFFUSE: (SNOMED, "19648000", "Diffuse"),
    Calcification.CENTRAL: (SNOMED, "26216008", "Central"),
    Calcification.INDETERMINATE: (SNOMED, "237897009", "Calcified"),
}
LOBES = {
    Lobe.RUL: (SNOMED, "42400003", "Structure of upper lobe of right lung"),
    Lobe.RML: (SNOMED, "72481006", "Structure of middle lobe of right lung"),
    Lobe.RLL: (SNOMED, "266005", "Structure of lower lobe of right lung"),
    Lobe.LUL: (SNOMED, "44714003", "Structure of upper lobe of left lung"),
    Lobe.LLL: (SNOMED, "41224006", "Structure of lower lobe of left lung"),
}

STATUSES = ("preliminary", "final", "amended")
_REFERENCE = re.compile(r"^([A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?"
                        r"|https?://\S+/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}|urn:uuid:[0-9a-f\-]{36})$")
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_NODULE_ID = "nodule"


def nodule_observation(m: Measurement, *, label: str, tracking_uid: str, patient_reference: str,
                       imaging_study_reference: str | None, performer: str | None,
                       status: str = "final", resource_id: str | None = None) -> dict[str, Any]:
    """The Observation for one measurement of one nodule.

    ``patient_reference`` and ``imaging_study_reference`` are FHIR references
    ("Patient/123", an absolute URL or "urn:uuid:..."); ``performer`` is a reference to
    the Practitioner who measured, or None (``m.measured_by`` is always its display).
    The ImagingStudy is also referenced logically by its Study Instance UID, so the link
    holds even without an ImagingStudy resource. Sizes are as entered, not rounded.
    """
    if status not in STATUSES:
        raise ValueError(f"status {status!r}: use one of {', '.join(STATUSES)}")
    if not _UID.match(tracking_uid):
        raise ValueError(f"tracking_uid {tracking_uid!r} is not a DICOM UID (digits and dots)")
    for name, ref in (("patient_reference", patient_reference),
                      ("imaging_study_reference", imaging_study_reference),
                      ("performer", performer)):
        if ref is not None and not _REFERENCE.match(ref):
            raise ValueError(f"{name} {ref!r} is not a FHIR reference (e.g. 'Patient/123')")
    obs: dict[str, Any] = {"resourceType": "Observation"}
    if resource_id is not None:
        obs["id"] = resource_id
    obs |= {
        "text": _narrative(m, label),
        "contained": [_body_structure(m, label, tracking_uid, patient_reference)],
        "status": status,
        "category": [_concept((OBSERVATION_CATEGORY, "imaging", "Imaging"))],
        "code": _concept(NODULE_OF_LUNG),
        "subject": {"reference": patient_reference},
        "focus": [{"reference": f"#{_NODULE_ID}", "display": label}],
        "effectiveDateTime": m.study_date.isoformat(),
        "performer": [_performer(performer, m.measured_by)],
        "method": _method(m.method),
        "derivedFrom": [_imaging_study(m.study_uid, imaging_study_reference)],
        "component": _components(m),
    }
    if m.lobe is not None:
        obs["bodySite"] = _concept(LOBES[m.lobe])
    return obs


def bundle(observations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A FHIR "collection" Bundle of the observations, each under a fresh urn:uuid fullUrl."""
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": obs} for obs in observations],
    }


def _narrative(m: Measurement, label: str) -> dict[str, str]:
    """Human-readable summary (R4 dom-6 asks every resource to carry one)."""
    where = f", {m.lobe.value}" if m.lobe is not None else ""
    summary = (f"Nodule {label}: {m.nodule_type.value}, {m.long_axis_mm:g} x "
               f"{m.short_axis_mm:g} mm (mean {float(m.mean_diameter_mm):g} mm){where}, "
               f"{m.study_date.isoformat()}")
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{html.escape(summary)}</div>'}


def _concept(code: tuple[str, str, str], text: str | None = None) -> dict[str, Any]:
    system, value, display = code
    concept: dict[str, Any] = {"coding": [{"system": system, "code": value, "display": display}]}
    if text is not None:
        concept["text"] = text
    return concept


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": float(value), "unit": unit, "system": UCUM, "code": unit}


def _components(m: Measurement) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"code": _concept(LONG_AXIS), "valueQuantity": _quantity(m.long_axis_mm, "mm")},
        {"code": _concept(SHORT_AXIS), "valueQuantity": _quantity(m.short_axis_mm, "mm")},
        {"code": _concept(MEAN_DIAMETER, "Mean diameter"),
         "valueQuantity": _quantity(float(m.mean_diameter_mm), "mm")},
    ]
    if m.volume_mm3 is not None:
        parts.append({"code": _concept(VOLUME), "valueQuantity": _quantity(m.volume_mm3, "mm3")})
    if m.solid_component_mm is not None:
        parts.append({"code": _concept(SOLID_COMPONENT, "Solid component mean diameter"),
                      "valueQuantity": _quantity(m.solid_component_mm, "mm")})
    parts.append({"code": _concept(TEXTURE, "Nodule type"),
                  "valueCodeableConcept": _concept(NODULE_TYPES[m.nodule_type],
                                                   m.nodule_type.value)})
    if m.calcification is not Calcification.NONE:
        parts.append({"code": _concept(CALCIFICATION),
                      "valueCodeableConcept": _concept(CALCIFICATIONS[m.calcification],
                                                       m.calcification.value)})
    return parts


def _method(method: Method) -> dict[str, Any]:
    if method is Method.MANUAL:
        return _concept(MANUAL, "manual")
    return {"text": "semi-automatic (software segmentation, reader-confirmed)"}


def _performer(reference: str | None, measured_by: str) -> dict[str, Any]:
    ref: dict[str, Any] = {"display": measured_by}
    if reference is not None:
        ref["reference"] = reference
    return ref


def _imaging_study(study_uid: str, reference: str | None) -> dict[str, Any]:
    """R4 ImagingStudy.identifier convention: system urn:dicom:uid, value urn:oid:<UID>."""
    ref: dict[str, Any] = {"type": "ImagingStudy",
                           "identifier": {"system": DICOM_UID, "value": f"urn:oid:{study_uid}"}}
    if reference is not None:
        ref["reference"] = reference
    return ref


def _body_structure(m: Measurement, label: str, tracking_uid: str,
                    patient_reference: str) -> dict[str, Any]:
    """The nodule: label and tracking UID as identifiers typed with their DICOM codes."""
    structure: dict[str, Any] = {
        "resourceType": "BodyStructure",
        "id": _NODULE_ID,
        "identifier": [
            {"type": _concept(TRACKING_IDENTIFIER), "value": label},
            {"type": _concept(TRACKING_UID), "system": DICOM_UID,
             "value": f"urn:oid:{tracking_uid}"},
        ],
        "morphology": _concept(NODULE),
        "description": f"Pulmonary nodule {label}",
        "patient": {"reference": patient_reference},
    }
    if m.lobe is not None:
        structure["location"] = _concept(LOBES[m.lobe])
    return structure
