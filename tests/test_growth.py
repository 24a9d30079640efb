"""Growth: diameter and volume change, volume doubling time, Lung-RADS growth.

Expected doubling times are worked from VDT = Δt·ln2/ln(V2/V1) (and its diameter
form Δt·ln2/(3·ln(d2/d1))): a volume that exactly doubles in Δt has VDT = Δt.
"""

from __future__ import annotations

import math
from datetime import date, timedelta
from decimal import Decimal

import pytest

from cloudfilm.domain.growth import (
    Basis,
    DoublingTime,
    change,
    doubling_time,
    lungrads_growth,
    vdt_band,
    vdt_from_diameters,
    vdt_from_volumes,
)
from cloudfilm.domain.nodule import Measurement, NoduleType, VolumeSource, add_months

DAY0 = date(2023, 1, 15)


def make(long: float, short: float | None = None, *, when: date = DAY0, **kw) -> Measurement:
    fields = dict(study_uid="1.2.3", series_uid="1.2.3.4", instance_uid="1.2.3.4.5",
                  centre_mm=(0.0, 0.0, 0.0), long_axis_mm=long,
                  short_axis_mm=long if short is None else short, nodule_type=NoduleType.SOLID,
                  study_date=when, measured_by="dr-a")
    fields.update(kw)
    return Measurement(**fields)


# -- the formulas ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("v1", "v2", "days", "vdt"), [
    (100.0, 200.0, 100, 100.0),   # doubled in 100 days
    (100.0, 400.0, 300, 150.0),   # two doublings in 300 days
    (100.0, 150.0, 365, 365 * math.log(2) / math.log(1.5)),
])
def test_vdt_from_volumes(v1: float, v2: float, days: int, vdt: float) -> None:
    assert vdt_from_volumes(v1, v2, days) == pytest.approx(vdt)


def test_vdt_from_diameters_is_the_volume_formula_for_spheres() -> None:
    d1, d2, days = 6.0, 6.0 * 2 ** (1 / 3), 90  # the sphere's volume doubles
    assert vdt_from_diameters(d1, d2, days) == pytest.approx(90.0)
    expected = 200 * math.log(2) / (3 * math.log(8.0 / 6.0))
    assert vdt_from_diameters(6.0, 8.0, 200) == pytest.approx(expected)


@pytest.mark.parametrize(("v1", "v2"), [(100.0, 100.0), (100.0, 99.0), (100.0, 1.0)])
def test_vdt_undefined_when_not_growing(v1: float, v2: float) -> None:
    assert vdt_from_volumes(v1, v2, 180) is None
    assert vdt_from_diameters(v1, v2, 180) is None


@pytest.mark.parametrize("days", [0, -5])
def test_follow_up_must_be_later(days: int) -> None:
    with pytest.raises(ValueError):
        vdt_from_volumes(100.0, 200.0, days)
    with pytest.raises(ValueError):
        vdt_from_diameters(5.0, 6.0, days)


def test_non_positive_sizes_refused() -> None:
    with pytest.raises(ValueError):
        vdt_from_volumes(0.0, 10.0, 30)
    with pytest.raises(ValueError):
        vdt_from_diameters(-1.0, 10.0, 30)


# -- from measurements -----------------------------------------------------------------------------

def test_doubling_time_uses_measured_volumes_when_both_exist() -> None:
    prior = make(6.0, volume_mm3=100.0)
    current = make(7.0, volume_mm3=200.0, when=DAY0 + timedelta(days=120))
    dt = doubling_time(prior, current)
    assert dt.basis is Basis.VOLUME and dt.days == pytest.approx(120.0)
    assert dt.interval_days == 120 and "120 days" in dt.describe()


@pytest.mark.parametrize("prior_volume", [None, 100.0])
def test_doubling_time_falls_back_to_diameters(prior_volume: float | None) -> None:
    prior = make(6.0, volume_mm3=prior_volume)
    current = make(8.0, when=DAY0 + timedelta(days=200))
    dt = doubling_time(prior, current)
    assert dt.basis is Basis.DIAMETER
    assert dt.days == pytest.approx(200 * math.log(2) / (3 * math.log(8.0 / 6.0)))


def test_shrinking_nodule_has_no_doubling_time() -> None:
    dt = doubling_time(make(8.0), make(6.0, when=DAY0 + timedelta(days=90)))
    assert dt.days is None and dt.stable_or_smaller
    assert dt.describe() == "stable or smaller: no doubling time"


def test_change_reports_diameter_volume_and_sources() -> None:
    prior = make(6.3, 5.7, volume_mm3=100.0)
    current = make(7.9, 7.3, when=DAY0 + timedelta(days=180))
    result = change(prior, current)
    assert result.diameter_change_mm == Decimal("1.6")  # 6.0 -> 7.6, exact
    assert result.prior_volume_source is VolumeSource.MEASURED
    assert result.current_volume_source is VolumeSource.SPHERE_ESTIMATE
    sphere = math.pi * 7.6 ** 3 / 6
    assert result.volume_change_percent == pytest.approx((sphere - 100.0) / 100.0 * 100)
    assert result.doubling.basis is Basis.DIAMETER


@pytest.mark.parametrize(("v2", "significant"), [(125.0, False), (125.1, True), (90.0, False)])
def test_25_percent_volume_change(v2: float, significant: bool) -> None:
    prior = make(6.0, volume_mm3=100.0)
    current = make(6.0, volume_mm3=v2, when=DAY0 + timedelta(days=90))
    assert change(prior, current).volume_significant is significant


# -- Lung-RADS v2022 growth: > 1.5 mm mean diameter within 12 months -------------------------------

@pytest.mark.parametrize(("before", "after", "increase", "growing"), [
    (6.0, 7.5, "1.5", False),
    (6.0, 7.6, "1.6", True),
    ((6.1, 6.0), (7.6, 7.6), "1.5", False),  # 6.05 -> 6.1 (to 0.1 mm), 7.6 - 6.1 = 1.5
    (10.0, 8.0, "-2.0", False),
])
def test_lungrads_growth_threshold(before, after, increase: str, growing: bool) -> None:
    b = before if isinstance(before, tuple) else (before, before)
    a = after if isinstance(after, tuple) else (after, after)
    prior = make(*b)
    current = make(*a, when=add_months(DAY0, 6))
    g = lungrads_growth(prior, current)
    assert g.increase_mm == Decimal(increase) and g.growing is growing


@pytest.mark.parametrize(("when", "within"), [
    (date(2024, 1, 15), True),   # exactly 12 months
    (date(2024, 1, 16), False),  # one day more
    (date(2023, 4, 15), True),
])
def test_lungrads_growth_window(when: date, within: bool) -> None:
    g = lungrads_growth(make(6.0), make(8.0, when=when))
    assert g.within_12_months is within
    assert g.growing is within and g.slowly_enlarging is (not within)


def test_window_from_a_leap_day() -> None:
    prior = make(6.0, when=date(2024, 2, 29))
    assert lungrads_growth(prior, make(8.0, when=date(2025, 2, 28))).growing
    assert not lungrads_growth(prior, make(8.0, when=date(2025, 3, 1))).growing


def test_lungrads_growth_needs_a_later_scan() -> None:
    with pytest.raises(ValueError):
        lungrads_growth(make(6.0), make(8.0))


# -- doubling-time bands (context only) ------------------------------------------------------------

@pytest.mark.parametrize(("days", "key"), [
    (None, "stable"), (50.0, "lt400"), (399.9, "lt400"), (400.0, "400to600"),
    (600.0, "400to600"), (600.1, "gt600"),
])
def test_vdt_bands(days: float | None, key: str) -> None:
    band = vdt_band(DoublingTime(days, Basis.VOLUME, 100))
    assert band.key == key and band.citation
