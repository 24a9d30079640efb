"""The job worker: threads that claim jobs, run their handlers and settle the outcome.

One `JobWorker` runs in each ``cloudfilm worker`` process, and one in ``cloudfilm serve``
unless ``CLOUDFILM_EMBEDDED_WORKER`` is off. Any number may run against one index:

- on the embedded queue its threads claim due jobs from the ledger (woken at once by an
  enqueue in the same process, else every `IDLE` seconds);
- on RabbitMQ/Redis Dramatiq's consumer hands it job ids, which it claims the same way;
- a housekeeping thread renews the leases of the jobs it runs, enqueues the periodic
  jobs (`schedule`) and, on a broker, relays due jobs (retries, delayed jobs, and jobs
  whose worker died) to it.

A job that raises is given back to the ledger: tried again after its back-off, or marked
failed (and logged) after its last attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from cloudfilm.services.jobs.handlers import HANDLERS, JobSpec, Periodic, periodic_jobs
from cloudfilm.services.jobs.ledger import Claim, RetryPolicy
from cloudfilm.services.jobs.schedule import Schedule

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

log = logging.getLogger(__name__)

IDLE = 1.0  # seconds an idle thread of the embedded queue waits before looking again
TICK = 1.0  # housekeeping: schedule, relay, lease renewal (at most every `TICK` s)
RESEND = timedelta(minutes=1)  # a job sent this long ago and still waiting is sent again


class JobWorker:
    """Runs the archive's jobs until stopped."""

    def __init__(self, archive: Archive, *, threads: int = 2,
                 periodic: list[Periodic] | None = None,
                 handlers: dict[str, JobSpec] | None = None) -> None:
        self.archive = archive
        self.queue = archive.jobs
        self.ledger = self.queue.ledger
        self.threads = max(threads, 1)
        self.handlers = HANDLERS if handlers is None else handlers
        periodic = periodic_jobs(archive.settings) if periodic is None else periodic
        self.schedule = Schedule(archive.index, self.queue, periodic)
        self.tick = min([TICK] + [p.every for p in periodic])
        self.stopping = threading.Event()
        self._held: dict[int, Claim] = {}
        self._lock = threading.Lock()
        self._running: list[threading.Thread] = []
        self._consuming: Any = None

    def start(self) -> JobWorker:
        if self.queue.transport is None:
            for number in range(self.threads):
                self._thread(self._poll, f"jobs-{number + 1}")
        else:
            self._consuming = self.queue.transport.consume(self.run_id, self.threads)
        self._thread(self._housekeeping, "jobs-housekeeping")
        return self

    def _thread(self, target: Any, name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._running.append(thread)

    @property
    def running(self) -> bool:
        """Is any of its threads still alive?"""
        return any(thread.is_alive() for thread in self._running)

    def stop(self, timeout: float = 30.0) -> None:
        """Claim nothing more; wait up to ``timeout`` s for the jobs running now (a job
        still running after that runs again elsewhere once its lease runs out)."""
        self.stopping.set()
        self.queue.wake.set()
        if self._consuming is not None:
            self._consuming.stop(timeout=int(timeout * 1000))
        deadline = time.monotonic() + timeout
        for thread in self._running:
            thread.join(max(deadline - time.monotonic(), 0.1))

    # -- running jobs -----------------------------------------------------------------------

    def run_next(self) -> bool:
        """Claim and run one due job of the embedded queue; False when none was due."""
        if not self.ledger.due():
            return False
        claim = self.ledger.claim_next()
        if claim is None:
            return False
        self.run(claim)
        return True

    def run_id(self, job_id: int) -> None:
        """A broker delivered ``job_id``: run it if it is still ours to run."""
        claim = self.ledger.claim(job_id)
        if claim is None:  # done, failed, running elsewhere or not due: the relay decides
            self.ledger.unsent(job_id)
            return
        self.run(claim)

    def run(self, claim: Claim) -> None:
        spec = self.handlers.get(claim.name)
        with self._holding(claim):
            try:
                if spec is None:
                    raise LookupError(f"this worker has no job named {claim.name!r}")
                spec.run(self.archive, claim.payload)
            except Exception as error:  # noqa: BLE001 - any failure is recorded and retried
                self._failed(claim, spec.retry if spec else RetryPolicy(), error)
                return
        self.ledger.finish(claim)

    def _failed(self, claim: Claim, policy: RetryPolicy, error: Exception) -> None:
        reason = f"{type(error).__name__}: {error}"
        state = self.ledger.give_back(claim, reason, policy)
        if state == "failed":
            log.error("job %s (%s) failed for good after %s attempts: %s", claim.id, claim.name,
                      claim.attempts, reason, exc_info=error)
        else:
            log.warning("job %s (%s) failed, attempt %s of %s (%s): %s", claim.id, claim.name,
                        claim.attempts, policy.max_attempts,
                        f"again in {policy.delay(claim.attempts):g} s"
                        if state == "queued" else state, reason)

    @contextmanager
    def _holding(self, claim: Claim) -> Iterator[None]:
        with self._lock:
            self._held[claim.id] = claim
        try:
            yield
        finally:
            with self._lock:
                self._held.pop(claim.id, None)

    # -- threads ----------------------------------------------------------------------------

    def _poll(self) -> None:
        while not self.stopping.is_set():
            try:
                ran = self.run_next()
            except Exception:
                log.exception("the job worker could not claim a job")
                ran = False
            if not ran:
                self.queue.wake.wait(IDLE)
                self.queue.wake.clear()

    def _housekeeping(self) -> None:
        """The periodic jobs due at start-up are enqueued at once, then every `tick`."""
        renewed = time.monotonic()
        while True:
            if time.monotonic() - renewed >= self.ledger.lease.total_seconds() / 4:
                renewed = time.monotonic()
                self._guarded("renew the leases", self._renew)
            self._guarded("enqueue the periodic jobs", self.schedule.tick)
            if self.queue.transport is not None:
                self._guarded("relay due jobs", self._relay)
            if self.stopping.wait(self.tick):
                return

    def _renew(self) -> None:
        with self._lock:
            held = list(self._held.values())
        for claim in held:
            if not self.ledger.renew(claim):
                log.warning("job %s (%s): the lease was lost; another worker may run it too",
                            claim.id, claim.name)

    def _relay(self) -> None:
        for job_id in self.ledger.to_send(RESEND):
            self.queue.send(job_id)

    @staticmethod
    def _guarded(what: str, action: Any) -> None:
        try:
            action()
        except Exception:
            log.exception("the job worker could not %s", what)


def start_worker(archive: Archive, *, threads: int = 2,
                 periodic: list[Periodic] | None = None) -> JobWorker:
    """A running `JobWorker` over ``archive`` (its queue, its settings' periodic jobs)."""
    return JobWorker(archive, threads=threads, periodic=periodic).start()
