"""A nodule's growth chart as plain SVG coordinates, drawn by the server.

Why server-side SVG: the chart has at most a handful of points (one per scan), must work
without JavaScript on a cheap phone, scale with large-text mode and print. The template
(`_nodule_chart.html`) draws what this module computes and repeats the numbers in a
table, so screen readers and people who do not read charts get the same facts.

The time axis is proportional to the days between scans (follow-up intervals differ:
3, 6, 12 months), not one step per scan, so faster growth looks steeper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from typing import Any

WIDTH, HEIGHT = 320, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 14, 30


@dataclass(frozen=True)
class Point:
    x: float
    y: float
    value: float
    when: date


@dataclass(frozen=True)
class Series:
    """One line: its points, the y-axis ticks and the text that labels the axis."""

    points: tuple[Point, ...]
    ticks: tuple[tuple[float, str], ...]  # (y, label)
    unit: str

    @property
    def path(self) -> str:
        return " ".join(f"{p.x:.1f},{p.y:.1f}" for p in self.points)


def _nice_step(span: float) -> float:
    """1, 2 or 5 times a power of ten, giving about four ticks over ``span``."""
    raw = max(span / 4, 1e-9)
    power = 10.0 ** math.floor(math.log10(raw))
    return next(factor * power for factor in (1, 2, 5, 10) if raw <= factor * power)


def _series(dates: list[date], values: list[float], unit: str) -> Series:
    first, last = dates[0], dates[-1]
    days = max((last - first).days, 1)
    top_value = max(values) * 1.15 or 1.0
    step = _nice_step(top_value)
    top_value = step * (int(top_value / step) + 1)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(v: float) -> float:
        return TOP + inner_h * (1 - v / top_value)

    points = tuple(Point(LEFT + inner_w * ((d - first).days / days if len(dates) > 1 else 0.5),
                         y_of(v), v, d) for d, v in zip(dates, values, strict=True))
    ticks = []
    tick = 0.0
    while tick <= top_value + 1e-9:
        ticks.append((y_of(tick), f"{tick:g}"))
        tick += step
    return Series(points, tuple(ticks), unit)


def chart(measurements: list[dict[str, Any]]) -> dict[str, Any]:
    """Diameter and volume series of one nodule's measurements (date order)."""
    dated = [(date.fromisoformat(m["study_date"]), m) for m in measurements]
    dated.sort(key=lambda item: item[0])
    dates = [d for d, _ in dated]
    diameter = _series(dates, [float(m["mean_diameter_mm"]) for _, m in dated], "mm")
    # A volume not measured is estimated from the mean diameter, as the guidelines do.
    volumes = [float(v) if (v := m.get("volume_mm3")) is not None
               else math.pi * float(m["mean_diameter_mm"]) ** 3 / 6 for _, m in dated]
    volume = _series(dates, volumes, "mm³")
    return {"width": WIDTH, "height": HEIGHT, "left": LEFT, "bottom": HEIGHT - BOTTOM,
            "right": WIDTH - RIGHT, "diameter": diameter, "volume": volume}
