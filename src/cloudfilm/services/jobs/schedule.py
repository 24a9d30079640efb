"""Periodic jobs: each period's tick is enqueued once, however many workers run.

Every worker looks at ``job_schedule`` about once a second. The one whose conditional
UPDATE moves a job's ``next_at`` forward enqueues that tick; the others see the new
time and do nothing. The tick's dedupe key is the job's name, so ticks never pile up
behind a slow run.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.services.jobs.handlers import Periodic
from cloudfilm.services.jobs.queue import JobQueue
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.job_models import JobScheduleRow

log = logging.getLogger(__name__)


class Schedule:
    """Enqueues the periodic jobs that are due."""

    def __init__(self, index: Index, queue: JobQueue, periodic: list[Periodic]) -> None:
        self.index = index
        self.queue = queue
        self.periodic = periodic

    def tick(self, now: datetime | None = None) -> list[str]:
        """Enqueue every periodic job due at ``now`` that this worker won; their names."""
        now = now or utcnow()
        with self.index.session() as session:
            due = {row.name: as_utc(row.next_at) for row in session.scalars(
                select(JobScheduleRow).where(
                    JobScheduleRow.name.in_([p.name for p in self.periodic])))}
        enqueued = []
        for job in self.periodic:
            if job.name in due and due[job.name] > now:
                continue
            if self._take(job, now, known=job.name in due):
                self.queue.enqueue(job.name, {}, dedupe_key=job.name)
                enqueued.append(job.name)
        return enqueued

    def _take(self, job: Periodic, now: datetime, *, known: bool) -> bool:
        """Move the job's next tick one period on; False if another worker did first."""
        following = now + timedelta(seconds=job.every)
        with self.index.write_session() as session:
            if not known:
                session.add(JobScheduleRow(name=job.name, next_at=following))
                try:
                    session.commit()
                    return True
                except IntegrityError:  # another worker made the row first
                    return False
            result: Any = session.execute(
                update(JobScheduleRow).where(JobScheduleRow.name == job.name,
                                             JobScheduleRow.next_at <= now)
                .values(next_at=following))
            session.commit()
            return bool(result.rowcount == 1)
