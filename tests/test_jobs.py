"""Background work as jobs (issue 13), with real processes on every queue engine.

``cloudfilm serve`` only enqueues (here with ``CLOUDFILM_EMBEDDED_WORKER=0``), and
``cloudfilm worker`` processes run the jobs: the embedded queue in the index on SQLite
and on PostgreSQL, RabbitMQ (with a PostgreSQL index) and Redis (with a SQLite index),
each on its loopback port. The real slow job is nodule registration and tracking on two
demo CTs from two hospitals; ``tests/job_probe.py`` adds two test jobs to the workers it
starts (one that records when it runs, one that always fails).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloudfilm.config import Settings
from cloudfilm.services.context import Archive
from cloudfilm.services.jobs.ledger import JobView, Ledger
from cloudfilm.storage.index.db import Index
from conftest import PostgresSchema, Server, cli_env, database_url_for, demo_data, run_cli
from jobs_wait import wait_for_tracking

TESTS = Path(__file__).resolve().parent
RABBITMQ = os.environ.get("CLOUDFILM_TEST_RABBITMQ", "amqp://guest:guest@127.0.0.1:5672//")
REDIS = os.environ.get("CLOUDFILM_TEST_REDIS", "redis://127.0.0.1:6379/0")
ENGINES = [("sqlite", ""), ("postgresql", ""), ("postgresql", "rabbitmq"), ("sqlite", "redis")]


@dataclass
class Deployment:
    """One index and one queue, shared by a server and any number of workers."""

    data_dir: Path
    database_url: str
    queue_url: str
    schema: PostgresSchema | None
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return cli_env(self.database_url) | {"CLOUDFILM_QUEUE_URL": self.queue_url}

    @contextmanager
    def archive(self) -> Iterator[Archive]:
        settings = Settings.load(self.data_dir, self.database_url,
                                 environ={"CLOUDFILM_QUEUE_URL": self.queue_url})
        opened = Archive.open(settings, recover=False)
        try:
            yield opened
        finally:
            opened.close()

    def jobs(self, prefix: str = "") -> list[JobView]:
        index = Index(self.database_url)
        try:
            return [j for j in Ledger(index).jobs() if j.name.startswith(prefix)]
        finally:
            index.dispose()

    def worker(self, *, probe: bool = False) -> WorkerProcess:
        started = WorkerProcess(self, probe)
        self.workers.append(started)
        return started

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        if self.schema:
            self.schema.drop()
        _purge_broker(self.queue_url)


@dataclass
class WorkerProcess:
    """A ``cloudfilm worker`` process (with the probe jobs if ``probe``)."""

    deployment: Deployment
    probe: bool
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    def start(self) -> WorkerProcess:
        command = ([sys.executable, str(TESTS / "job_probe.py")] if self.probe
                   else [sys.executable, "-m", "cloudfilm"])
        self.log_path = self.deployment.data_dir.parent / f"worker-{time.monotonic_ns()}.log"
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [*command, "worker", "--data", str(self.deployment.data_dir)],
                env=self.deployment.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: "cloudfilm worker:" in self.log(), 60, "the worker to start",
                   alive=self.process)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def kill(self) -> None:
        """kill -9: no clean-up, no lease given back."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until(condition: Callable[[], Any], timeout: float, what: str, *,
               alive: subprocess.Popen[bytes] | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the process exited while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.05)
    return value


def _queue_url(broker: str, name: str) -> str:
    if broker == "rabbitmq":
        return f"{RABBITMQ}?queue={name}"
    if broker == "redis":
        return f"{REDIS}?queue={name}"
    return ""


def _purge_broker(queue_url: str) -> None:
    """Remove the test's queue from the shared broker."""
    if not queue_url:
        return
    from cloudfilm.services.jobs.brokers import split_queue

    url, name = split_queue(queue_url)
    if url.startswith("amqp"):
        import pika

        with pika.BlockingConnection(pika.URLParameters(url)) as connection:
            channel = connection.channel()
            for queue in (name, f"{name}.DQ", f"{name}.XQ"):
                channel.queue_delete(queue)
    else:
        import redis

        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"dramatiq-{name}:*"))
        if keys:
            client.delete(*keys)


def deployment_for(kind: str, broker: str, base: Path) -> Deployment:
    data_dir = base / "data"
    url, schema = database_url_for(kind, data_dir)
    name = f"cf_test_{os.getpid()}_{time.monotonic_ns()}"
    return Deployment(data_dir, url, _queue_url(broker, name), schema)


@pytest.fixture(params=ENGINES, ids=[f"{k}-{b or 'embedded'}" for k, b in ENGINES])
def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Deployment]:
    kind, broker = request.param
    made = deployment_for(kind, broker, tmp_path)
    try:
        yield made
    finally:
        made.close()


@dataclass
class Site:
    deployment: Deployment
    server: Server
    truth: dict[str, Any]


@pytest.fixture(scope="module", params=ENGINES, ids=[f"{k}-{b or 'embedded'}" for k, b in ENGINES])
def site(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """Two demo patients (three CTs each, two hospitals, one person each), served with no
    worker inside."""
    kind, broker = request.param
    made = deployment_for(kind, broker, tmp_path_factory.mktemp(f"jobs-{kind}-{broker}"))
    try:
        if kind == "sqlite":
            demo_data(tmp_path_factory, made.data_dir, images_only=True)
        else:
            demo = run_cli(["demo", "--data", str(made.data_dir), "--patients", "2",
                            "--slices", "80", "--images-only"], made.database_url)
            assert demo.returncode == 0, demo.stdout + demo.stderr
        truth = json.loads((made.data_dir / "demo-truth.json").read_text())
        for patient in truth["patients"]:  # one folder per person, across both hospitals
            _person_of(made, patient)
        server = Server(made.data_dir, made.database_url,
                        extra_env={"CLOUDFILM_EMBEDDED_WORKER": "0",
                                   "CLOUDFILM_QUEUE_URL": made.queue_url}).start()
        try:
            yield Site(made, server, truth)
        finally:
            server.stop()
    finally:
        made.close()


def _person_of(made: Deployment, patient: dict[str, Any]) -> None:
    data = ["--data", str(made.data_dir)]
    added = run_cli(["person", "add", "Demo Person", *data], made.database_url)
    assert added.returncode == 0, added.stderr
    for record in patient["records"]:
        linked = run_cli(["person", "link", added.stdout.strip(), "--patient-id",
                          record["patient_id"], "--issuer", record["issuer"], *data],
                         made.database_url)
        assert linked.returncode == 0, linked.stderr


def _measure_two_scans(http: httpx.Client, patient: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """A physician's manual measurements of every demo nodule on the first two scans: each
    is stored at once and answered with tracking pending."""
    first, second = patient["studies"][0], patient["studies"][1]
    for study in (first, second):
        for nodule in study["nodules"]:
            answer = http.post(f"/api/studies/{study['study_uid']}/nodules", json={
                "series_uid": study["series_uid"],
                "instance_uid": nodule["instance_uid_at_center"],
                "center_patient_mm": nodule["center_patient_mm"],
                "long_axis_mm": nodule["diameter_mm"], "short_axis_mm": nodule["diameter_mm"],
                "nodule_type": nodule["type"], "lobe": "RUL"})
            assert answer.status_code == 201, answer.text
            assert answer.json()["tracking"] == "pending"
            assert answer.json()["measurement"]["nodule_id"] is None
    return first, second


def _assert_tracked_across_hospitals(http: httpx.Client, first: dict[str, Any],
                                     second: dict[str, Any]) -> None:
    """Registration paired each nodule of the second scan (another hospital, another table
    position) with itself on the first, and each scan has its guideline result."""
    labels = {}
    for study in (first, second):
        body = wait_for_tracking(http, study["study_uid"])
        assert body["assessment"] is not None
        for m in body["measurements"]:
            [truth] = [n["id"] for n in study["nodules"]
                       if sum((a - b) ** 2 for a, b in zip(n["center_patient_mm"],
                                                           m["center_patient_mm"], strict=True)) < 4.0]
            labels[(study["study_uid"], truth)] = m["label"]
    assert all(labels.values())
    for nodule in second["nodules"]:
        assert labels[(second["study_uid"], nodule["id"])] == \
            labels[(first["study_uid"], nodule["id"])]


def test_serve_only_enqueues_and_a_worker_started_later_drains_the_queue(site: Site) -> None:
    with site.server.http() as http:
        first, second = _measure_two_scans(http, site.truth["patients"][0])
        time.sleep(3)  # several polling rounds: nobody runs the job without a worker
        [job] = site.deployment.jobs("nodules.settle")  # one per folder while it waits
        assert (job.state, job.attempts) == ("queued", 0)
        assert http.get(f"/api/studies/{second['study_uid']}/nodules").json()["tracking"] \
            == "pending"
        worker = site.deployment.worker().start()
        try:
            _assert_tracked_across_hospitals(http, first, second)
        finally:
            worker.stop()
    assert site.deployment.jobs("nodules.settle") == []


def test_a_worker_killed_during_registration_loses_nothing(site: Site) -> None:
    with site.server.http() as http:
        first, second = _measure_two_scans(http, site.truth["patients"][1])
        [job] = site.deployment.jobs("nodules.settle")
        doomed = site.deployment.worker().start()
        wait_until(lambda: [j for j in site.deployment.jobs("nodules.settle")
                            if j.state == "running"], 120, "the worker to take the job")
        doomed.kill()
        [left] = site.deployment.jobs("nodules.settle")  # killed mid-job: not finished
        assert (left.id, left.state, left.attempts) == (job.id, "running", 1)
        assert http.get(f"/api/studies/{second['study_uid']}/nodules").json()["tracking"] \
            == "pending"
        restarted = site.deployment.worker().start()
        try:
            _assert_tracked_across_hospitals(http, first, second)
        finally:
            restarted.stop()
    assert site.deployment.jobs("nodules.settle") == []


def _events(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_two_workers_never_run_one_job_twice_at_once(deployment: Deployment,
                                                     tmp_path: Path) -> None:
    log = tmp_path / "probe.log"
    workers = [deployment.worker(probe=True).start() for _ in range(2)]
    with deployment.archive() as archive:
        for n in range(24):
            archive.jobs.enqueue("probe.record", {"n": n, "log": str(log), "seconds": 0.2})
    wait_until(lambda: not deployment.jobs("probe."), 120, "the probe jobs to run")
    for worker in workers:
        worker.stop()
    events = _events(log)
    assert Counter(e["job"] for e in events if e["event"] == "start") == {n: 1 for n in range(24)}
    assert Counter(e["job"] for e in events if e["event"] == "end") == {n: 1 for n in range(24)}
    assert len({e["pid"] for e in events}) == 2  # both workers took jobs


def test_jobs_of_one_key_wait_for_each_other(deployment: Deployment, tmp_path: Path) -> None:
    """A job of a key enqueued while another of that key runs starts after it ends; one
    enqueued while another waits adds nothing."""
    log = tmp_path / "probe.log"
    workers = [deployment.worker(probe=True).start() for _ in range(2)]
    with deployment.archive() as archive:
        payload = {"log": str(log), "seconds": 1.5}
        assert archive.jobs.enqueue("probe.record", payload | {"n": 1}, dedupe_key="k")
        wait_until(lambda: any(e["event"] == "start" for e in _events(log)), 60, "job 1")
        assert archive.jobs.enqueue("probe.record", payload | {"n": 2}, dedupe_key="k")
        assert archive.jobs.enqueue("probe.record", payload | {"n": 3}, dedupe_key="k") is None
        assert archive.jobs.pending("k")
        latest = archive.jobs.latest("k")  # the newest of the key: job 2, waiting
        assert latest is not None and (latest.payload["n"], latest.state) == (2, "queued")
    wait_until(lambda: not deployment.jobs("probe."), 120, "the probe jobs to run")
    for worker in workers:
        worker.stop()
    with deployment.archive() as archive:
        assert archive.jobs.latest("k") is None  # finished jobs leave no row
    at = {(e["job"], e["event"]): e["at"] for e in _events(log)}
    assert set(at) == {(1, "start"), (1, "end"), (2, "start"), (2, "end")}
    assert at[(2, "start")] >= at[(1, "end")]


def test_a_failing_job_is_retried_with_back_off_then_marked_failed(deployment: Deployment,
                                                                   tmp_path: Path) -> None:
    log = tmp_path / "probe.log"
    worker = deployment.worker(probe=True).start()
    with deployment.archive() as archive:
        job_id = archive.jobs.enqueue("probe.fail", {"n": 0, "log": str(log)},
                                      dedupe_key="fails")
    [failed] = wait_until(lambda: [j for j in deployment.jobs("probe.")
                                   if j.state == "failed"], 60, "the job to fail for good")
    worker.stop()
    with deployment.archive() as archive:
        assert archive.jobs.latest("fails") == failed  # what the detection state reports
    assert (failed.id, failed.attempts) == (job_id, 3)
    assert "the probe fails on purpose" in failed.last_error
    attempts = [e["at"] for e in _events(log)]
    assert len(attempts) == 3  # the policy's three attempts, no more
    # Back-off: 0.5 s after the first failure, 1 s after the second (at least).
    assert attempts[1] - attempts[0] >= 0.5 and attempts[2] - attempts[1] >= 1.0
    assert f"job {job_id} (probe.fail) failed for good after 3 attempts" in worker.log()
