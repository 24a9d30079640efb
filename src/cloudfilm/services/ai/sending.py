"""Sending stable series to AI services (IHE AIR: the archive pushes the input).

Every ``min(STABLE_AGE / 2, 5)`` seconds the workers run the ``ai.send`` job: for each AI
node, the series of studies that arrived since the node was registered whose newest
instance is older than ``CLOUDFILM_STABLE_AGE`` (Orthanc's stable series) and that have no
``ai_requests`` row for the node yet. Each gets one row, whoever inserts it first (unique
per node and series): ``skipped`` with the reason when the node's profile does not take
it (domain/ai_profiles.py), else ``sending`` and an ``ai.send_series`` job, which sends it
by STOW-RS (the node's DICOMweb URL) or C-STORE (services/exchange/remote.py) and is
retried by the job ledger until it is ``sent``.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain.ai_profiles import SeriesFacts, profile_named, refusal
from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.services.exchange.nodes import AiNode, UnknownNode
from cloudfilm.services.exchange.remote import RemoteService
from cloudfilm.services.exchange.remote_types import RemoteError
from cloudfilm.storage.index.ai_models import AiRequestRow
from cloudfilm.storage.index.models import InstanceRow, SeriesRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

log = logging.getLogger(__name__)

SCAN_JOB, SEND_JOB = "ai.send", "ai.send_series"
STAMP_RESOLUTION = timedelta(seconds=1)  # SQLite keeps index times to the second
BATCH = 200


def _values(attrs: dict[str, Any], tag: str) -> list[Any]:
    return list(attrs.get(tag, {}).get("Value", []) or [])


def series_facts(session: Session, series_pk: int, modality: str, count: int) -> SeriesFacts:
    """The series as a profile sees it: its SOP classes and one instance's attributes."""
    classes = frozenset(session.scalars(select(InstanceRow.sop_class_uid).distinct()
                                        .where(InstanceRow.series_pk == series_pk)))
    metadata = session.scalar(select(InstanceRow.metadata_json)
                              .where(InstanceRow.series_pk == series_pk)
                              .order_by(InstanceRow.id).limit(1))
    attrs = orjson.loads(metadata or b"{}")
    part = _values(attrs, "00180015")
    return SeriesFacts(modality, count, classes, str(part[0]) if part else "",
                       [float(v) for v in _values(attrs, "00200037")],
                       [str(v) for v in _values(attrs, "00080008")])


class AiSending:
    """Finds stable series for the AI nodes and queues each one's sending once."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.index = archive.index

    def scan(self, now: datetime | None = None) -> int:
        """Queue the series due at ``now``; returns how many were queued for sending."""
        now = as_utc(now or utcnow())
        cutoff = now - timedelta(seconds=self.archive.settings.stable_age) - STAMP_RESOLUTION
        return sum(self._scan_node(ai, cutoff) for ai in self.archive.nodes.ai_nodes())

    def _scan_node(self, ai: AiNode, cutoff: datetime) -> int:
        profile = profile_named(ai.node.ai or "")
        stmt = (select(StudyRow.study_uid, SeriesRow.id, SeriesRow.series_uid,
                       SeriesRow.modality, func.count(InstanceRow.id).label("instances"))
                .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
                .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
                .where(StudyRow.created_at >= ai.since,
                       SeriesRow.modality.in_(profile.modalities),
                       ~exists().where(AiRequestRow.node_name == ai.node.name,
                                       AiRequestRow.series_uid == SeriesRow.series_uid))
                .group_by(StudyRow.study_uid, SeriesRow.id, SeriesRow.series_uid,
                          SeriesRow.modality)
                .having(func.max(InstanceRow.created_at) <= cutoff)
                .order_by(SeriesRow.id).limit(BATCH))
        queued = 0
        with self.index.session() as session:
            rows = session.execute(stmt).all()
            found = [(r.study_uid, r.series_uid,
                      refusal(profile, series_facts(session, r.id, r.modality, r.instances)))
                     for r in rows]
        for study_uid, series_uid, why in found:
            request_id = self._claim(ai.node.name, study_uid, series_uid, why)
            if request_id is not None and why is None:
                self.archive.jobs.enqueue(SEND_JOB, {"request": request_id},
                                          dedupe_key=f"{SEND_JOB}:{request_id}")
                queued += 1
        return queued

    def _claim(self, node_name: str, study_uid: str, series_uid: str,
               why: str | None) -> int | None:
        """The (node, series) row; None when another worker inserted it first."""
        with self.index.write_session() as session:
            row = AiRequestRow(node_name=node_name, study_uid=study_uid, series_uid=series_uid,
                               status="skipped" if why else "sending", detail=why or "",
                               instances=0)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                return None
            return row.id

    def send(self, request_id: int) -> None:
        """Send one claimed series; raises (so the ledger retries) until it is sent."""
        with self.index.session() as session:
            row = session.get(AiRequestRow, request_id)
            if row is None or row.status in ("sent", "skipped"):
                return
            node, study_uid, series_uid = row.node_name, row.study_uid, row.series_uid
        try:
            report = RemoteService(self.archive).send_series(node, study_uid, series_uid)
        except UnknownNode as exc:  # the node was removed: nothing to retry
            self._mark(request_id, "failed", str(exc))
            return
        except RemoteError as exc:
            self._mark(request_id, "failed", str(exc))
            raise
        if not report.complete:
            why = "; ".join(f"{r.sop_uid}: {r.detail}" for r in report.failures[:3])
            self._mark(request_id, "failed", why or "nothing was sent")
            raise RemoteError(f"series {series_uid} to {node}: {why}")
        self._mark(request_id, "sent", "", instances=len(report.results))
        log.info("series %s sent to AI node %s (%d instances)", series_uid, node,
                 len(report.results))

    def _mark(self, request_id: int, status: str, detail: str, *, instances: int = 0) -> None:
        values: dict[str, Any] = {"status": status, "detail": detail[:2000]}
        if status == "sent":
            values |= {"sent_at": utcnow(), "instances": instances}
        with self.index.write_session() as session:
            session.execute(update(AiRequestRow).where(AiRequestRow.id == request_id)
                            .values(**values))
            session.commit()


def scan_for_ai(archive: Archive, payload: dict[str, Any]) -> None:
    """The periodic ``ai.send`` job."""
    AiSending(archive).scan()


def send_to_ai(archive: Archive, payload: dict[str, Any]) -> None:
    """The ``ai.send_series`` job: ``{"request": id}``."""
    AiSending(archive).send(int(payload["request"]))
