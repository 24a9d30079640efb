"""A guideline case in, a follow-up recommendation out: the ``cloudfilm advise`` contract.

Why one module: the CLI, the API and the nodule service all turn "this patient, this
exam, these nodules" into the same answer (category, recommendation, next-scan window,
the rule row that fired, and per-nodule size, growth, doubling time and Brock
probability). Pure logic: a JSON-shaped dict in, a JSON-shaped dict out; every error
names the input field it is about (`CaseError.field`).

Reading choices, each a documented default that the input can override:

* Lung-RADS status: ``exam.baseline`` true makes every nodule "B" (first screening CT).
  Otherwise a nodule without a prior is "N" (new), and one with a prior is growing,
  slowly growing or stable by the v2022 growth note (`lungrads.status_from_prior`).
* A stable nodule needs its category on the prior CT (stepped management). When
  ``prior.category`` is not given, the prior measurement is classed by the baseline size
  rows of v2022, which is what it would have scored when it was first seen.
* ``juxtapleural: true`` means the reader judged it a typical juxtapleural/perifissural
  nodule: smooth margins and oval, lentiform or triangular shape (Lung-RADS v2022
  Category 2, juxtapleural row) unless it is spiculated or ``smooth_margins`` /
  ``benign_shape`` say otherwise.
* Brock (PanCan) uses the longest axis, the lobe (upper-lobe term) and the number of
  nodules in the case; without a lobe its probability is null rather than a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

from cloudfilm.domain import brock, fleischner, lungrads
from cloudfilm.domain.growth import doubling_time
from cloudfilm.domain.nodule import (
    TENTH_MM,
    Airway,
    Calcification,
    Lobe,
    Measurement,
    Morphology,
    NoduleType,
    round_half_up,
)

GUIDELINES = ("fleischner-2017", "lung-rads-2022")
_NO_IMAGE = "(no image: advise input)"


class CaseError(ValueError):
    """Bad input, with the dotted path of the field (e.g. ``nodules[0].long_axis_mm``)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


# -- reading the case ------------------------------------------------------------------

def _path(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _get(obj: object, key: str, where: str, *, required: bool = True) -> Any:
    if not isinstance(obj, dict):
        raise CaseError(where or "(input)", "must be an object")
    if key not in obj or obj[key] is None:
        if required:
            raise CaseError(_path(where, key), "is required")
        return None
    return obj[key]


def _as_number(value: object, name: str, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CaseError(name, f"must be a number, not {value!r}")
    if positive and value <= 0:
        raise CaseError(name, "must be greater than 0")
    return float(value)


def _number(obj: object, key: str, where: str, *, positive: bool = True) -> float:
    return _as_number(_get(obj, key, where), _path(where, key), positive)


def _optional_number(obj: object, key: str, where: str, *, positive: bool = True) -> float | None:
    value = _get(obj, key, where, required=False)
    return None if value is None else _as_number(value, _path(where, key), positive)


def _flag(obj: object, key: str, where: str, default: bool = False) -> bool:
    value = obj.get(key) if isinstance(obj, dict) else None
    if value is None:
        return default
    if not isinstance(value, bool):
        raise CaseError(_path(where, key), f"must be true or false, not {value!r}")
    return value


def _optional_choice(obj: object, key: str, where: str, options: tuple[str, ...]) -> str | None:
    value = _get(obj, key, where, required=False)
    if value is None:
        return None
    if value not in options:
        raise CaseError(_path(where, key), f"must be one of {', '.join(options)}; got {value!r}")
    return str(value)


def _choice(obj: object, key: str, where: str, options: tuple[str, ...], *,
            default: str | None = None) -> str:
    """A required choice, or ``default`` when the field is absent and a default is given."""
    value = _optional_choice(obj, key, where, options)
    if value is not None:
        return value
    if default is None:
        raise CaseError(_path(where, key), "is required")
    return default


def _date(obj: object, key: str, where: str) -> date:
    value = _get(obj, key, where)
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise CaseError(_path(where, key), f"must be a date YYYY-MM-DD, not {value!r}") from None


@dataclass(frozen=True)
class Subject:
    age: int
    female: bool
    risk: fleischner.Risk | None
    family_history: bool
    emphysema: bool
    screening: bool
    known_cancer: bool
    immunosuppressed: bool


@dataclass(frozen=True)
class CaseNodule:
    id: str
    current: Measurement
    prior: Measurement | None
    prior_category: lungrads.Category | None
    suspicious_features: bool


@dataclass(frozen=True)
class Case:
    guideline: str
    subject: Subject
    exam_date: date
    baseline: bool
    nodules: tuple[CaseNodule, ...]
    priors_being_located: bool = False
    lungs_not_evaluable: bool = False
    infection_suspected: bool = False


def _subject(data: dict[str, Any], guideline: str) -> Subject:
    p = _get(data, "patient", "")
    age = _number(p, "age", "patient")
    if age != int(age) or not 0 < age < 130:
        raise CaseError("patient.age", "must be whole years between 1 and 129")
    sex = _choice(p, "sex", "patient", ("F", "M", "O", "U"))
    risks = ("low", "high")
    risk = (_choice(p, "risk", "patient", risks) if guideline == "fleischner-2017"
            else _optional_choice(p, "risk", "patient", risks))
    return Subject(int(age), sex == "F", fleischner.Risk(risk) if risk else None,
                   _flag(p, "family_history", "patient"), _flag(p, "emphysema", "patient"),
                   _flag(p, "screening", "patient"), _flag(p, "known_cancer", "patient"),
                   _flag(p, "immunosuppressed", "patient"))


def _morphology(n: dict[str, Any], where: str) -> Morphology:
    spiculated = _flag(n, "spiculated", where)
    juxtapleural = _flag(n, "juxtapleural", where)
    airway = _choice(n, "airway", where, tuple(a.value for a in Airway), default="none")
    return Morphology(
        spiculated=spiculated, juxtapleural=juxtapleural,
        smooth_margins=_flag(n, "smooth_margins", where, juxtapleural and not spiculated),
        benign_shape=_flag(n, "benign_shape", where, juxtapleural),
        contains_fat=_flag(n, "contains_fat", where), airway=Airway(airway))


def _measurement(n: dict[str, Any], where: str, *, when: date, kind: NoduleType,
                 lobe: Lobe | None, calcification: Calcification, morphology: Morphology,
                 solid: float | None) -> Measurement:
    long_axis = _number(n, "long_axis_mm", where)
    short_axis = _number(n, "short_axis_mm", where)
    if short_axis > long_axis:
        raise CaseError(f"{where}.short_axis_mm", "is longer than long_axis_mm")
    if solid is not None and solid > long_axis:
        raise CaseError(f"{where}.solid_component_mm", "is larger than the nodule")
    try:
        return Measurement(
            study_uid=_NO_IMAGE, series_uid=_NO_IMAGE, instance_uid=_NO_IMAGE,
            centre_mm=(0.0, 0.0, 0.0), long_axis_mm=long_axis, short_axis_mm=short_axis,
            nodule_type=kind, study_date=when, measured_by="advise input",
            solid_component_mm=solid, volume_mm3=_optional_number(n, "volume_mm3", where),
            calcification=calcification, morphology=morphology, lobe=lobe)
    except ValueError as error:
        raise CaseError(where, str(error)) from None


def _nodule(n: dict[str, Any], i: int, exam_date: date) -> CaseNodule:
    where = f"nodules[{i}]"
    ident = _get(n, "id", where)
    if not isinstance(ident, str) or not ident:
        raise CaseError(f"{where}.id", "must be a non-empty string")
    kind = NoduleType(_choice(n, "type", where, tuple(t.value for t in NoduleType)))
    solid = _optional_number(n, "solid_component_mm", where)
    if solid is not None and kind is not NoduleType.PART_SOLID:
        raise CaseError(f"{where}.solid_component_mm", "only a part-solid nodule has one")
    lobe_text = _get(n, "lobe", where, required=False)
    try:
        lobe = Lobe.parse(lobe_text) if lobe_text else None
    except ValueError as error:
        raise CaseError(f"{where}.lobe", str(error)) from None
    calcification = Calcification(_choice(n, "calcification", where,
                                          tuple(c.value for c in Calcification), default="none"))
    morphology = _morphology(n, where)
    current = _measurement(n, where, when=exam_date, kind=kind, lobe=lobe,
                           calcification=calcification, morphology=morphology, solid=solid)
    prior_data = n.get("prior")
    prior, prior_category = None, None
    if prior_data is not None:
        pwhere = f"{where}.prior"
        when = _date(prior_data, "date", pwhere)
        if when >= exam_date:
            raise CaseError(f"{pwhere}.date", "must be before exam.date")
        prior_solid = _optional_number(prior_data, "solid_component_mm", pwhere)
        prior = _measurement(prior_data, pwhere, when=when, kind=kind, lobe=lobe,
                             calcification=calcification, morphology=morphology,
                             solid=prior_solid if kind is NoduleType.PART_SOLID else None)
        category = _optional_choice(prior_data, "category", pwhere,
                                    tuple(c.value for c in lungrads.Category))
        prior_category = lungrads.Category(category) if category else None
    return CaseNodule(ident, current, prior, prior_category,
                      _flag(n, "suspicious_features", where))


def parse_case(data: Any) -> Case:
    """Validate the ``advise`` input; raises `CaseError` naming the first bad field."""
    if not isinstance(data, dict):
        raise CaseError("(input)", "must be a JSON object")
    guideline = _choice(data, "guideline", "", GUIDELINES)
    subject = _subject(data, guideline)
    exam = _get(data, "exam", "")
    exam_date = _date(exam, "date", "exam")
    nodules = _get(data, "nodules", "")
    if not isinstance(nodules, list):
        raise CaseError("nodules", "must be a list (empty when there are none)")
    parsed = tuple(_nodule(n, i, exam_date) for i, n in enumerate(nodules))
    ids = [n.id for n in parsed]
    if len(set(ids)) != len(ids):
        raise CaseError("nodules", "ids must be unique")
    if guideline == "fleischner-2017" and not parsed:
        raise CaseError("nodules", "Fleischner 2017 needs at least one nodule")
    return Case(guideline, subject, exam_date, _flag(exam, "baseline", "exam"), parsed,
                _flag(exam, "priors_being_located", "exam"),
                _flag(exam, "lungs_not_evaluable", "exam"),
                _flag(exam, "infection_suspected", "exam"))


# -- answering it --------------------------------------------------------------------------

def fleischner_cell(rule: fleischner.Rule) -> str:
    """The Table cell a row stands for, e.g. "Table A (solid), single, low risk, <6 mm".

    Taken from the row's citation (MacMahon et al. 2017, Table) without the volume
    equivalent and the Recommendation number, so it reads as the table's own labels.
    """
    where = rule.citation.removeprefix(f"{fleischner.SOURCE}, ").split(";")[0]
    return where.split(" (<")[0].split(" (≥")[0].split(" (1")[0].split(" (>")[0].strip()


def _one_decimal(value: float | Decimal) -> float:
    return float(round_half_up(value, TENTH_MM))


def _nodule_numbers(case: Case, n: CaseNodule) -> dict[str, Any]:
    m = n.current
    growth_mm = vdt = None
    if n.prior is not None:
        growth_mm = _one_decimal(m.mean_diameter_mm - n.prior.mean_diameter_mm)
        days = doubling_time(n.prior, m).days
        vdt = None if days is None else _one_decimal(days)
    probability = None
    if m.lobe is not None:
        inputs = brock.BrockInputs.from_measurement(
            m, age_years=case.subject.age, female=case.subject.female,
            family_history_lung_cancer=case.subject.family_history,
            emphysema=case.subject.emphysema, nodule_count=len(case.nodules))
        probability = round(brock.probability(inputs).probability, 4)
    volume, source = m.volume
    return {"id": n.id, "mean_diameter_mm": _one_decimal(m.mean_diameter_mm),
            "volume_mm3": _one_decimal(volume), "volume_source": source.value,
            "growth_mm": growth_mm, "vdt_days": vdt, "brock_probability": probability}


def _window(window: tuple[date, date] | None) -> dict[str, str] | None:
    if window is None:
        return None
    return {"earliest": window[0].isoformat(), "latest": window[1].isoformat()}


def _fleischner(case: Case) -> dict[str, Any]:
    s = case.subject
    patient = fleischner.Patient(age_years=s.age, risk=s.risk or fleischner.Risk.LOW,
                                 screening=s.screening, known_cancer=s.known_cancer,
                                 immunosuppressed=s.immunosuppressed)
    result = fleischner.assess(patient, [n.current for n in case.nodules])
    rule = result.rule
    if not result.applicable or rule is None:
        return {"category": "not applicable", "recommendation": "; ".join(result.reasons),
                "next_scan": None, "rule": f"{fleischner.SOURCE}, Table note (scope)",
                "rule_id": "F17-scope", "guiding_nodule": None}
    guiding = case.nodules[result.guiding.index].id if result.guiding else None
    out = {"category": fleischner_cell(rule), "recommendation": rule.text,
           "next_scan": _window(result.next_scan_window(case.exam_date)),
           "rule": rule.citation, "rule_id": rule.row_id, "guiding_nodule": guiding}
    if result.guiding and result.guiding.classes_disagree:
        out["note"] = ("the measured volume and the rounded diameter fall in different size "
                       "columns; the volume was used")
    return out


def _status(case: Case, n: CaseNodule) -> lungrads.Status:
    if case.baseline:
        return lungrads.Status.BASELINE
    if n.prior is None:
        return lungrads.Status.NEW
    return lungrads.status_from_prior(n.prior, n.current)


def _prior_category(i: int, n: CaseNodule, status: lungrads.Status) -> lungrads.Category | None:
    if n.prior_category is not None or status not in lungrads.STABLE_LIKE or n.prior is None:
        return n.prior_category
    if n.prior.benign_appearance:
        return lungrads.Category.ONE
    try:
        return lungrads.size_rule(n.prior, lungrads.Status.BASELINE).category
    except ValueError as error:
        raise CaseError(f"nodules[{i}].prior", str(error)) from None


def _lungrads(case: Case) -> dict[str, Any]:
    findings = []
    for i, n in enumerate(case.nodules):
        status = _status(case, n)
        findings.append(lungrads.Finding(
            measurement=n.current, status=status, prior_category=_prior_category(i, n, status),
            prior=n.prior, suspicious_features=n.suspicious_features))
    try:
        result = lungrads.classify_exam(
            findings, priors_being_located=case.priors_being_located,
            lungs_not_evaluable=case.lungs_not_evaluable,
            infection_suspected=case.infection_suspected)
    except ValueError as error:
        raise CaseError("nodules", str(error)) from None
    recommendation = result.management.text
    guiding = case.nodules[result.guiding].id if result.guiding is not None else None
    out = {"category": result.category.value, "recommendation": recommendation,
           "next_scan": _window(result.next_scan_window(case.exam_date)),
           "rule": result.rule.citation, "rule_id": result.rule.row_id,
           "guiding_nodule": guiding,
           "statuses": {n.id: f.status.value for n, f in zip(case.nodules, findings, strict=True)}}
    if result.rule.extrapolated:
        out["note"] = "this row is the project's reading where the table is silent"
    return out


def advise(case: Case) -> dict[str, Any]:
    """The exam's guideline result plus each nodule's numbers, as the CLI prints them."""
    exam = _fleischner(case) if case.guideline == "fleischner-2017" else _lungrads(case)
    return exam | {"guideline": case.guideline,
                   "nodules": [_nodule_numbers(case, n) for n in case.nodules],
                   "disclaimer": "Decision support for a physician, not a diagnosis."}


def advise_json(data: Any) -> dict[str, Any]:
    """`parse_case` then `advise`."""
    return advise(parse_case(data))
