"""A nodule measurement as a FHIR R4 Observation: structure, codes, references, Bundle.

Structure is checked by hand against the R4 rules that can be checked without a
terminology server (required elements, types, reference formats, Quantity qty-3,
Reference ref-1, contained dom-3), and, as a second opinion, parsed with the
``fhir.resources`` models (R4B: R4's Observation, BodyStructure and Bundle elements
used here are unchanged in R4B; the package ships no plain R4 models).
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest

from cloudfilm.domain.fhir_observation import bundle, nodule_observation
from cloudfilm.domain.nodule import Calcification, Lobe, Measurement, Method, NoduleType

TRACKING_UID = "1.2.826.0.1.3680043.8.498.1234567890"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"


def make(**kw: Any) -> Measurement:
    fields: dict[str, Any] = {
        "study_uid": "1.2.3.4", "series_uid": "1.2.3.4.5", "instance_uid": "1.2.3.4.5.6",
        "centre_mm": (10.0, -20.5, 33.0), "long_axis_mm": 7.2, "short_axis_mm": 5.4,
        "nodule_type": NoduleType.PART_SOLID, "study_date": date(2024, 9, 8),
        "measured_by": "dr-a", "method": Method.SEMI_AUTOMATIC, "volume_mm3": 130.5,
        "solid_component_mm": 3.1, "calcification": Calcification.NONE, "lobe": Lobe.RUL,
    }
    return Measurement(**(fields | kw))


def observe(m: Measurement | None = None, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "label": "N1", "tracking_uid": TRACKING_UID, "patient_reference": "Patient/p1",
        "imaging_study_reference": "ImagingStudy/s1", "performer": "Practitioner/dr-a",
    }
    return nodule_observation(m or make(), **(args | kw))


def component(obs: dict[str, Any], system: str, code: str) -> dict[str, Any]:
    found = [c for c in obs["component"]
             if any(cd["system"] == system and cd["code"] == code for cd in c["code"]["coding"])]
    assert len(found) == 1, f"expected one component {system}|{code}"
    return found[0]


def test_observation_has_the_required_r4_elements_and_is_plain_json() -> None:
    obs = observe()
    assert obs["resourceType"] == "Observation"
    assert obs["status"] == "final"
    assert obs["code"]["coding"] == [{"system": SNOMED, "code": "786838002",
                                      "display": "Nodule of lung"}]
    assert obs["category"][0]["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
        "code": "imaging", "display": "Imaging"}
    assert obs["subject"] == {"reference": "Patient/p1"}
    assert obs["effectiveDateTime"] == "2024-09-08"
    assert json.loads(json.dumps(obs)) == obs


def test_sizes_are_components_in_ucum_millimetres_as_entered() -> None:
    obs = observe()
    expected = {("103339001", 7.2, "mm"), ("103340004", 5.4, "mm"), ("118565006", 130.5, "mm3")}
    for code, value, unit in expected:
        q = component(obs, SNOMED, code)["valueQuantity"]
        assert q == {"value": value, "unit": unit, "system": UCUM, "code": unit}
    mean = component(obs, "http://radlex.org", "RID50155")["valueQuantity"]
    assert mean["value"] == pytest.approx(6.3) and mean["code"] == "mm"
    solid = component(obs, "http://radlex.org", "RID50154")["valueQuantity"]
    assert solid["value"] == 3.1


def test_nodule_type_and_calcification_are_coded_components() -> None:
    obs = observe(make(nodule_type=NoduleType.GROUND_GLASS, solid_component_mm=None,
                       calcification=Calcification.POPCORN))
    kind = component(obs, "http://ncicb.nci.nih.gov/xml/owl/EVS/Thesaurus.owl", "C41144")
    assert kind["valueCodeableConcept"]["coding"][0]["code"] == "RID50153"
    calc = component(obs, "http://dicom.nema.org/resources/ontology/DCM", "112030")
    assert calc["valueCodeableConcept"]["coding"][0] == {
        "system": SNOMED, "code": "129749001", "display": "Coarse (popcorn-like) calcification"}


def test_no_calcification_volume_or_solid_part_means_no_such_component() -> None:
    obs = observe(make(nodule_type=NoduleType.SOLID, volume_mm3=None, solid_component_mm=None))
    codes = {cd["code"] for c in obs["component"] for cd in c["code"]["coding"]}
    assert codes == {"103339001", "103340004", "RID50155", "C41144"}


def test_body_site_is_the_lobe_in_snomed() -> None:
    for lobe, code in [(Lobe.RUL, "42400003"), (Lobe.RML, "72481006"), (Lobe.RLL, "266005"),
                       (Lobe.LUL, "44714003"), (Lobe.LLL, "41224006")]:
        assert observe(make(lobe=lobe))["bodySite"]["coding"][0]["code"] == code
    assert "bodySite" not in observe(make(lobe=None))


def test_the_tracking_uid_identifies_the_nodule_the_observation_is_about() -> None:
    obs = observe()
    [nodule] = obs["contained"]
    assert obs["focus"] == [{"reference": "#nodule", "display": "N1"}]  # ref-1 / dom-3
    assert nodule["resourceType"] == "BodyStructure" and nodule["id"] == "nodule"
    assert nodule["patient"] == {"reference": "Patient/p1"}
    by_type = {i["type"]["coding"][0]["code"]: i for i in nodule["identifier"]}
    assert by_type["112039"]["value"] == "N1"
    assert by_type["112040"]["system"] == "urn:dicom:uid"
    assert by_type["112040"]["value"] == f"urn:oid:{TRACKING_UID}"
    assert nodule["location"]["coding"][0]["code"] == "42400003"


def test_two_studies_of_one_nodule_share_the_tracking_uid_not_the_observation() -> None:
    first = observe(make(study_date=date(2024, 1, 2), study_uid="1.2.3.4"))
    later = observe(make(study_date=date(2024, 7, 2), study_uid="1.2.3.9"))
    ids = [o["contained"][0]["identifier"][1]["value"] for o in (first, later)]
    assert ids[0] == ids[1]
    assert first["derivedFrom"] != later["derivedFrom"]


def test_derived_from_names_the_imaging_study_by_reference_and_by_uid() -> None:
    assert observe()["derivedFrom"] == [{
        "type": "ImagingStudy", "reference": "ImagingStudy/s1",
        "identifier": {"system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4"}}]
    logical = observe(imaging_study_reference=None)["derivedFrom"][0]
    assert "reference" not in logical and logical["identifier"]["value"] == "urn:oid:1.2.3.4"


def test_performer_and_method() -> None:
    manual = observe(make(method=Method.MANUAL), performer=None)
    assert manual["performer"] == [{"display": "dr-a"}]
    assert manual["method"]["coding"][0] == {"system": SNOMED, "code": "87982008",
                                             "display": "Manual"}
    semi = observe()
    assert semi["performer"] == [{"display": "dr-a", "reference": "Practitioner/dr-a"}]
    assert "coding" not in semi["method"] and "semi-automatic" in semi["method"]["text"]


@pytest.mark.parametrize("kw", [
    {"patient_reference": "p1"}, {"patient_reference": "Patient/"},
    {"imaging_study_reference": "ImagingStudy 1"}, {"performer": "dr a"},
    {"tracking_uid": "N1"}, {"tracking_uid": "1.02.3"}, {"status": "done"},
])
def test_malformed_references_uids_and_statuses_are_refused(kw: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        observe(**kw)


def test_preliminary_status_and_absolute_references_are_accepted() -> None:
    obs = observe(status="preliminary", patient_reference="https://ehr.example/fhir/Patient/9",
                  imaging_study_reference="urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427")
    assert obs["status"] == "preliminary"


def test_narrative_is_escaped_xhtml() -> None:
    div = observe(label="N<1>")["text"]["div"]
    assert div.startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
    assert "N&lt;1&gt;" in div and "<1>" not in div


def test_bundle_is_a_collection_with_unique_urn_uuid_full_urls() -> None:
    observations = [observe(), observe(make(study_date=date(2025, 1, 1)))]
    b = bundle(observations)
    assert b["resourceType"] == "Bundle" and b["type"] == "collection"
    urls = [e["fullUrl"] for e in b["entry"]]
    assert len(set(urls)) == 2
    assert all(re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", u) for u in urls)
    assert [e["resource"] for e in b["entry"]] == observations


def test_fhir_resources_models_accept_the_observation_and_bundle() -> None:
    from fhir.resources.R4B.bundle import Bundle
    from fhir.resources.R4B.observation import Observation

    for m in (make(), make(method=Method.MANUAL, calcification=Calcification.CENTRAL, lobe=None,
                           volume_mm3=None, solid_component_mm=None,
                           nodule_type=NoduleType.SOLID)):
        parsed = Observation.model_validate(observe(m))
        assert parsed.focus is not None and parsed.focus[0].reference == "#nodule"
        assert parsed.contained is not None
        assert parsed.contained[0].__resource_type__ == "BodyStructure"
    Bundle.model_validate(bundle([observe(), observe(performer=None)]))
