"""Scale-out (issue 13): two stateless ``cloudfilm serve`` nodes, one ``cloudfilm worker``,
PostgreSQL, RabbitMQ and an S3 peer (moto in server mode), behind HAProxy, all real
processes on loopback.

Each node has its own ``--data`` directory (scratch only) and the same
``CLOUDFILM_SECRET_KEY``; neither runs jobs (``CLOUDFILM_EMBEDDED_WORKER=false``). The
tests show that what one node does is seen by the other at the next request: stored
studies, share revocation, lock-outs, changed metadata, imported SRs, DIMSE peers and
what they sent, an archive that survives kill -9 of a node during STOW and of the worker
during registration, one audit chain under concurrent writers on both, and reminders
sent once by two workers.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import PostgresSchema, Server, admin_token, cli_env, database_url_for, free_port
from factory import make_instance, parse_multipart, stow, to_bytes
from jobs_wait import wait_for_tracking
from test_dimse import STORE_CALLER, add_node, dcmtk, findscu, getscu, pixel_bytes
from test_jobs import RABBITMQ, _assert_tracked_across_hospitals, _measure_two_scans, wait_until
from test_login import PASSWORD, login
from test_nodule_care import ohif_nodule_sr

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "cloudfilm-test", "AWS_SECRET_ACCESS_KEY": "not-a-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

# -- the peers ----------------------------------------------------------------------------------

def _wait_http(url: str, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _haproxy_config(port: int, nodes: list[int]) -> str:
    """deploy/haproxy.cfg, the example docs/deploy.md shows, bound to ``port`` on loopback
    with one ``server`` line per node."""
    lines = []
    for line in (DEPLOY / "haproxy.cfg").read_text().splitlines():
        if line.strip().startswith("bind "):
            line = f"    bind 127.0.0.1:{port}"
        elif line.strip().startswith("server "):
            continue
        lines.append(line)
    servers = [f"    server node{n} 127.0.0.1:{p}" for n, p in enumerate(nodes, 1)]
    return "\n".join(lines + servers) + "\n"


@dataclass
class Cluster:
    """Everything the nodes share (index, bucket, queue, key) and the processes."""

    base: Path
    database_url: str
    schema: PostgresSchema | None
    shared_env: dict[str, str]
    nodes: list[Server] = field(default_factory=list)
    worker: subprocess.Popen[bytes] | None = None
    haproxy: subprocess.Popen[bytes] | None = None
    balancer_port: int = 0
    worker_logs: int = 0

    def env(self) -> dict[str, str]:
        return cli_env(self.database_url) | self.shared_env

    def cli(self, *args: str, data: Path) -> subprocess.CompletedProcess[str]:
        """A ``cloudfilm`` command as an operator runs it, with the nodes' settings."""
        return subprocess.run([sys.executable, "-m", "cloudfilm", *args, "--data", str(data)],
                              env=self.env(), capture_output=True, text=True, timeout=900)

    def start_worker(self) -> None:
        self.worker = self.another_worker("worker")

    def another_worker(self, name: str) -> subprocess.Popen[bytes]:
        """A ``cloudfilm worker`` with a data directory of its own, started and ready."""
        self.worker_logs += 1
        log_path = self.base / f"worker-{self.worker_logs}.log"
        with open(log_path, "ab") as log:
            worker = subprocess.Popen(
                [sys.executable, "-m", "cloudfilm", "worker", "--data", str(self.base / name)],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: "cloudfilm worker:" in log_path.read_text(errors="replace"), 60,
                   "the worker to start", alive=worker)
        return worker

    def kill_worker(self) -> None:
        """kill -9: no clean-up, no lease given back."""
        assert self.worker is not None
        self.worker.kill()
        self.worker.wait()

    def start_balancer(self) -> None:
        self.balancer_port = free_port()
        config = self.base / "haproxy.cfg"
        config.write_text(_haproxy_config(self.balancer_port, [n.port for n in self.nodes]))
        with open(self.base / "haproxy.log", "ab") as log:
            self.haproxy = subprocess.Popen(["haproxy", "-db", "-f", str(config)],
                                            stdout=log, stderr=subprocess.STDOUT)
        _wait_http(f"{self.balancer}/healthz", self.haproxy, "haproxy")

    @property
    def balancer(self) -> str:
        return f"http://127.0.0.1:{self.balancer_port}"

    def jobs(self, prefix: str) -> list[Any]:
        from cloudfilm.services.jobs.ledger import Ledger
        from cloudfilm.storage.index.db import Index

        index = Index(self.database_url)
        try:
            return [j for j in Ledger(index).jobs() if j.name.startswith(prefix)]
        finally:
            index.dispose()

    def close(self) -> None:
        _stop(self.haproxy)
        for node in self.nodes:
            node.stop()
        _stop(self.worker)
        if self.schema:
            self.schema.drop()


@pytest.fixture(scope="module")
def moto_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``python -m moto.server`` on a loopback port: the S3 peer, in its own process."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                    "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_http(f"http://127.0.0.1:{port}/", process, "the moto server")
        yield port
    finally:
        _stop(process)


def _bucket_env(moto_port: int) -> dict[str, str]:
    endpoint = f"http://127.0.0.1:{moto_port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
    name = f"cloudfilm-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    return CREDENTIALS | {"CLOUDFILM_BLOB_URL": f"s3://{name}/archive?endpoint_url={endpoint}"}


def _purge_queue(queue_url: str) -> None:
    import pika

    from cloudfilm.services.jobs.brokers import split_queue

    url, name = split_queue(queue_url)
    with pika.BlockingConnection(pika.URLParameters(url)) as connection:
        channel = connection.channel()
        for queue in (name, f"{name}.DQ", f"{name}.XQ"):
            channel.queue_delete(queue)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, moto_port: int) -> Iterator[Cluster]:
    """Demo data (one patient, three CTs at two hospitals, one person), two nodes, one
    worker and the load balancer."""
    base = tmp_path_factory.mktemp("cluster")
    url, schema = database_url_for("postgresql", base)
    queue = f"{RABBITMQ}?queue=cf_cluster_{os.getpid()}_{time.monotonic_ns()}"
    made = Cluster(base, url, schema, _bucket_env(moto_port) | {
        "CLOUDFILM_QUEUE_URL": queue, "CLOUDFILM_SECRET_KEY": secrets.token_hex(32),
        "CLOUDFILM_EMBEDDED_WORKER": "false",
        # Reminders every 2 s, so that two workers tick them many times in a test.
        "CLOUDFILM_REMINDER_INTERVAL": "2", "CLOUDFILM_NOTIFY_INTERVAL": "1"})
    try:
        demo = made.cli("demo", "--patients", "1", "--slices", "80", "--images-only",
                        data=base / "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        _person_of(made, json.loads((base / "demo" / "demo-truth.json").read_text()))
        for n in (1, 2):
            (base / f"node{n}").mkdir()
            made.nodes.append(Server(base / f"node{n}" / "data", url, dimse_port=free_port(),
                                     extra_env=made.shared_env).start())
        made.start_worker()
        made.start_balancer()
        # Known DIMSE peers, registered through node 1 only: a modality and a workstation.
        add_node(made.nodes[0], "modality", STORE_CALLER)
        for ae_title in ("FINDSCU", "GETSCU"):
            add_node(made.nodes[0], ae_title.lower(), ae_title, sees="all")
        yield made
    finally:
        made.close()
        _purge_queue(queue)


def _person_of(made: Cluster, truth: dict[str, Any]) -> None:
    [patient] = truth["patients"]
    data = made.base / "demo"
    added = made.cli("person", "add", "Demo Person", data=data)
    assert added.returncode == 0, added.stderr
    for record in patient["records"]:
        linked = made.cli("person", "link", added.stdout.strip(), "--patient-id",
                          record["patient_id"], "--issuer", record["issuer"], data=data)
        assert linked.returncode == 0, linked.stderr


def _url(ds: Any) -> str:
    return (f"/dicomweb/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}")


def _retrieve(http: httpx.Client, ds: Any) -> bytes:
    response = http.get(_url(ds), headers={"accept": AS_STORED})
    assert response.status_code == 200, response.text
    [(_, data)] = parse_multipart(response)
    return data


def _dicomweb(node: Server) -> httpx.Client:
    return httpx.Client(base_url=node.dicomweb, headers=node.auth, timeout=120)


# -- the tests ----------------------------------------------------------------------------------

def test_a_study_stored_through_node_1_is_read_through_node_2_and_the_balancer(
        cluster: Cluster) -> None:
    node1, node2 = cluster.nodes
    study = generate_uid()
    instances = [make_instance(study=study, rows=64, columns=64, seed=n, instance_number=n)
                 for n in range(1, 4)]
    with _dicomweb(node1) as http:
        assert stow(http, [to_bytes(ds) for ds in instances]).status_code == 200
    with node2.http() as http:
        for ds in instances:
            assert _retrieve(http, ds) == to_bytes(ds)
        found = http.get("/dicomweb/studies", params={"StudyInstanceUID": study})
        assert found.status_code == 200 and len(found.json()) == 1
    served_by = set()
    with httpx.Client(base_url=cluster.balancer, headers=node1.auth, timeout=120) as http:
        for ds in instances + instances:
            response = http.get(_url(ds), headers={"accept": AS_STORED})
            assert response.status_code == 200, response.text
            assert parse_multipart(response)[0][1] == to_bytes(ds)
            served_by.add(response.headers["x-served-by"])
    assert served_by == {"node1", "node2"}  # round robin: both nodes answered


def test_a_share_revoked_on_node_1_is_refused_on_node_2_at_the_next_request(
        cluster: Cluster) -> None:
    """The demo person's third CT (a share needs a person's folder), shared by an admin."""
    node1, node2 = cluster.nodes
    truth = json.loads((cluster.base / "demo" / "demo-truth.json").read_text())
    study = truth["patients"][0]["studies"][2]["study_uid"]
    with node1.http() as owner, httpx.Client(base_url=node2.url, timeout=60) as browser:
        created = owner.post("/api/shares", json={"audience": "link",
                                                  "scope": {"studies": [study]}})
        assert created.status_code == 201, created.text
        path = "/" + created.json()["url"].split("://", 1)[1].split("/", 1)[1]
        opened = browser.get(path, follow_redirects=False)  # opened on node 2
        assert opened.status_code == 303 and "cf_session" in browser.cookies
        assert browser.get("/shared").status_code == 200
        assert browser.get(f"/shared/studies/{study}").status_code == 200
        assert owner.delete(f"/api/shares/{created.json()['id']}").status_code == 204
        assert browser.get("/shared").status_code == 401  # the next request on node 2
        assert browser.get(f"/shared/studies/{study}").status_code in (401, 404)


def test_failed_logins_on_both_nodes_lock_the_account_out_on_both(cluster: Cluster) -> None:
    """Five wrong passwords from one address, alternating between the nodes, lock that
    account at that address on every node; the balancer forwards the client's address
    (``option forwardfor``), so another client behind it is not locked out."""
    from cloudfilm.services.access.accounts import AccountService
    from cloudfilm.storage.index.db import Index

    name = f"u{secrets.token_hex(4)}"
    index = Index(cluster.database_url)
    try:
        AccountService(index).add_user(name, "physician", PASSWORD)
    finally:
        index.dispose()
    guesser = {"X-Forwarded-For": "198.51.100.77"}
    statuses = []
    for attempt in range(5):
        node = cluster.nodes[attempt % 2]
        with httpx.Client(base_url=node.url, timeout=60, headers=guesser) as client:
            statuses.append(login(client, name, "guess").status_code)
    assert statuses == [401, 401, 401, 401, 429]
    for node in cluster.nodes:
        with httpx.Client(base_url=node.url, timeout=60, headers=guesser) as client:
            assert login(client, name, PASSWORD).status_code == 429
    with httpx.Client(base_url=cluster.balancer, timeout=60, headers=guesser) as client:
        assert login(client, name, PASSWORD).status_code == 429
    owner = {"X-Forwarded-For": "198.51.100.78"}
    with httpx.Client(base_url=cluster.balancer, timeout=60, headers=owner) as client:
        assert login(client, name, PASSWORD).status_code == 303  # the form came from the other node
        assert client.get("/api/me").json()["username"] == name


def test_metadata_follows_what_the_other_node_stored_and_deleted(cluster: Cluster) -> None:
    """No node keeps a copy of the index: an instance added through one node is in the
    other's series metadata and QIDO at the next request, and a deleted study is gone."""
    node1, node2 = cluster.nodes
    study, series = generate_uid(), generate_uid()
    first, second = (make_instance(study=study, series=series, rows=64, columns=64, seed=n,
                                   instance_number=n, issuer="CLUSTER-SCRATCH") for n in (1, 2))
    kept = cluster.cli("retention", "policy", "set", "CLUSTER-SCRATCH", "--min-years", "0",
                       data=node1.data_dir)  # this source's studies may be deleted at once
    assert kept.returncode == 0, kept.stdout + kept.stderr
    metadata = f"/studies/{study}/series/{series}/metadata"

    def sops(http: httpx.Client) -> list[str]:
        answer = http.get(metadata)
        assert answer.status_code == 200, answer.text
        return sorted(m["00080018"]["Value"][0] for m in answer.json())

    with _dicomweb(node1) as one, _dicomweb(node2) as two:
        assert stow(one, [to_bytes(first)]).status_code == 200
        assert sops(two) == [first.SOPInstanceUID]
        assert stow(two, [to_bytes(second)]).status_code == 200
        assert sops(one) == sorted([first.SOPInstanceUID, second.SOPInstanceUID])
        counted = one.get("/studies", params={"StudyInstanceUID": study,
                                              "includefield": "00201208"}).json()
        assert counted[0]["00201208"]["Value"] == [2]
        assert one.delete(f"/studies/{study}").json() == {"deleted_instances": 2}
        assert two.get(metadata).status_code == 404
        assert two.get("/studies", params={"StudyInstanceUID": study}).json() in ([], None)


def test_dimse_peers_and_what_they_send_are_known_to_either_node(cluster: Cluster,
                                                                 tmp_path: Path) -> None:
    """The peers were registered through node 1. A modality sends to node 2; a workstation
    finds and retrieves the study from node 1, byte for byte."""
    node1, node2 = cluster.nodes
    study = generate_uid()
    folder = tmp_path / "sent"
    folder.mkdir()
    sent: dict[str, bytes] = {}
    for n in (1, 2, 3):
        ds = make_instance(study=study, rows=64, columns=64, seed=n, instance_number=n,
                           patient_id="CLUSTER-DIMSE")
        sent[str(ds.SOPInstanceUID)] = to_bytes(ds)
        (folder / f"{n}.dcm").write_bytes(sent[str(ds.SOPInstanceUID)])
    stored = dcmtk("storescu", "-aec", node2.ae_title, "+sd", "127.0.0.1",
                   str(node2.dimse_port), folder)
    assert stored.returncode == 0, stored.stdout
    with node1.http() as http:
        listed = http.get("/dicomweb/studies", params={"StudyInstanceUID": study})
        assert len(listed.json()) == 1, stored.stdout
    [found] = findscu(node1, tmp_path / "found", "-S", "QueryRetrieveLevel=STUDY",
                      f"StudyInstanceUID={study}", "NumberOfStudyRelatedInstances")
    assert found.NumberOfStudyRelatedInstances == 3
    got = getscu(node1, tmp_path / "got", "-k", "QueryRetrieveLevel=STUDY",
                 "-k", f"StudyInstanceUID={study}")
    assert got.returncode == 0, got.stdout
    received = {str(pydicom.dcmread(p).SOPInstanceUID): pixel_bytes(p)
                for p in (tmp_path / "got").iterdir()}
    assert received == {sop: pixel_bytes(data) for sop, data in sent.items()}


def test_two_workers_send_a_share_reminder_once(cluster: Cluster) -> None:
    """Both workers tick the reminder jobs every 2 s (the fixture's interval); a share
    ending in three days is reminded to its owner once, seen on the other node."""
    node1, node2 = cluster.nodes
    truth = json.loads((cluster.base / "demo" / "demo-truth.json").read_text())
    study = truth["patients"][0]["studies"][0]["study_uid"]
    second = cluster.another_worker("worker-2")
    try:
        with node1.http() as owner:
            until = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()
            created = owner.post("/api/shares", json={
                "audience": "link", "scope": {"studies": [study]}, "valid_until": until})
            assert created.status_code == 201, created.text
        with node2.http() as owner:
            def reminders() -> list[dict[str, Any]]:
                listed = owner.get("/api/me/notifications")
                assert listed.status_code == 200, listed.text
                return [n for n in listed.json() if n["kind"] == "share-expiring"]

            wait_until(reminders, 60, "the reminder")
            time.sleep(6)  # three more ticks of each worker
            assert len(reminders()) == 1
    finally:
        _stop(second)


def _access_denied_records(cluster: Cluster) -> int:
    from sqlalchemy import func, select

    from cloudfilm.storage.index.access_models import AuditEventRow
    from cloudfilm.storage.index.db import Index

    index = Index(cluster.database_url)
    try:
        with index.session() as session:
            return int(session.scalar(select(func.count()).select_from(AuditEventRow).where(
                AuditEventRow.action == "access-denied")) or 0)
    finally:
        index.dispose()


def test_the_audit_chain_verifies_after_concurrent_writes_on_both_nodes(cluster: Cluster) -> None:
    """Two threads per node, 50 refused requests each: every refusal of a signed-in user is
    one audit record, so 200 appends race across two processes."""
    token = admin_token(cluster.database_url, f"cluster-patient-{secrets.token_hex(3)}",
                        "patient")
    before = _access_denied_records(cluster)
    failures: list[str] = []

    def refused(node: Server) -> None:
        with httpx.Client(base_url=node.url, timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            for _ in range(50):
                answer = http.get("/api/audit")
                if answer.status_code != 403:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")

    threads = [threading.Thread(target=refused, args=(node,))
               for node in cluster.nodes for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert _access_denied_records(cluster) - before == 200
    for node in cluster.nodes:  # each node's anchor file holds checkpoints of the one chain
        verified = cluster.cli("audit", "verify", data=node.data_dir)
        assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_worker_killed_during_registration_completes_after_a_restart(cluster: Cluster) -> None:
    truth = json.loads((cluster.base / "demo" / "demo-truth.json").read_text())
    node1, node2 = cluster.nodes
    _stop(cluster.worker)  # measure both scans first, so that one job settles the folder
    with node1.http() as http:
        first, second = _measure_two_scans(http, truth["patients"][0])
    [job] = cluster.jobs("nodules.settle")
    cluster.start_worker()
    wait_until(lambda: [j for j in cluster.jobs("nodules.settle")
                                if j.state == "running"], 120, "the worker to take the job")
    cluster.kill_worker()
    [left] = cluster.jobs("nodules.settle")  # killed mid-job: not finished
    assert (left.id, left.state) == (job.id, "running")
    with node2.http() as http:
        assert http.get(f"/api/studies/{second['study_uid']}/nodules").json()["tracking"] \
            == "pending"
        cluster.start_worker()
        _assert_tracked_across_hospitals(http, first, second)
        assert wait_for_tracking(http, first["study_uid"])["assessment"] is not None
    assert cluster.jobs("nodules.settle") == []


def test_an_ohif_sr_read_on_both_nodes_at_once_is_imported_once(cluster: Cluster) -> None:
    """OHIF stores its TID 1500 SR through node 1; readers on both nodes open the study's
    nodules at the same moment: one imported measurement, not one per node or reader."""
    truth = json.loads((cluster.base / "demo" / "demo-truth.json").read_text())
    study = truth["patients"][0]["studies"][2]
    node1, node2 = cluster.nodes
    with _dicomweb(node1) as http:
        sr, part10 = ohif_nodule_sr(http, study)
        assert stow(http, [part10]).status_code == 200

    start = threading.Barrier(6)

    def read(node: Server) -> int:
        with node.http() as http:
            start.wait()  # all six at once
            return http.get(f"/api/studies/{study['study_uid']}/nodules").status_code

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(read, cluster.nodes * 3))
    assert answers == [200] * 6
    with node2.http() as http:
        measurements = wait_for_tracking(http, study["study_uid"])["measurements"]
    imported = [m for m in measurements if m["source"] == "sr-import"]
    assert [m["sr_instance_uid"] for m in imported] == [sr.SOPInstanceUID]


def test_kill_9_of_node_1_during_stow_loses_no_acknowledged_instance(cluster: Cluster) -> None:
    node1, node2 = cluster.nodes
    study = generate_uid()
    acknowledged: list[Any] = []
    stopped = threading.Event()

    def send() -> None:
        with _dicomweb(node1) as http:
            for n in range(1, 400):
                ds = make_instance(study=study, rows=128, columns=128, seed=n, instance_number=n)
                try:
                    answer = stow(http, [to_bytes(ds)])
                except httpx.HTTPError:
                    break
                if answer.status_code == 200:
                    acknowledged.append(ds)
        stopped.set()

    sender = threading.Thread(target=send)
    sender.start()
    wait_until(lambda: len(acknowledged) >= 20 or stopped.is_set(), 300, "20 acknowledged STOWs")
    node1.kill()
    sender.join()
    assert 20 <= len(acknowledged) < 399  # the kill came mid-sequence
    try:
        with node2.http() as http:  # while node 1 is down
            for ds in acknowledged:
                assert _retrieve(http, ds) == to_bytes(ds)
    finally:
        # Restarted, as systemd would: its start-up recovery deletes the object of a STOW
        # cut off between the upload and the index row (node 1's staged file names it).
        node1.start()
    checked = cluster.cli("check", data=node2.data_dir)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "clean" in checked.stdout
    with httpx.Client(base_url=cluster.balancer, headers=node1.auth, timeout=120) as http:
        wait_until(lambda: {http.get("/healthz").headers["x-served-by"] for _ in range(4)}
                   == {"node1", "node2"}, 60, "the balancer to take node 1 back")
