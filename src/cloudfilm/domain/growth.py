"""How a nodule changed between two CTs: size change, volume change, doubling time.

Decision support for a physician, never a diagnosis. Growth is measured, not judged:
the numbers here are what a radiologist would compare, and a nodule that did not
grow gets a doubling time of "stable or smaller", never a negative or infinite one.

Pure logic, no I/O.

Sources:
* Volume doubling time (Schwartz' exponential-growth formula, as used by NELSON and
  BTS 2015): VDT = Δt·ln2 / ln(V2/V1); with diameters only, V ∝ d³ so
  VDT = Δt·ln2 / (3·ln(d2/d1)).
* Lung-RADS v2022 (ACR), Notes, nodule growth: "an increase in mean diameter size of
  > 1.5 mm (> 2 mm³) within a 12-month interval". Only the diameter part is applied
  here: the volume figure as quoted is far below measurement noise and is left to the
  reader. An increase of more than 1.5 mm spread over more than 12 months is reported
  as slow enlargement, not as growth.
* BTS 2015 (Callister et al., Thorax 2015;70 Suppl 2) and NELSON use a VDT of 400 days
  as the threshold for suspicious growth and a 25 % volume increase as significant
  change. The 400-600 day and >600 day bands are from the project's secondary notes
  (not checked against the BTS text) and are labelled as such.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

from cloudfilm.domain.nodule import Measurement, VolumeSource, add_months

LUNGRADS_GROWTH_MM = Decimal("1.5")
LUNGRADS_GROWTH_WINDOW_MONTHS = 12
SIGNIFICANT_VOLUME_CHANGE_PERCENT = 25.0  # NELSON / BTS 2015
SUSPICIOUS_VDT_DAYS = 400.0  # NELSON / BTS 2015


class Basis(str, Enum):
    """What a doubling time was computed from."""

    VOLUME = "volume"  # both volumes measured by software
    DIAMETER = "diameter"  # mean diameters (at least one volume missing)


@dataclass(frozen=True)
class DoublingTime:
    """A volume doubling time, or the statement that the nodule did not grow.

    ``days`` is None exactly when ``stable_or_smaller`` is True (V2 ≤ V1): a VDT is
    only meaningful for growth, so none is reported rather than a negative number.
    """

    days: float | None
    basis: Basis
    interval_days: int

    @property
    def stable_or_smaller(self) -> bool:
        return self.days is None

    def describe(self) -> str:
        if self.days is None:
            return "stable or smaller: no doubling time"
        return f"volume doubling time {self.days:.0f} days ({self.basis.value})"


def _check_interval(interval_days: float) -> None:
    if interval_days <= 0:
        raise ValueError("the follow-up CT must be after the prior CT (interval > 0 days)")


def vdt_from_volumes(v1_mm3: float, v2_mm3: float, interval_days: float) -> float | None:
    """Δt·ln2 / ln(V2/V1) in days; None when V2 ≤ V1 (stable or smaller)."""
    _check_interval(interval_days)
    if v1_mm3 <= 0 or v2_mm3 <= 0:
        raise ValueError("volumes must be positive")
    if v2_mm3 <= v1_mm3:
        return None
    return interval_days * math.log(2) / math.log(v2_mm3 / v1_mm3)


def vdt_from_diameters(d1_mm: float, d2_mm: float, interval_days: float) -> float | None:
    """Δt·ln2 / (3·ln(d2/d1)) in days (sphere assumption); None when d2 ≤ d1."""
    _check_interval(interval_days)
    if d1_mm <= 0 or d2_mm <= 0:
        raise ValueError("diameters must be positive")
    if d2_mm <= d1_mm:
        return None
    return interval_days * math.log(2) / (3 * math.log(d2_mm / d1_mm))


def interval_days(prior: Measurement, current: Measurement) -> int:
    """Days between the two study dates."""
    return (current.study_date - prior.study_date).days


def doubling_time(prior: Measurement, current: Measurement) -> DoublingTime:
    """VDT from measured volumes when both exist, else from mean diameters (and say which)."""
    days = interval_days(prior, current)
    if prior.volume_mm3 is not None and current.volume_mm3 is not None:
        value = vdt_from_volumes(prior.volume_mm3, current.volume_mm3, days)
        return DoublingTime(value, Basis.VOLUME, days)
    value = vdt_from_diameters(float(prior.mean_diameter_mm), float(current.mean_diameter_mm), days)
    return DoublingTime(value, Basis.DIAMETER, days)


@dataclass(frozen=True)
class Change:
    """Size change between two measurements of the same nodule."""

    diameter_change_mm: Decimal  # exact mean-diameter difference
    volume_change_percent: float
    prior_volume_source: VolumeSource
    current_volume_source: VolumeSource
    doubling: DoublingTime

    @property
    def volume_significant(self) -> bool:
        """More than 25 % volume increase (NELSON / BTS 2015 significant growth)."""
        return self.volume_change_percent > SIGNIFICANT_VOLUME_CHANGE_PERCENT


def change(prior: Measurement, current: Measurement) -> Change:
    """Mean-diameter change (mm), volume change (%) and doubling time, with volume sources."""
    v1, s1 = prior.volume
    v2, s2 = current.volume
    return Change(
        diameter_change_mm=current.mean_diameter_mm - prior.mean_diameter_mm,
        volume_change_percent=(v2 - v1) / v1 * 100.0,
        prior_volume_source=s1,
        current_volume_source=s2,
        doubling=doubling_time(prior, current),
    )


@dataclass(frozen=True)
class LungRadsGrowth:
    """Lung-RADS v2022 growth: > 1.5 mm mean-diameter increase within 12 months."""

    increase_mm: Decimal  # difference of the 0.1 mm Lung-RADS means
    within_12_months: bool

    @property
    def growing(self) -> bool:
        """Meets the v2022 definition of growth (the 'G' of the category table)."""
        return self.increase_mm > LUNGRADS_GROWTH_MM and self.within_12_months

    @property
    def slowly_enlarging(self) -> bool:
        """Enlarged by > 1.5 mm, but over more than 12 months: not 'growing' by definition."""
        return self.increase_mm > LUNGRADS_GROWTH_MM and not self.within_12_months


def lungrads_growth(prior: Measurement, current: Measurement) -> LungRadsGrowth:
    """Apply the Lung-RADS v2022 growth note to two measurements (means to 0.1 mm).

    The 12-month window is counted in calendar months from the prior study date.
    """
    _check_interval(interval_days(prior, current))
    limit = add_months(prior.study_date, LUNGRADS_GROWTH_WINDOW_MONTHS)
    return LungRadsGrowth(
        increase_mm=current.lungrads_mean_mm - prior.lungrads_mean_mm,
        within_12_months=current.study_date <= limit,
    )


@dataclass(frozen=True)
class VdtBand:
    """A doubling-time band with the source it comes from (context, not a category)."""

    key: str
    text: str
    citation: str


_UNCHECKED_BAND = "BTS 2015 as summarised in secondary notes (band not checked in the BTS text)"


def vdt_band(doubling: DoublingTime) -> VdtBand:
    """Place a doubling time in the NELSON/BTS bands; growth-free nodules get their own band."""
    if doubling.days is None:
        return VdtBand("stable", "no growth: no doubling time",
                       "VDT undefined when V2 ≤ V1")
    if doubling.days < SUSPICIOUS_VDT_DAYS:
        return VdtBand("lt400", "VDT < 400 days: growth in the range that prompts work-up",
                       "NELSON; BTS 2015 (Callister et al., Thorax 2015;70 Suppl 2): VDT < 400 d")
    if doubling.days <= 600:
        return VdtBand("400to600", "VDT 400-600 days: indeterminate", _UNCHECKED_BAND)
    return VdtBand("gt600", "VDT > 600 days: slow growth", _UNCHECKED_BAND)
