"""The jobs: each name, the function that runs it and how it is retried; and the
periodic ones with their periods.

A handler takes the archive and the job's JSON payload. It must be idempotent: a job
runs at least once, and again after a worker died in it or a try failed. The same table
serves every engine and every worker (``cloudfilm worker`` and the one in ``serve``);
`register` adds a job (an extension, a test).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cloudfilm.services.access.film_autoissue import issue_stable_films
from cloudfilm.services.ai.detect import DETECT_JOB, detect_candidates
from cloudfilm.services.ai.sending import SCAN_JOB, SEND_JOB, scan_for_ai, send_to_ai
from cloudfilm.services.jobs.ledger import RetryPolicy
from cloudfilm.services.nodules.service import SETTLE_JOB, NoduleService, folder_of_payload
from cloudfilm.services.notify.followup_reminders import enqueue_followup_reminders
from cloudfilm.services.notify.notifications import NotificationWorker
from cloudfilm.services.notify.reminders import enqueue_expiry_reminders

if TYPE_CHECKING:
    from cloudfilm.config import Settings
    from cloudfilm.services.context import Archive

Handler = Callable[["Archive", dict[str, Any]], None]
PERIODIC_RETRY = RetryPolicy(max_attempts=3)  # the next tick comes anyway


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: Handler
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True)
class Periodic:
    """A job enqueued every ``every`` seconds (once per period across all workers)."""

    name: str
    every: float


def settle_nodules(archive: Archive, payload: dict[str, Any]) -> None:
    """Register and track a nodule folder's scans, then refresh their results and SRs."""
    NoduleService(archive).settle_folder(folder_of_payload(payload))


def deliver_notifications(archive: Archive, payload: dict[str, Any]) -> None:
    """Send the outbox's due messages (each message keeps its own retries)."""
    NotificationWorker(archive).run_once()


def expiry_reminders(archive: Archive, payload: dict[str, Any]) -> None:
    """Queue reminders for shares about to expire (once per share and day)."""
    enqueue_expiry_reminders(archive, datetime.now(UTC),
                             archive.settings.notify.reminder_days)


def followup_reminders(archive: Archive, payload: dict[str, Any]) -> None:
    """Queue reminders for follow-up CTs coming due (once per exam and window)."""
    enqueue_followup_reminders(archive, datetime.now(UTC),
                               archive.settings.notify.followup_days)


def auto_films(archive: Archive, payload: dict[str, Any]) -> None:
    """Issue the automatic films of studies that became stable."""
    issue_stable_films(archive)


HANDLERS: dict[str, JobSpec] = {spec.name: spec for spec in (
    JobSpec(SETTLE_JOB, settle_nodules),
    JobSpec("notify.deliver", deliver_notifications, PERIODIC_RETRY),
    JobSpec("notify.expiry_reminders", expiry_reminders, PERIODIC_RETRY),
    JobSpec("notify.followup_reminders", followup_reminders, PERIODIC_RETRY),
    JobSpec("films.autoissue", auto_films, PERIODIC_RETRY),
    JobSpec(SCAN_JOB, scan_for_ai, PERIODIC_RETRY),  # issue 15: series to AI services
    JobSpec(SEND_JOB, send_to_ai),
    JobSpec(DETECT_JOB, detect_candidates, RetryPolicy(max_attempts=2)),
)}


def register(spec: JobSpec) -> None:
    """Add (or replace) a job in the table every worker of this process runs."""
    HANDLERS[spec.name] = spec


def periodic_jobs(settings: Settings) -> list[Periodic]:
    """What the workers enqueue on their own, from the settings' periods."""
    notify = settings.notify
    return [Periodic("notify.deliver", notify.interval),
            Periodic("notify.expiry_reminders", notify.reminder_interval),
            Periodic("notify.followup_reminders", notify.reminder_interval),
            Periodic("films.autoissue", min(settings.stable_age / 2, 5.0)),
            Periodic(SCAN_JOB, min(settings.stable_age / 2, 5.0))]
