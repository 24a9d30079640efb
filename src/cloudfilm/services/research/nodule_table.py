"""The nodule measurements as research rows: one per person, nodule and scan.

Read from the nodule tables (the tracked measurements: a nodule is followed across the
person's hospitals) and the exam assessments; growth and volume doubling time are
recomputed with the domain rules (domain/growth.py, domain/lungrads.py), so the CSV
says what the Nodules panel says.

``growth`` per scan: ``new`` (the nodule's first measurement), ``grew`` (Lung-RADS v2022
growth, > 1.5 mm mean diameter, within or beyond 12 months) or ``stable``.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select

from cloudfilm.domain.growth import doubling_time
from cloudfilm.domain.lungrads import Status, status_from_prior
from cloudfilm.services.nodules.model import to_domain
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.nodule_models import NoduleAssessmentRow, NoduleMeasurementRow

GROWTH = ("new", "grew", "stable")
COLUMNS = ("patient_pseudonym", "nodule", "study_uid", "study_date", "days_since_baseline",
           "long_axis_mm", "short_axis_mm", "mean_diameter_mm", "volume_mm3", "vdt_days",
           "growth", "type", "category", "guideline")


@dataclass(frozen=True)
class NodulePoint:
    """One measurement of a tracked nodule, with what the guidelines make of it."""

    nodule_id: int
    study_uid: str
    study_date: date
    long_mm: float
    short_mm: float
    volume_mm3: float | None
    nodule_type: str
    growth: str
    vdt_days: float | None
    category: str
    guideline: str

    @property
    def mean_mm(self) -> float:
        return (self.long_mm + self.short_mm) / 2


def _growth(prior: NoduleMeasurementRow | None,
            row: NoduleMeasurementRow) -> tuple[str, float | None]:
    if prior is None or prior.study_date >= row.study_date:
        return "new", None
    before, now = to_domain(prior), to_domain(row)
    status = status_from_prior(before, now)
    try:
        vdt = doubling_time(before, now).days
    except ValueError:
        vdt = None
    grew = status in (Status.GROWING, Status.SLOWLY_GROWING)
    return ("grew" if grew else "stable"), None if vdt is None else round(vdt, 1)


def nodule_points(index: Index) -> list[NodulePoint]:
    """Every tracked measurement (a physician's "not followed" ones left out)."""
    with index.session() as session:
        rows = list(session.scalars(
            select(NoduleMeasurementRow).where(NoduleMeasurementRow.nodule_id.is_not(None),
                                               NoduleMeasurementRow.link != "unlinked")
            .order_by(NoduleMeasurementRow.study_date, NoduleMeasurementRow.id)))
        exams = {a.study_uid: (a.category, a.guideline)
                 for a in session.scalars(select(NoduleAssessmentRow))}
        session.expunge_all()
    points: list[NodulePoint] = []
    last: dict[int, NoduleMeasurementRow] = {}
    for row in rows:
        assert row.nodule_id is not None
        growth, vdt = _growth(last.get(row.nodule_id), row)
        last[row.nodule_id] = row
        category, guideline = exams.get(row.study_uid, ("", ""))
        points.append(NodulePoint(row.nodule_id, row.study_uid, row.study_date,
                                  row.long_axis_mm, row.short_axis_mm, row.volume_mm3,
                                  row.nodule_type, growth, vdt, category, guideline))
    return points


def _number(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class ScanContext:
    """How one exported study appears in the export: its pseudonyms and shifted date."""

    pseudonym: str
    study_uid: str  # the pseudonymous StudyInstanceUID
    study_date: str  # ISO date as exported (shifted), or "" when dates are removed
    baseline: date  # the person's first exported study (real date: only differences leave)


def nodules_csv(points: Iterable[NodulePoint],
                scan: Callable[[str], ScanContext | None]) -> tuple[bytes, int]:
    """The CSV (UTF-8, header first) and its number of rows. Nodules are numbered per
    person (N1, N2, ... in order of first sighting): no archive identifier leaves."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    numbers: dict[str, dict[int, int]] = defaultdict(dict)
    count = 0
    for p in sorted(points, key=lambda p: (p.study_date, p.nodule_id)):
        where = scan(p.study_uid)
        if where is None:
            continue
        local = numbers[where.pseudonym].setdefault(p.nodule_id,
                                                    len(numbers[where.pseudonym]) + 1)
        writer.writerow((where.pseudonym, f"N{local}", where.study_uid, where.study_date,
                         (p.study_date - where.baseline).days, _number(p.long_mm),
                         _number(p.short_mm), _number(p.mean_mm), _number(p.volume_mm3, 0),
                         _number(p.vdt_days, 0), p.growth, p.nodule_type, p.category,
                         p.guideline))
        count += 1
    return out.getvalue().encode("utf-8"), count
