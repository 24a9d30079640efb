"""RabbitMQ and Redis engines, through Dramatiq (``CLOUDFILM_QUEUE_URL=amqp://…|redis://…``).

Why Dramatiq: a well-kept library (LGPL, typed, small) whose brokers acknowledge a
message only after the actor returns, so RabbitMQ redelivers what a killed consumer
held and its Redis broker requeues the messages of a worker whose heartbeat stopped;
publishes are confirmed by RabbitMQ before `send` returns (``confirm_delivery``).

One queue serves one archive (job ids are the ledger's): its name is ``cloudfilm_jobs``,
or the URL's ``queue`` parameter (``amqp://host/vhost?queue=NAME``), which the broker
client never sees. What Dramatiq carries is a job's id. The job itself (payload, attempts, lease, failure)
stays in the ledger, so retries, deduplication and "one at a time per key" are the same
rules as on the embedded queue, and a job the broker lost with a crashed process is sent
again by the relay (`Ledger.to_send`) once due.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.brokers.redis import RedisBroker

log = logging.getLogger(__name__)

QUEUE = "cloudfilm_jobs"
ACTOR = "cloudfilm_job"
REDIS_HEARTBEAT_MS = 15_000  # a Redis worker silent this long is dead: its messages go back


def split_queue(url: str) -> tuple[str, str]:
    """(the URL without ``queue=…``, the queue's name). Celery's ``amqp://host//`` for the
    default virtual host is pika's ``amqp://host/%2F``."""
    parts = urlsplit(url)
    if parts.path == "//":
        parts = parts._replace(path="/%2F")
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = [value for key, value in query if key == "queue" and value]
    rest = urlencode([(key, value) for key, value in query if key != "queue"])
    return urlunsplit(parts._replace(query=rest)), (names[-1] if names else QUEUE)


class DramatiqTransport:
    """Sends job ids through a Dramatiq broker and runs a consumer that claims them."""

    def __init__(self, url: str) -> None:
        broker: Any
        url, self.queue = split_queue(url)
        if url.split("://", 1)[0].lower() in ("amqp", "amqps"):
            self.name = "rabbitmq"
            broker = RabbitmqBroker(url=url, confirm_delivery=True, middleware=[])
        else:
            self.name = "redis"
            redis_broker: Any = RedisBroker  # untyped in Dramatiq
            broker = redis_broker(url=url, middleware=[], heartbeat_timeout=REDIS_HEARTBEAT_MS,
                                  namespace=f"dramatiq-{self.queue}")
        self.broker = broker
        self._run: Callable[[int], None] | None = None
        self.actor: Any = dramatiq.actor(broker=broker, actor_name=ACTOR,
                                         queue_name=self.queue)(self._deliver)

    def _deliver(self, job_id: int) -> None:
        """A message arrived: claim and run the job (an exception here would dead-letter
        the message, so none leaves; the ledger keeps what happened)."""
        if self._run is None:
            log.warning("job %s arrived where no worker runs; it is sent again later", job_id)
            return
        try:
            self._run(int(job_id))
        except Exception:
            log.exception("job %s: the worker failed outside the job", job_id)

    def send(self, job_id: int) -> None:
        self.actor.send(job_id)

    def consume(self, run: Callable[[int], None], threads: int) -> Any:
        """Start Dramatiq's worker: ``threads`` threads, each message one job id."""
        self._run = run
        worker = dramatiq.Worker(self.broker, queues={self.queue}, worker_threads=threads,
                                 worker_timeout=1000)
        worker.queue_prefetch = threads  # no job waits behind a busy worker's long one
        worker.start()
        return worker

    def close(self) -> None:
        self.broker.close()
