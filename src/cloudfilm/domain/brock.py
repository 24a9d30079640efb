"""Brock (PanCan) probability that a nodule seen on a first screening CT is cancer.

Decision support for a physician, never a diagnosis: a population estimate from a
screening cohort (PanCan), shown with every term of the sum so a clinician can see
what drives it.

Source: McWilliams A, et al. Probability of Cancer in Pulmonary Nodules Detected on
First Screening CT. N Engl J Med 2013;369:910-919 (PMC3951177), full model with
spiculation. Logistic model:

    logit = -6.7892
            + 0.0287·(age - 62)
            + 0.6011·female
            + 0.2961·family history of lung cancer
            + 0.2953·emphysema
            - 5.3854·((size/10)^-0.5 - 1.58113883)
            + 0.3770·part-solid
            - 0.1276·non-solid (ground glass)
            + 0.6581·upper lobe
            - 0.0824·(nodule count - 4)
            + 0.7729·spiculation
    p = 1 / (1 + e^-logit)

Coding: binary predictors are 1 when present; nodule type is solid (reference, 0),
part-solid or non-solid; "upper lobe" is the right or left upper lobe (the lingula is
part of the left upper lobe); nodule count is every nodule reported on the scan. Age
and count are centred on 62 years and 4 nodules, and the size term on 4 mm
(1.58113883 = (4/10)^-0.5), so a 62-year-old's solid 4 mm lower-lobe nodule among 4
contributes only the intercept.

Size is the nodule's longest (maximum) diameter in mm, not the mean of two axes:
later PanCan work describes the model's input as the "radiologist-measured maximum
diameter" (J Thorac Oncol, doi:10.1016/j.jtho.2018.10.006) and van Riel et al. (Eur
Radiol 2017;27:4019) apply it with the longest axial diameter. `from_measurement` therefore
uses ``long_axis_mm``.

The coefficients above are as transcribed in the project notes; they agree with the
Brock column of Table 2 in Eur Radiol 2019;29:5367 (PMC6717521), which also gives the
same model uncentred with intercept 0.2761.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cloudfilm.domain.nodule import Measurement, NoduleType

INTERCEPT = -6.7892
AGE = 0.0287
AGE_CENTRE = 62.0
FEMALE = 0.6011
FAMILY_HISTORY = 0.2961
EMPHYSEMA = 0.2953
SIZE = -5.3854
SIZE_CENTRE = 1.58113883  # (4 mm / 10) ** -0.5
PART_SOLID = 0.3770
NON_SOLID = -0.1276
UPPER_LOBE = 0.6581
COUNT = -0.0824
COUNT_CENTRE = 4
SPICULATION = 0.7729


@dataclass(frozen=True)
class BrockInputs:
    """The model's predictors, as the paper codes them."""

    age_years: float
    female: bool
    family_history_lung_cancer: bool
    emphysema: bool
    longest_diameter_mm: float
    nodule_type: NoduleType
    upper_lobe: bool
    nodule_count: int
    spiculation: bool

    def __post_init__(self) -> None:
        if self.longest_diameter_mm <= 0:
            raise ValueError("nodule size must be positive (mm)")
        if self.nodule_count < 1:
            raise ValueError("the nodule count includes this nodule, so it is at least 1")
        if not 0 < self.age_years < 130:
            raise ValueError("age must be in years")

    @classmethod
    def from_measurement(cls, m: Measurement, *, age_years: float, female: bool,
                         family_history_lung_cancer: bool, emphysema: bool,
                         nodule_count: int) -> BrockInputs:
        """Nodule predictors from a measurement: longest axis, type, lobe and spiculation."""
        if m.lobe is None:
            raise ValueError("the lobe is needed for the upper-lobe term")
        return cls(age_years=age_years, female=female,
                   family_history_lung_cancer=family_history_lung_cancer, emphysema=emphysema,
                   longest_diameter_mm=m.long_axis_mm, nodule_type=m.nodule_type,
                   upper_lobe=m.upper_lobe, nodule_count=nodule_count,
                   spiculation=m.morphology.spiculated)


@dataclass(frozen=True)
class BrockResult:
    """Probability and the terms of the logit, in the paper's order (intercept first)."""

    probability: float
    logit: float
    terms: tuple[tuple[str, float], ...]

    @property
    def per_hundred(self) -> float:
        """"About X in 100", the way patients are told risk."""
        return self.probability * 100


def probability(inputs: BrockInputs) -> BrockResult:
    """Full PanCan model with spiculation (McWilliams et al., NEJM 2013)."""
    terms = (
        ("intercept", INTERCEPT),
        ("age", AGE * (inputs.age_years - AGE_CENTRE)),
        ("female", FEMALE * inputs.female),
        ("family history of lung cancer", FAMILY_HISTORY * inputs.family_history_lung_cancer),
        ("emphysema", EMPHYSEMA * inputs.emphysema),
        ("nodule size", SIZE * ((inputs.longest_diameter_mm / 10) ** -0.5 - SIZE_CENTRE)),
        ("part-solid", PART_SOLID * (inputs.nodule_type is NoduleType.PART_SOLID)),
        ("non-solid", NON_SOLID * (inputs.nodule_type is NoduleType.GROUND_GLASS)),
        ("upper lobe", UPPER_LOBE * inputs.upper_lobe),
        ("nodule count", COUNT * (inputs.nodule_count - COUNT_CENTRE)),
        ("spiculation", SPICULATION * inputs.spiculation),
    )
    logit = math.fsum(value for _, value in terms)
    return BrockResult(1 / (1 + math.exp(-logit)), logit, terms)
