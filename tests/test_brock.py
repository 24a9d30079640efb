"""Brock (PanCan) full model with spiculation (McWilliams et al., NEJM 2013;369:910-919).

No worked example from the paper itself was available, so expected values come from
two independent routes, both written out here from published coefficients:

1. a hand calculation of the centred model as printed in the paper / project notes
   (each term worked below), and
2. the same model written uncentred, as tabulated in Eur Radiol 2019;29:5367
   (PMC6717521, Table 2, Brock column: intercept 0.2761, raw age and nodule count,
   size term -5.3854·(d/10)^-0.5). Its intercept equals
   -6.7892 - 0.0287·62 + 5.3854·1.58113883 + 0.0824·4 = 0.27614, so the two forms
   must agree to within the rounding of 0.2761.
"""

from __future__ import annotations

import math
from datetime import date

import pytest

from cloudfilm.domain.brock import BrockInputs, probability
from cloudfilm.domain.nodule import Lobe, Measurement, Morphology, NoduleType

SOLID, PS, GGN = NoduleType.SOLID, NoduleType.PART_SOLID, NoduleType.GROUND_GLASS


def inputs(age: float = 62, female: bool = False, family: bool = False, emphysema: bool = False,
           size: float = 4.0, kind: NoduleType = SOLID, upper: bool = False, count: int = 4,
           spiculated: bool = False) -> BrockInputs:
    return BrockInputs(age_years=age, female=female, family_history_lung_cancer=family,
                       emphysema=emphysema, longest_diameter_mm=size, nodule_type=kind,
                       upper_lobe=upper, nodule_count=count, spiculation=spiculated)


def uncentred_logit(i: BrockInputs) -> float:
    """Eur Radiol 2019 Table 2 (Brock column), typed in independently of the module."""
    return (0.2761 + 0.0287 * i.age_years + 0.6011 * i.female
            + 0.2961 * i.family_history_lung_cancer + 0.2953 * i.emphysema
            - 5.3854 * (i.longest_diameter_mm / 10) ** -0.5
            + 0.377 * (i.nodule_type is PS) - 0.1276 * (i.nodule_type is GGN)
            + 0.6581 * i.upper_lobe - 0.0824 * i.nodule_count + 0.7729 * i.spiculation)


def test_reference_nodule_is_the_intercept() -> None:
    """62 years, male, no history, solid 4 mm, lower lobe, 4 nodules: every centred term is 0."""
    result = probability(inputs())
    assert result.logit == pytest.approx(-6.7892, abs=1e-6)
    # 1 / (1 + e^6.7892) = 0.0011246
    assert result.probability == pytest.approx(0.0011246, abs=1e-7)


def test_hand_worked_example() -> None:
    """70-year-old woman, family history, emphysema, 12 mm part-solid, upper lobe,
    2 nodules, spiculated. Terms by hand from the published coefficients:
        intercept            -6.7892
        age       0.0287·8   +0.2296
        female               +0.6011
        family history       +0.2961
        emphysema            +0.2953
        size  -5.3854·(1.2^-0.5 - 1.58113883) = -5.3854·(0.9128709 - 1.5811388) = +3.5988905
        part-solid           +0.3770
        upper lobe           +0.6581
        count  -0.0824·(2-4) +0.1648
        spiculation          +0.7729
        logit = 0.2045900;  p = 1/(1+e^-0.20459) = 0.5509698
    """
    result = probability(inputs(70, True, True, True, 12.0, PS, True, 2, True))
    assert result.logit == pytest.approx(0.2045900, abs=1e-6)
    assert result.probability == pytest.approx(0.5509698, abs=1e-6)
    assert result.per_hundred == pytest.approx(55.09698, abs=1e-4)
    terms = dict(result.terms)
    assert terms["nodule size"] == pytest.approx(3.5988905, abs=1e-6)
    assert terms["nodule count"] == pytest.approx(0.1648)
    assert terms["non-solid"] == 0


@pytest.mark.parametrize("case", [
    inputs(),
    inputs(70, True, True, True, 12.0, PS, True, 2, True),
    inputs(55, size=8.0, count=1),
    inputs(65, emphysema=True, size=6.0, kind=GGN, upper=True, count=3),
    inputs(80, True, size=25.0, upper=True, count=12, spiculated=True),
    inputs(50, size=1.0, count=1),
])
def test_centred_and_uncentred_forms_agree(case: BrockInputs) -> None:
    assert probability(case).logit == pytest.approx(uncentred_logit(case), abs=1e-4)


def test_terms_sum_to_the_logit_and_are_in_paper_order() -> None:
    result = probability(inputs(70, True, True, True, 12.0, PS, True, 2, True))
    assert [name for name, _ in result.terms] == [
        "intercept", "age", "female", "family history of lung cancer", "emphysema",
        "nodule size", "part-solid", "non-solid", "upper lobe", "nodule count", "spiculation"]
    assert math.fsum(v for _, v in result.terms) == pytest.approx(result.logit)
    assert result.probability == pytest.approx(1 / (1 + math.exp(-result.logit)))


def test_directions_of_effect() -> None:
    base = probability(inputs(size=8.0)).probability
    assert probability(inputs(size=12.0)).probability > base
    assert probability(inputs(size=8.0, count=8)).probability < base      # more nodules, lower risk
    assert probability(inputs(size=8.0, kind=GGN)).probability < base     # non-solid −0.1276
    assert probability(inputs(size=8.0, kind=PS)).probability > base      # part-solid +0.377
    assert probability(inputs(size=8.0, spiculated=True)).probability > base
    assert probability(inputs(size=8.0, upper=True)).probability > base


def make(long: float, short: float, lobe: Lobe | None, **kw) -> Measurement:
    return Measurement(study_uid="1.2.3", series_uid="1.2.3.4", instance_uid="1.2.3.4.5",
                       centre_mm=(0.0, 0.0, 0.0), long_axis_mm=long, short_axis_mm=short,
                       nodule_type=kw.pop("nodule_type", SOLID), study_date=date(2024, 1, 1),
                       measured_by="dr-a", lobe=lobe, **kw)


def test_from_measurement_uses_the_longest_diameter() -> None:
    m = make(10.0, 6.0, Lobe.parse("lingula"), morphology=Morphology(spiculated=True))
    i = BrockInputs.from_measurement(m, age_years=60, female=False,
                                     family_history_lung_cancer=False, emphysema=False,
                                     nodule_count=1)
    assert i.longest_diameter_mm == 10.0  # not the 8.0 mm mean
    assert i.upper_lobe and i.spiculation and i.nodule_type is SOLID


def test_from_measurement_needs_the_lobe() -> None:
    with pytest.raises(ValueError):
        BrockInputs.from_measurement(make(10.0, 6.0, None), age_years=60, female=False,
                                     family_history_lung_cancer=False, emphysema=False,
                                     nodule_count=1)


@pytest.mark.parametrize("bad", [dict(size=0.0), dict(count=0), dict(age=0)])
def test_invalid_inputs_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        inputs(**bad)
