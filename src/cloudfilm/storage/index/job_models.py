"""The job ledger (services/jobs): every background job's state, on every queue engine.

``jobs``: one row per job waiting, running or failed (a finished job's row is deleted).
``run_after`` is when a waiting job is due, and while it runs the end of its worker's
lease: a worker that dies stops renewing it, and once it has passed the job is taken
again. At most one job per ``dedupe_key`` waits (a unique index over waiting rows).
``sent_at`` is when a RabbitMQ/Redis engine last handed the job to the broker.

``job_schedule``: when each periodic job is next due; the worker that moves ``next_at``
forward enqueues that tick, so several nodes enqueue each tick once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from cloudfilm.storage.index.models import Base

QUEUED, RUNNING, FAILED = "queued", "running", "failed"


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_due", "state", "run_after"),
        Index("ix_jobs_dedupe_key", "dedupe_key"),
        Index("uq_jobs_waiting_key", "dedupe_key", unique=True,
              sqlite_where=text("state = 'queued'"), postgresql_where=text("state = 'queued'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    payload: Mapped[str] = mapped_column(Text)  # JSON
    dedupe_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    state: Mapped[str] = mapped_column(String(10))  # QUEUED | RUNNING | FAILED
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    token: Mapped[str | None] = mapped_column(String(32), nullable=True)  # the running claim
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class JobScheduleRow(Base):
    __tablename__ = "job_schedule"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    next_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
