"""Group commit: many requests and associations share one fsync and one transaction, and
still nothing is acknowledged before it is durable.

Four views, each on the real thing:

- the mechanism (`GroupCommit`) with real threads: batches that queue while a group
  commits form the next group, and each caller returns only after its own group;
- the series hints of services/archive/group_index.py, on an archive of its own: a
  batch of one (a C-STORE) that follows others into a series still corrects the
  record's demographics, and still finds its series gone when it was deleted;
- a real ``cloudfilm serve`` with ``CLOUDFILM_DURABILITY_LOG``, fed by concurrent STOW-RS
  requests and C-STORE associations: the log (written by the server's own fsync, commit,
  rename and acknowledgement code) shows, for every acknowledged instance, its bytes
  fsynced and an fsync of ``incoming/`` begun after its name was made and returned
  before the index commit that names it, which precedes its publication and its
  acknowledgement; and some commits cover instances of several senders;
- kill -9 at a random moment under the same concurrent load: after a restart every
  acknowledged instance is readable and ``cloudfilm check`` is clean.
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage  # type: ignore[attr-defined]

from cloudfilm.domain.matching import Level, parse_query
from cloudfilm.services.archive.group_commit import GroupCommit
from cloudfilm.storage.blobs import blob_key_for
from conftest import Server, free_port, run_cli
from factory import make_instance, stow, to_bytes

STOW_SENDERS, STORE_SENDERS = 3, 2


# -- the mechanism -----------------------------------------------------------------------
def test_batches_queued_during_a_commit_are_committed_together_and_wait_for_it() -> None:
    entered, release = threading.Event(), threading.Event()
    groups: list[list[str]] = []

    def commit(batches: list[str]) -> None:
        groups.append(list(batches))
        entered.set()
        release.wait(30)

    group: GroupCommit[str] = GroupCommit(commit)
    returned: list[str] = []

    def submit(name: str) -> None:
        group.submit(name)
        returned.append(name)

    first = threading.Thread(target=submit, args=("first",))
    first.start()
    assert entered.wait(30)
    others = [threading.Thread(target=submit, args=(f"later{i}",)) for i in range(5)]
    for thread in others:
        thread.start()
    while group.waiting < 5:
        time.sleep(0.01)
    assert returned == [], "nobody returns while the group holding their batch commits"
    release.set()
    for thread in [first, *others]:
        thread.join(30)
    assert groups == [["first"], [f"later{i}" for i in range(5)]]
    assert sorted(returned) == sorted(["first", *(f"later{i}" for i in range(5))])


def test_a_failed_group_commit_fails_every_caller_of_that_group() -> None:
    def commit(batches: list[int]) -> None:
        raise OSError("disk full")

    group: GroupCommit[int] = GroupCommit(commit)
    errors: list[BaseException] = []

    def submit(number: int) -> None:
        try:
            group.submit(number)
        except OSError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(errors) == 4


# -- what one batch learns, the next checks ------------------------------------------------
def _one_by_one(archive: Any, *datasets: Dataset) -> list[str]:
    """Ingest each instance as a batch of its own (as C-STORE does); their statuses."""
    return [archive.ingest.ingest_staged([archive.blobs.stage_bytes(to_bytes(ds))])[0].status
            for ds in datasets]


def test_a_later_instance_with_corrected_demographics_still_corrects_the_record(
        archive: Any) -> None:
    study, series = generate_uid(), generate_uid()
    record = {"patient_id": "GC-DEMO", "issuer": "GC-HOSPITAL"}  # (issuerless ones never correct)
    first = make_instance(study=study, series=series, patient_name="Doe^Jon", **record)
    again = make_instance(study=study, series=series, patient_name="Doe^Jon", **record)
    fixed = make_instance(study=study, series=series, patient_name="Doe^John", **record)
    assert _one_by_one(archive, first, again, fixed) == ["stored"] * 3
    found = archive.query.search_studies(parse_query([("StudyInstanceUID", study)], Level.STUDY))
    assert found.items[0]["00100010"]["Value"] == [{"Alphabetic": "Doe^John"}]


def test_an_instance_of_a_series_deleted_meanwhile_recreates_the_series(archive: Any) -> None:
    study, series = generate_uid(), generate_uid()
    first = make_instance(study=study, series=series, patient_id="GC-DEL")
    second = make_instance(study=study, series=series, patient_id="GC-DEL")
    assert _one_by_one(archive, first) == ["stored"]
    assert archive.deletion.delete(study) == 1
    assert _one_by_one(archive, second) == ["stored"]
    kept = archive.retrieve.instance(study, series, second.SOPInstanceUID)
    with archive.retrieve.open(kept) as blob:
        assert blob.read(132)[128:] == b"DICM"


# -- a real server under concurrent load -------------------------------------------------
@dataclass
class Senders:
    """STOW-RS clients and C-STORE associations sending until stopped; what each was told."""

    server: Server
    acknowledged: dict[str, tuple[str, str, str, str]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Senders:
        for n in range(STOW_SENDERS):
            self.threads.append(threading.Thread(target=self._stow, args=(f"stow{n}",), daemon=True))
        for n in range(STORE_SENDERS):
            self.threads.append(threading.Thread(target=self._store, args=(f"STORE{n}",),
                                                 daemon=True))
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _ack(self, sender: str, datasets: list[Dataset]) -> None:
        with self.lock:
            for ds in datasets:
                self.acknowledged[str(ds.SOPInstanceUID)] = (
                    sender, str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
                    str(ds.SOPInstanceUID))

    def _stow(self, sender: str) -> None:
        with httpx.Client(base_url=self.server.dicomweb, headers=self.server.auth,
                          timeout=60) as http:
            while not self.stop.is_set():
                study = generate_uid()
                batch = [make_instance(study=study, patient_id=f"GC-{sender}", rows=64,
                                       columns=64, instance_number=i) for i in range(6)]
                try:
                    response = stow(http, [to_bytes(ds) for ds in batch])
                except httpx.HTTPError:
                    return  # the server died mid-request: nothing of this batch was acknowledged
                if response.status_code == 200:
                    self._ack(sender, batch)

    def _store(self, ae_title: str) -> None:
        ae = AE(ae_title=ae_title)
        ae.add_requested_context(CTImageStorage)
        while not self.stop.is_set():
            assoc = ae.associate("127.0.0.1", self.server.dimse_port, ae_title=self.server.ae_title)
            if not assoc.is_established:
                return
            study = generate_uid()
            try:
                for number in range(8):
                    if self.stop.is_set():
                        break
                    ds = make_instance(study=study, patient_id=f"GC-{study[-12:]}", rows=64,
                                       columns=64, instance_number=number)
                    status = assoc.send_c_store(ds)
                    if not status or status.Status != 0x0000:
                        return  # refused, aborted, or the server died: not acknowledged
                    self._ack(ae_title, [ds])
            finally:
                if assoc.is_established:
                    assoc.release()


def _serve(server: Server, **env: str) -> Server:
    """DIMSE on; any AE may C-STORE (each association stores a patient of its own)."""
    server.dimse_port = free_port()
    server.extra_env = {"CLOUDFILM_DIMSE_ALLOW": "any", **env}
    return server.start()


def _send_until(senders: Senders, enough: int, limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while len(senders.acknowledged) < enough and time.monotonic() < deadline:
        time.sleep(0.1)


@dataclass
class DurabilityLog:
    """The server's log of durable steps, indexed by line number."""

    lines: list[list[str]]
    incoming: str

    def first(self, what: str, subject: str) -> int:
        return next(i for i, line in enumerate(self.lines) if line[0] == what and subject in line[1:])

    def fsyncs(self, path: str) -> dict[str, tuple[int, int]]:
        """fsync number -> (line where it began, line where it returned) for one path."""
        spans: dict[str, list[int]] = defaultdict(list)
        for i, line in enumerate(self.lines):
            if line[0] in ("fsync-begin", "fsync") and line[2] == path:
                spans[line[1]].append(i)
        return {n: (s[0], s[-1]) for n, s in spans.items() if len(s) == 2}

    def renamed_to(self, key: str) -> tuple[int, str]:
        return next((i, line[1]) for i, line in enumerate(self.lines)
                    if line[0] == "rename" and line[2].endswith(key))


def test_nothing_is_acknowledged_before_its_bytes_name_and_row_are_durable(
        fresh_server: Server, tmp_path: Path) -> None:
    log_path = tmp_path / "durability.log"
    _serve(fresh_server, CLOUDFILM_DURABILITY_LOG=str(log_path))
    senders = Senders(fresh_server).start()
    _send_until(senders, 150)
    senders.finish()
    fresh_server.stop()
    assert len(senders.acknowledged) >= 50, "the senders should have been acknowledged often"
    log = DurabilityLog([line.split(" ") for line in log_path.read_text().splitlines()],
                        str(fresh_server.data_dir / "incoming"))
    staging_fsyncs = log.fsyncs(log.incoming).values()
    commits = [i for i, line in enumerate(log.lines) if line[0] == "commit"]
    for sop, (sender, *_) in senders.acknowledged.items():
        acked = log.first("ack", sop)
        committed = log.first("commit", sop)
        published, staged = log.renamed_to(blob_key_for(sop))
        named = log.first("staged", staged)
        bytes_durable = min(end for begin, end in log.fsyncs(staged).values())
        assert bytes_durable < committed, f"{sop} of {sender}: committed before its bytes were"
        assert any(named < begin and end < committed for begin, end in staging_fsyncs), \
            f"{sop} of {sender}: committed before an fsync of incoming/ covered its name"
        assert committed < published < acked, f"{sop} of {sender}: acknowledged too early"
    senders_per_commit = [{senders.acknowledged[s][0] for s in log.lines[i][1:]
                           if s in senders.acknowledged} for i in commits]
    assert max(map(len, senders_per_commit)) > 1, "no commit covered two senders"
    assert len(staging_fsyncs) < len(senders.acknowledged), "one staging fsync covers many"


@pytest.mark.parametrize("attempt", range(2))
def test_kill_9_under_concurrent_stow_and_c_store_loses_nothing_acknowledged(
        fresh_server: Server, attempt: int) -> None:
    _serve(fresh_server)
    senders = Senders(fresh_server).start()
    _send_until(senders, 10)
    time.sleep(random.random() * 2)  # then kill at a random point of the traffic
    fresh_server.kill()
    senders.finish()
    acknowledged = dict(senders.acknowledged)
    assert acknowledged, "the senders should have been acknowledged before the kill"
    fresh_server.start()  # restart runs recovery
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth,
                      timeout=60) as http:
        for sender, study, series, sop in acknowledged.values():
            url = f"/studies/{study}/series/{series}/instances/{sop}"
            response = http.get(url, headers={"accept": "multipart/related; type=application/dicom"})
            assert response.status_code == 200, f"{sop} acknowledged to {sender} is missing"
            assert re.search(rb"DICM", response.content), f"{sop}: not a Part-10 object"
    fresh_server.stop()
    check = run_cli(["check", "--data", str(fresh_server.data_dir)], fresh_server.database_url)
    assert check.returncode == 0, check.stdout


def test_concurrent_stows_of_the_same_new_patients_in_opposite_orders_all_succeed(
        fresh_server: Server) -> None:
    """Two requests creating the same two new patients, in opposite orders, at once: on
    PostgreSQL each transaction used to lock one patient's new row and wait for the
    other's, until one was aborted as a deadlock and its sender got a 500. In one group
    commit both are one transaction; every request is answered 200 and every instance
    stored."""
    fresh_server.start()
    failures: list[str] = []
    stored: list[str] = []

    def send(patients: list[str], round_: int) -> None:
        batch = [make_instance(patient_id=p, issuer="GC-ORDER", rows=16, columns=16)
                 for p in patients]
        with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth,
                          timeout=60) as http:
            answer = stow(http, [to_bytes(ds) for ds in batch])
        if answer.status_code != 200:
            failures.append(f"round {round_}: {answer.status_code} {answer.text[:200]}")
        stored.extend(str(ds.SOPInstanceUID) for ds in batch)

    for round_ in range(12):
        first, second = f"GC-A{round_}", f"GC-B{round_}"
        senders = [threading.Thread(target=send, args=(order, round_))
                   for order in ([first, second], [second, first])]
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(60)
    assert failures == []
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth,
                      timeout=60) as http:
        found = http.get("/instances", params={"PatientID": "GC-*", "limit": "1000"})
    assert found.status_code == 200
    assert sorted(i["00080018"]["Value"][0] for i in found.json()) == sorted(stored)
