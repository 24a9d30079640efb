"""`JobQueue`: what the rest of cloudfilm calls to hand work to a worker.

``CLOUDFILM_QUEUE_URL`` (``Settings.queue_url``) picks the engine:

- ``""`` (the default): the queue is the ledger in the index database (SQLite or
  PostgreSQL); workers claim due jobs from it, so ``make run`` needs nothing more;
- ``amqp://…`` (RabbitMQ) or ``redis://…`` (Redis): the ledger still keeps each job's
  state, and Dramatiq carries every due job to an idle worker (`brokers`).

Either way a job is a name from `handlers.HANDLERS` and a JSON object.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from cloudfilm.config import SettingError
from cloudfilm.services.jobs.ledger import JobView, Ledger

if TYPE_CHECKING:
    from cloudfilm.config import Settings
    from cloudfilm.storage.index.db import Index

log = logging.getLogger(__name__)

BROKER_SCHEMES = ("amqp", "amqps", "redis", "rediss")


class Consuming(Protocol):
    def stop(self, timeout: int = ...) -> None: ...


class Transport(Protocol):
    """A broker that carries job ids to workers (RabbitMQ or Redis)."""

    name: str

    def send(self, job_id: int) -> None: ...

    def consume(self, run: Callable[[int], None], threads: int) -> Consuming: ...

    def close(self) -> None: ...


class JobQueue:
    """Enqueue jobs and see whether their work is done, on any engine."""

    def __init__(self, ledger: Ledger, transport: Transport | None = None) -> None:
        self.ledger = ledger
        self.transport = transport
        self.wake = threading.Event()  # set on enqueue: this process's idle workers look now

    @property
    def engine(self) -> str:
        return self.transport.name if self.transport is not None else "index"

    def enqueue(self, name: str, payload: Mapping[str, Any], *, dedupe_key: str | None = None,
                delay: float = 0.0) -> int | None:
        """Queue ``name`` with ``payload`` (a JSON object), due after ``delay`` seconds.
        With a ``dedupe_key``: nothing is added while a job of that key waits, and jobs of
        one key never run at once. Returns the job's id, or None when deduplicated."""
        send_now = self.transport is not None and delay <= 0
        job_id = self.ledger.add(name, payload, dedupe_key=dedupe_key, delay=delay,
                                 sent=send_now)
        if job_id is not None:
            if send_now:
                self.send(job_id)
            self.wake.set()
        return job_id

    def send(self, job_id: int) -> None:
        """Hand a due job to the broker; if it cannot take it, the relay tries again."""
        assert self.transport is not None
        try:
            self.transport.send(job_id)
        except Exception as error:  # noqa: BLE001 - the broker is down: the job waits in the ledger
            log.warning("job %s: the %s broker did not take it (%s); sent again later",
                        job_id, self.transport.name, error)
            self.ledger.unsent(job_id)

    def pending(self, dedupe_key: str) -> bool:
        """Is work of this key waiting or running?"""
        return self.ledger.pending(dedupe_key)

    def latest(self, dedupe_key: str) -> JobView | None:
        """The newest unfinished or failed job of this key (None: none, or it finished)."""
        return self.ledger.latest(dedupe_key)

    def jobs(self, state: str | None = None) -> list[JobView]:
        return self.ledger.jobs(state)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def open_queue(settings: Settings, index: Index) -> JobQueue:
    """The queue ``settings.queue_url`` names (nothing connects until a job is sent)."""
    url = settings.queue_url
    if not url:
        return JobQueue(Ledger(index))
    scheme = url.split("://", 1)[0].lower()
    if scheme not in BROKER_SCHEMES:
        raise SettingError(f"CLOUDFILM_QUEUE_URL={url.split('@')[-1]!r}: use amqp://… (RabbitMQ), "
                           "redis://… (Redis), or leave it unset for the queue in the index")
    from cloudfilm.services.jobs.brokers import DramatiqTransport

    return JobQueue(Ledger(index), DramatiqTransport(url))
