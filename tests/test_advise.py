"""`cloudfilm advise`: the case contract, built from the guideline tables' boundaries.

Vectors come from Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243, Table A/B),
ACR Lung-RADS v2022 (category table, growth note) and the Brock model's published
coefficients (McWilliams et al., NEJM 2013); the expected values are worked by hand here.
"""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys

import pytest

from cloudfilm.domain.advice import CaseError, advise_json

BASE = {"guideline": "fleischner-2017",
        "patient": {"age": 61, "sex": "F", "risk": "low", "family_history": False,
                    "emphysema": False},
        "exam": {"date": "2025-03-01", "baseline": True},
        "nodules": [{"id": "n1", "type": "solid", "long_axis_mm": 6.4, "short_axis_mm": 5.0,
                     "solid_component_mm": None, "volume_mm3": None, "lobe": "RUL",
                     "spiculated": False, "juxtapleural": False, "calcification": "none",
                     "prior": {"date": "2024-03-01", "long_axis_mm": 5.0, "short_axis_mm": 4.6,
                               "volume_mm3": None}}]}


def case(**changes: object) -> dict:
    """BASE with path overrides written with "__" (``nodules__0__long_axis_mm=7``)."""
    data = copy.deepcopy(BASE)
    for path, value in changes.items():
        *parents, last = path.split("__")
        target: object = data
        for key in parents:
            target = target[int(key)] if key.isdigit() else target[key]  # type: ignore[index]
        target[int(last) if last.isdigit() else last] = value  # type: ignore[index]
    return data


def nodule_case(long_: float, short: float, **changes: object) -> dict:
    return case(nodules__0__long_axis_mm=long_, nodules__0__short_axis_mm=short,
                nodules__0__prior=None, **changes)


def run_cli(data: object, *args: str) -> subprocess.CompletedProcess:
    text = data if isinstance(data, str) else json.dumps(data)
    return subprocess.run([sys.executable, "-m", "cloudfilm", "advise", *args], input=text,
                          capture_output=True, text=True, timeout=60)


def test_cli_prints_the_documented_fields() -> None:
    result = run_cli(BASE)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    n1 = out["nodules"][0]
    # (6.4 + 5.0) / 2 = 5.7 mm, which Fleischner rounds half up to 6 mm: the 6-8 mm column.
    assert n1["mean_diameter_mm"] == 5.7
    assert out["category"] == "Table A (solid), single, low risk, 6-8 mm"
    assert out["recommendation"] == "CT at 6-12 months, then consider CT at 18-24 months."
    assert out["next_scan"] == {"earliest": "2025-09-01", "latest": "2026-03-01"}
    assert out["rule"].startswith("Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243), "
                                  "Table A (solid), single, low risk, 6-8 mm")
    assert n1["volume_mm3"] == 97.0  # π·5.7³/6 = 96.97 mm³ (sphere estimate)
    assert n1["volume_source"] == "sphere-estimate"
    assert n1["growth_mm"] == 0.9  # 5.7 - 4.8
    # VDT from diameters: 365 d · ln2 / (3 · ln(5.7/4.8)) = 490.7 d
    assert n1["vdt_days"] == pytest.approx(365 * math.log(2) / (3 * math.log(5.7 / 4.8)), abs=0.05)


@pytest.mark.parametrize("long_, short, column", [
    (5.8, 5.0, "<6 mm"),   # 5.4 -> 5
    (5.9, 5.0, "<6 mm"),   # 5.45 -> 5 (half up works on the exact mean, not 5.5)
    (6.0, 5.0, "6-8 mm"),  # 5.5 -> 6 (half up; Python's round would also give 6 here)
    (7.0, 6.0, "6-8 mm"),  # 6.5 -> 7 (Python's round would give 6)
    (8.8, 8.0, "6-8 mm"),  # 8.4 -> 8, still "6-8 mm" inclusive
    (9.0, 8.0, ">8 mm"),   # 8.5 -> 9
])
def test_fleischner_rounding_and_size_columns(long_: float, short: float, column: str) -> None:
    out = advise_json(nodule_case(long_, short))
    assert out["category"] == f"Table A (solid), single, low risk, {column}"


@pytest.mark.parametrize("risk, size, expected_next", [
    ("low", (5.0, 4.0), None),                                       # no routine follow-up
    ("high", (5.0, 4.0), {"earliest": "2026-03-01", "latest": "2026-03-01"}),  # optional 12 mo
    ("high", (10.0, 9.0), {"earliest": "2025-06-01", "latest": "2025-06-01"}),  # 3 months
])
def test_fleischner_next_scan_window(risk: str, size: tuple[float, float],
                                     expected_next: dict | None) -> None:
    out = advise_json(nodule_case(*size, patient__risk=risk))
    assert out["next_scan"] == expected_next


def test_fleischner_multiple_nodules_most_suspicious_guides() -> None:
    data = nodule_case(5.0, 4.0)
    data["nodules"].append(dict(data["nodules"][0], id="n2", long_axis_mm=7.0, short_axis_mm=6.0))
    out = advise_json(data)
    assert out["category"] == "Table A (solid), multiple, low risk, 6-8 mm"
    assert out["guiding_nodule"] == "n2"
    assert out["next_scan"] == {"earliest": "2025-06-01", "latest": "2025-09-01"}  # 3-6 months


def test_fleischner_subsolid_and_scope() -> None:
    out = advise_json(nodule_case(7.0, 6.0, nodules__0__type="ground-glass"))
    assert out["category"] == "Table B (subsolid), single ground glass, ≥6 mm"
    out = advise_json(nodule_case(7.0, 6.0, patient__age=34))
    assert out["category"] == "not applicable" and out["next_scan"] is None
    assert "age under 35" in out["recommendation"]


def lungrads_case(long_: float, short: float, *, baseline: bool, prior: dict | None = None,
                  **changes: object) -> dict:
    return case(guideline="lung-rads-2022", exam__baseline=baseline,
                nodules__0__long_axis_mm=long_, nodules__0__short_axis_mm=short,
                nodules__0__prior=prior, **changes)


@pytest.mark.parametrize("long_, short, category", [
    (6.0, 5.8, "2"),    # mean 5.9 < 6
    (6.0, 6.0, "3"),    # 6.0: ≥6 to <8
    (8.0, 7.8, "3"),    # 7.9
    (8.0, 8.0, "4A"),   # 8.0: ≥8 to <15
    (15.0, 14.8, "4A"),  # 14.9
    (15.0, 15.0, "4B"),  # ≥15
])
def test_lungrads_baseline_solid_rows(long_: float, short: float, category: str) -> None:
    out = advise_json(lungrads_case(long_, short, baseline=True))
    assert out["category"] == category
    assert out["statuses"] == {"n1": "baseline"}


def test_lungrads_growth_boundary_within_12_months() -> None:
    """Growth means > 1.5 mm mean-diameter increase within 12 months (v2022 Notes)."""
    prior = {"date": "2024-09-01", "long_axis_mm": 5.0, "short_axis_mm": 5.0}
    stable = advise_json(lungrads_case(6.5, 6.5, baseline=False, prior=prior))  # +1.5 mm
    assert stable["statuses"] == {"n1": "stable"}
    growing = advise_json(lungrads_case(6.6, 6.6, baseline=False, prior=prior))  # +1.6 mm
    assert growing["statuses"] == {"n1": "growing"}
    assert growing["category"] == "4A"  # solid, growing <8 mm
    assert growing["next_scan"] == {"earliest": "2025-06-01", "latest": "2025-06-01"}


def test_lungrads_new_nodule_and_stepped_management() -> None:
    new = advise_json(lungrads_case(5.0, 4.0, baseline=False))  # new 4 to <6 mm
    assert new["statuses"] == {"n1": "new"} and new["category"] == "3"
    # A 7 mm baseline nodule (Category 3) stable at its 6-month CT steps down to 2.
    prior = {"date": "2024-09-01", "long_axis_mm": 7.0, "short_axis_mm": 7.0}
    stepped = advise_json(lungrads_case(7.0, 7.0, baseline=False, prior=prior))
    assert stepped["category"] == "2" and stepped["rule_id"] == "LR22-2-cat3-stable-6mo"


def test_brock_probability_matches_the_published_model() -> None:
    out = advise_json(BASE)
    # McWilliams 2013 full model; longest diameter 6.4 mm, female, upper lobe, 1 nodule.
    logit = (-6.7892 + 0.0287 * (61 - 62) + 0.6011 - 5.3854 * ((6.4 / 10) ** -0.5 - 1.58113883)
             + 0.6581 - 0.0824 * (1 - 4))
    assert out["nodules"][0]["brock_probability"] == pytest.approx(1 / (1 + math.exp(-logit)),
                                                                   abs=5e-5)
    no_lobe = advise_json(case(nodules__0__lobe=None))
    assert no_lobe["nodules"][0]["brock_probability"] is None


def test_vdt_from_measured_volumes_and_stable() -> None:
    data = case(nodules__0__volume_mm3=200.0, nodules__0__prior__volume_mm3=100.0)
    out = advise_json(data)
    assert out["nodules"][0]["vdt_days"] == 365.0  # exactly one doubling in 365 days
    shrinking = advise_json(case(nodules__0__volume_mm3=90.0, nodules__0__prior__volume_mm3=100.0))
    assert shrinking["nodules"][0]["vdt_days"] is None  # stable or smaller: no VDT


@pytest.mark.parametrize("changes, field", [
    ({"guideline": "nccn"}, "guideline"),
    ({"patient__age": "old"}, "patient.age"),
    ({"patient__risk": None}, "patient.risk"),
    ({"exam__date": "2025-13-01"}, "exam.date"),
    ({"nodules__0__long_axis_mm": -1}, "nodules[0].long_axis_mm"),
    ({"nodules__0__short_axis_mm": 9.0}, "nodules[0].short_axis_mm"),
    ({"nodules__0__type": "cystic"}, "nodules[0].type"),
    ({"nodules__0__lobe": "XYZ"}, "nodules[0].lobe"),
    ({"nodules__0__solid_component_mm": 2.0}, "nodules[0].solid_component_mm"),
    ({"nodules__0__prior__date": "2026-01-01"}, "nodules[0].prior.date"),
])
def test_bad_input_names_the_field(changes: dict, field: str) -> None:
    with pytest.raises(CaseError) as error:
        advise_json(case(**changes))
    assert error.value.field == field


def test_cli_bad_input_exits_2_with_the_field() -> None:
    result = run_cli(case(nodules__0__long_axis_mm="big"))
    assert result.returncode == 2
    assert "nodules[0].long_axis_mm" in result.stderr and result.stdout == ""
    broken = run_cli("{not json")
    assert broken.returncode == 2 and "not valid JSON" in broken.stderr
