"""AI candidates: findings waiting for a physician, from an AI service or the built-in
detector. Accepting one runs the ordinary semi-automatic measurement at its point (or at
the physician's corrected point), so it becomes a measurement like any other and is
tracked to the prior in the folder's settle job; rejecting marks it. Nothing reaches a
patient until accepted: candidates are read only by clinicians (api/ai_candidates.py).

A decision is taken once: the conditional UPDATE from ``pending`` is the claim, so two
physicians accepting at once make one measurement (the other gets `AlreadyDecided`); a
measurement that fails (the point does not segment) puts the candidate back to pending.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.services.ai.placement import nearest_pixel, planes_of
from cloudfilm.services.ai.results import AiResult, Finding
from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.storage.index.ai_models import AiCandidateRow, AiResultRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

BUILTIN = "builtin"


class CandidateNotFound(LookupError):
    pass


class AlreadyDecided(ValueError):
    """The candidate was accepted or rejected before (409)."""


@dataclass(frozen=True)
class NewCandidate:
    series_uid: str
    source: str  # "builtin" or the AI node's name
    algorithm_name: str
    algorithm_version: str
    centre_mm: tuple[float, float, float]
    diameter_mm: float
    volume_mm3: float | None
    score: float | None
    instance_uid: str
    column: float
    row: float
    result_sop_uid: str | None = None


def _row(c: NewCandidate, study_uid: str) -> AiCandidateRow:
    return AiCandidateRow(
        study_uid=study_uid, series_uid=c.series_uid, source=c.source,
        algorithm_name=c.algorithm_name[:200], algorithm_version=c.algorithm_version[:64],
        centre_x=c.centre_mm[0], centre_y=c.centre_mm[1], centre_z=c.centre_mm[2],
        diameter_mm=c.diameter_mm, volume_mm3=c.volume_mm3, score=c.score,
        instance_uid=c.instance_uid, pixel_column=c.column, pixel_row=c.row,
        result_sop_uid=c.result_sop_uid, status="pending")


def _iso(value: datetime | None) -> str | None:
    return as_utc(value).isoformat(timespec="seconds") if value is not None else None


def candidate_json(row: AiCandidateRow, measurement: dict[str, Any] | None) -> dict[str, Any]:
    """One candidate as the API answers (the shape api/ai_candidates.py documents)."""
    return {"id": row.id, "study_uid": row.study_uid, "series_uid": row.series_uid,
            "source": row.source,
            "algorithm": {"name": row.algorithm_name, "version": row.algorithm_version},
            "center_mm": [round(v, 1) for v in (row.centre_x, row.centre_y, row.centre_z)],
            "diameter_mm": round(row.diameter_mm, 1),
            "volume_mm3": None if row.volume_mm3 is None else round(row.volume_mm3),
            "score": None if row.score is None else round(row.score, 3),
            "instance_uid": row.instance_uid, "column": round(row.pixel_column, 2),
            "row": round(row.pixel_row, 2), "status": row.status,
            "result_sop_uid": row.result_sop_uid, "decided_by": row.decided_by,
            "decided_at": _iso(row.decided_at), "measurement": measurement}


class CandidateService:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.index = archive.index

    # -- adding -----------------------------------------------------------------------

    def place(self, study_uid: str, series_uid: str,
              centre: Sequence[float]) -> tuple[str, float, float]:
        """The nearest slice of the source series and the pixel there (LookupError if none)."""
        try:
            metadata = self.archive.retrieve.metadata(study_uid, series_uid)
        except NotStored:
            raise LookupError(f"series {series_uid} is not stored") from None
        return nearest_pixel(planes_of(metadata), centre)

    def candidate_of(self, finding: Finding, study_uid: str, series_uid: str, source: str,
                     result: AiResult, result_sop: str | None = None) -> NewCandidate:
        instance, column, row = finding.instance_uid, finding.column, finding.row
        if not instance:
            instance, column, row = self.place(study_uid, series_uid, finding.centre_mm)
        return NewCandidate(series_uid, source, result.algorithm_name, result.algorithm_version,
                            finding.centre_mm, finding.diameter_mm, finding.volume_mm3,
                            finding.score, instance, column, row, result_sop)

    def add_result(self, record: AiResultRow, candidates: Sequence[NewCandidate]) -> bool:
        """An AI service's stored SR/SEG and its candidates, in one transaction; False if
        that SOP instance was taken in before (a repeated STOW)."""
        with self.index.write_session() as session:
            session.add(record)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                return False
            session.add_all(_row(c, record.study_uid) for c in candidates)
            session.commit()
        return True

    def replace_builtin(self, study_uid: str, candidates: Sequence[NewCandidate]) -> int:
        """The built-in detector's run: its pending candidates of the study are replaced
        (decided ones stay, and a new one at a decided one's place is not added again)."""
        with self.index.write_session() as session:
            session.execute(delete(AiCandidateRow).where(
                AiCandidateRow.study_uid == study_uid, AiCandidateRow.source == BUILTIN,
                AiCandidateRow.status == "pending"))
            decided = session.execute(select(
                AiCandidateRow.centre_x, AiCandidateRow.centre_y, AiCandidateRow.centre_z,
                AiCandidateRow.diameter_mm).where(
                AiCandidateRow.study_uid == study_uid, AiCandidateRow.source == BUILTIN)).all()
            fresh = [c for c in candidates if not any(_same_place(c, d) for d in decided)]
            session.add_all(_row(c, study_uid) for c in fresh)
            session.commit()
        return len(fresh)

    # -- reading and deciding ---------------------------------------------------------

    def study_of(self, candidate_id: int) -> str:
        with self.index.session() as session:
            study = session.scalar(select(AiCandidateRow.study_uid)
                                   .where(AiCandidateRow.id == candidate_id))
        if study is None:
            raise CandidateNotFound(f"AI candidate {candidate_id}")
        return study

    def study_candidates(self, study_uid: str) -> list[dict[str, Any]]:
        with self.index.session() as session:
            rows = session.scalars(select(AiCandidateRow)
                                   .where(AiCandidateRow.study_uid == study_uid)
                                   .order_by(AiCandidateRow.id)).all()
            session.expunge_all()
        return [candidate_json(r, self._measurement(r.measurement_id)) for r in rows]

    def get(self, candidate_id: int) -> dict[str, Any]:
        row = self._row(candidate_id)
        return candidate_json(row, self._measurement(row.measurement_id))

    def _row(self, candidate_id: int) -> AiCandidateRow:
        with self.index.session() as session:
            row = session.get(AiCandidateRow, candidate_id)
            if row is None:
                raise CandidateNotFound(f"AI candidate {candidate_id}")
            session.expunge(row)
        return row

    def _measurement(self, measurement_id: int | None) -> dict[str, Any] | None:
        if measurement_id is None:
            return None
        from cloudfilm.services.nodules.model import NotFound, measurement_dict
        from cloudfilm.services.nodules.service import NoduleService
        try:
            row, nodule = NoduleService(self.archive).get(measurement_id)
        except NotFound:
            return None  # deleted since
        return measurement_dict(row, nodule.label if nodule else None)

    def _claim(self, candidate_id: int, status: str, who: str) -> AiCandidateRow:
        with self.index.write_session() as session:
            taken = session.execute(
                update(AiCandidateRow).where(AiCandidateRow.id == candidate_id,
                                             AiCandidateRow.status == "pending")
                .values(status=status, decided_by=who[:200], decided_at=utcnow()))
            session.commit()
        row = self._row(candidate_id)
        if getattr(taken, "rowcount", 0) != 1:
            raise AlreadyDecided(f"AI candidate {candidate_id} was {row.status} by "
                                 f"{row.decided_by or 'someone'}")
        return row

    def reject(self, candidate_id: int, who: str) -> dict[str, Any]:
        return candidate_json(self._claim(candidate_id, "rejected", who), None)

    def accept(self, candidate_id: int, who: str,
               point: tuple[str, float, float] | None = None) -> dict[str, Any]:
        """Measure at the candidate's point (or ``point``: instance, column, row) as the
        measure tool does; raises NoduleError (422) when it does not segment."""
        from cloudfilm.services.nodules.model import NotFound
        from cloudfilm.services.nodules.service import NoduleService
        row = self._claim(candidate_id, "accepted", who)
        instance, column, pixel_row = point or (row.instance_uid, row.pixel_column,
                                                row.pixel_row)
        nodules = NoduleService(self.archive)
        try:
            measured, nodule = nodules.measure_click(row.study_uid, row.series_uid, instance,
                                                     column, pixel_row, who)
        except BaseException as error:
            self._undo(candidate_id)
            if isinstance(error, NotFound):
                from cloudfilm.services.nodules.model import NoduleError
                raise NoduleError(f"the point is not on an image of series {row.series_uid}") \
                    from None
            raise
        with self.index.write_session() as session:
            session.execute(update(AiCandidateRow).where(AiCandidateRow.id == candidate_id)
                            .values(measurement_id=measured.id))
            session.commit()
        candidate = self.get(candidate_id)
        measurement = dict(candidate["measurement"] or {}) | {
            "suggested_type": measured.nodule_type}
        return {"candidate": candidate, "measurement": measurement,
                "nodule": None if nodule is None else {"id": nodule.id, "label": nodule.label},
                "tracking": "pending" if nodules.tracking_pending(row.study_uid) else "done"}

    def _undo(self, candidate_id: int) -> None:
        with self.index.write_session() as session:
            session.execute(update(AiCandidateRow).where(AiCandidateRow.id == candidate_id)
                            .values(status="pending", decided_by=None, decided_at=None))
            session.commit()


def _same_place(c: NewCandidate, decided: Any, tolerance_mm: float = 3.0) -> bool:
    """Within the decided one's radius (at least ``tolerance_mm``) of its centre."""
    place = [float(v) for v in decided[:3]]
    distance = math.dist(c.centre_mm, place)
    return distance <= max(tolerance_mm, float(decided[3]) / 2)
