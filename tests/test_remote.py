"""``cloudfilm remote find|fetch|send`` against a real Orthanc ("another hospital's PACS"),
on SQLite and PostgreSQL.

Orthanc is seeded through its REST API; cloudfilm (``serve`` with DIMSE on, so Orthanc can
C-MOVE to it) queries it by C-FIND and QIDO-RS, retrieves by C-MOVE, C-GET and WADO-RS,
and sends by C-STORE. What arrives is checked through cloudfilm's DICOMweb and Orthanc's
REST API against the bytes that were sent.
"""

from __future__ import annotations

import io
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid

from cloudfilm.config import Settings
from cloudfilm.services.archive.retention import Retention
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.remote import RemoteService
from cloudfilm.services.exchange.remote_types import RemoteError, StudyQuery
from cloudfilm.storage.index.db import Index
from conftest import Server, database_url_for, free_port, run_cli
from factory import make_instance, parse_multipart, sample, stow, to_bytes
from orthanc_peer import AE_TITLE as ORTHANC_AET
from orthanc_peer import OrthancPeer, running_orthanc

OUR_AET = "CLOUDFILM"
AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
# Study- and patient-level attributes copied onto the pydicom samples so that every
# instance of a seeded study agrees (Orthanc and cloudfilm both keep them per study).
SHARED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate",
          "StudyTime", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDescription")


@dataclass
class Env:
    peer: OrthancPeer
    server: Server

    def cli(self, *args: str) -> tuple[int, str, float]:
        """Run ``cloudfilm ARGS --data <the server's data>``; (exit status, output, seconds)."""
        started = time.monotonic()
        done = run_cli([*args, "--data", str(self.server.data_dir)], self.server.database_url)
        return done.returncode, done.stdout + done.stderr, time.monotonic() - started

    @contextmanager
    def archive(self) -> Iterator[Archive]:
        """The server's archive opened in this process, as the CLI opens it."""
        archive = Archive.open(Settings.load(self.server.data_dir, self.server.database_url),
                               recover=False)
        try:
            yield archive
        finally:
            archive.close()

    def fetch(self, node: str, study: str, *extra: str) -> tuple[int, str]:
        code, out, _ = self.cli("remote", "fetch", node, "--study", study, "--ae-title", OUR_AET,
                                "--dimse-port", str(self.server.dimse_port), *extra)
        return code, out


def _add_node(server: Server, name: str, port: int, dicomweb: str | None = None,
              aet: str = ORTHANC_AET) -> None:
    body = {"name": name, "aet": aet, "host": "127.0.0.1", "port": port, "dicomweb": dicomweb}
    response = httpx.post(f"{server.url}/api/admin/nodes", json=body, timeout=10,
                          headers=server.auth)
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def env(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """Orthanc (which knows us as a DICOM node; it refuses RLE so `send` must fall back)
    and a cloudfilm server with DIMSE on, each knowing the other."""
    root = tmp_path_factory.mktemp(f"remote-{database_kind}")
    dimse_port = free_port()
    with running_orthanc(root / "orthanc", {"cloudfilm": (OUR_AET, "127.0.0.1", dimse_port)},
                         extra_config={"RleTransferSyntaxAccepted": False}) as peer:
        url, schema = database_url_for(database_kind, root / "data")
        server = Server(root / "data", url, dimse_port=dimse_port, ae_title=OUR_AET)
        try:
            server.start()
            _allow_deletes(url)
            _add_node(server, "hospital-b", peer.dicom_port)
            _add_node(server, "hospital-b-web", peer.dicom_port, peer.dicomweb)
            yield Env(peer, server)
        finally:
            server.stop()
            if schema:
                schema.drop()


def _allow_deletes(database_url: str) -> None:
    """Resumed fetches delete an instance first: the retention policy must allow it."""
    index = Index(database_url)
    try:
        Retention(index).set_policy("*", 0)
    finally:
        index.dispose()


# -- seeding and checking -------------------------------------------------------
def _harmonized(name: str, like: pydicom.Dataset, study: str) -> pydicom.Dataset:
    ds = sample(name, study=study)
    for keyword in SHARED:
        setattr(ds, keyword, like.get(keyword, ""))
    return ds


def study_parts(patient_id: str, study_date: str = "20240115",
                extra_samples: tuple[str, ...] = ("MR_small_jp2klossless.dcm",),
                ) -> dict[str, bytes]:
    """A study: three CT instances (Explicit VR LE) in one series, plus one series per
    pydicom sample (compressed); SOP Instance UID -> Part-10 bytes."""
    study, series = generate_uid(), generate_uid()
    cts = [make_instance(study=study, series=series, patient_id=patient_id, instance_number=i,
                         study_date=study_date, seed=i, rows=24, columns=24,
                         StudyDescription=f"CHEST {patient_id}") for i in (1, 2, 3)]
    others = [_harmonized(name, cts[0], study) for name in extra_samples]
    return {str(ds.SOPInstanceUID): to_bytes(ds) for ds in cts + others}


def seed(peer: OrthancPeer, parts: dict[str, bytes]) -> str:
    for data in parts.values():
        peer.upload(data)
    assert set(peer.instances_of_study(study_of(parts))) == set(parts)
    return study_of(parts)


def study_of(parts: dict[str, bytes]) -> str:
    return str(pydicom.dcmread(io.BytesIO(next(iter(parts.values())))).StudyInstanceUID)


def stored_here(server: Server, study: str) -> dict[str, bytes]:
    """What cloudfilm returns for the study by WADO-RS, as stored."""
    response = httpx.get(f"{server.dicomweb}/studies/{study}",
                         headers={"accept": AS_STORED} | server.auth, timeout=60)
    if response.status_code == 404:
        return {}
    assert response.status_code == 200, response.text
    parts = [body for _, body in parse_multipart(response)]
    return {str(pydicom.dcmread(io.BytesIO(b)).SOPInstanceUID): b for b in parts}


def _read(data: bytes) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(data))


def _values(ds: pydicom.Dataset) -> dict[int, object]:
    """Element values by tag. VRs are left out: a DIMSE sender re-encodes the data set and
    DCMTK fixes the sample's encapsulated Pixel Data from OW to OB (PS3.5 §A.4 says OB);
    Data Set Trailing Padding carries no meaning and may be dropped (PS3.10 §7.2)."""
    return {int(el.tag): el.value for el in ds if el.tag != 0xFFFCFFFC}


def assert_same_data_sets(sent: dict[str, bytes], got: dict[str, bytes]) -> None:
    """Same instances, same transfer syntax, every data set element value equal (the file
    meta of a DIMSE transfer is rebuilt by the receiver, so it is not compared)."""
    assert set(got) == set(sent)
    for sop, data in sent.items():
        original, copy = _read(data), _read(got[sop])
        assert copy.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID, sop
        assert _values(copy) == _values(original), f"data set of {sop} differs"
        assert copy.PixelData == original.PixelData, sop


def _delete_here(server: Server, sop: str, parts: dict[str, bytes]) -> None:
    ds = _read(parts[sop])
    url = (f"{server.dicomweb}/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
           f"/instances/{sop}")
    assert httpx.delete(url, timeout=30, headers=server.auth).status_code == 200
    assert sop not in stored_here(server, str(ds.StudyInstanceUID))


def _plan(output: str) -> tuple[int, int, int, str]:
    """(remote instances, already here, fetching, method) from the fetch plan line."""
    match = re.search(r": (\d+) instances, (\d+) already here, fetching (\d+) by (\S+)", output)
    assert match, output
    return int(match[1]), int(match[2]), int(match[3]), match[4]


def _progress_uids(output: str) -> list[str]:
    return re.findall(r"\[\d+/\d+\] (\S+) ok", output)


# -- find ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_studies(env: Env) -> tuple[str, str, str]:
    """One patient, two studies at Orthanc: (patient, CT+MR study of Jan 2024, CT of 2023)."""
    patient = "PID-" + secrets.token_hex(4)
    recent = seed(env.peer, study_parts(patient, "20240115"))
    older = seed(env.peer, study_parts(patient, "20230610", extra_samples=()))
    return patient, recent, older


def _found(output: str) -> dict[str, list[str]]:
    rows = [line.split("\t") for line in output.splitlines() if line.count("\t") == 6]
    return {row[0]: row for row in rows}


@pytest.mark.parametrize("node", ["hospital-b", "hospital-b-web"], ids=["c-find", "qido-rs"])
def test_find(env: Env, two_studies: tuple[str, str, str], node: str) -> None:
    """The command prints one line per study; the filters are checked through the same
    service in-process (each CLI start costs seconds)."""
    patient, recent, older = two_studies
    code, out, _ = env.cli("remote", "find", node, "--patient-id", patient)
    assert code == 0, out
    found = _found(out)
    assert set(found) == {recent, older}, out
    _uid, date, pid, name, modalities, description, count = found[recent]
    assert (date, pid, name, description, count) == ("20240115", patient, "Doe^John",
                                                     f"CHEST {patient}", "4")
    assert set(modalities.split("\\")) == {"CT", "MR"}
    assert found[older][1] == "20230610" and found[older][6] == "3"
    with env.archive() as archive:
        service = RemoteService(archive)

        def matches(**keys: str) -> set[str]:
            return {s.study_uid for s in service.find(node, StudyQuery(patient_id=patient, **keys))}

        assert matches(study_date="20240101-20240131") == {recent}
        assert matches(study_date="-20231231") == {older}
        assert matches(modality="MR") == {recent}
        assert matches(modality="US") == set()


# -- fetch --------------------------------------------------------------------
def test_fetch_by_c_get(env: Env) -> None:
    parts = study_parts("PID-" + secrets.token_hex(4))
    study = seed(env.peer, parts)
    code, out = env.fetch("hospital-b", study, "--via", "get")
    assert code == 0, out
    assert _plan(out) == (4, 0, 4, "C-GET")
    assert sorted(_progress_uids(out)) == sorted(parts)
    assert_same_data_sets(parts, stored_here(env.server, study))
    code, out = env.fetch("hospital-b", study, "--via", "get")
    assert code == 0 and _plan(out) == (4, 4, 0, "C-GET"), out


def test_fetch_by_wado_rs_is_resumable(env: Env) -> None:
    parts = study_parts("PID-" + secrets.token_hex(4))
    study = seed(env.peer, parts)
    code, out = env.fetch("hospital-b-web", study)
    assert code == 0, out
    assert _plan(out) == (4, 0, 4, "WADO-RS")
    assert stored_here(env.server, study) == parts  # as stored: the very same bytes
    lost = sorted(parts)[1]
    _delete_here(env.server, lost, parts)
    code, out = env.fetch("hospital-b-web", study)
    assert code == 0, out
    assert _plan(out) == (4, 3, 1, "WADO-RS")
    assert _progress_uids(out) == [lost]
    assert stored_here(env.server, study) == parts


def test_fetch_by_c_move_is_resumable(env: Env) -> None:
    parts = study_parts("PID-" + secrets.token_hex(4))
    study = seed(env.peer, parts)
    code, out = env.fetch("hospital-b", study)  # no DICOMweb URL: C-MOVE by default
    assert code == 0, out
    assert _plan(out) == (4, 0, 4, "C-MOVE")
    assert "fetched 4, failed 0; 4 of 4 instances stored here" in out
    assert_same_data_sets(parts, stored_here(env.server, study))
    lost = sorted(parts)[0]
    _delete_here(env.server, lost, parts)
    code, out = env.fetch("hospital-b", study)
    assert code == 0, out
    assert _plan(out) == (4, 3, 1, "C-MOVE")
    assert "fetched 1, failed 0; 4 of 4 instances stored here" in out
    assert_same_data_sets(parts, stored_here(env.server, study))


def test_c_move_needs_our_server(env: Env) -> None:
    """A C-MOVE to an AE that isn't listening would silently lose the study: refused first."""
    parts = study_parts("PID-" + secrets.token_hex(4), extra_samples=())
    study = seed(env.peer, parts)
    closed = free_port()
    code, out, _ = env.cli("remote", "fetch", "hospital-b", "--study", study,
                           "--dimse-port", str(closed))
    assert code == 1, out
    assert f"C-MOVE needs our own DIMSE server running as {OUR_AET}@127.0.0.1:{closed}" in out
    assert stored_here(env.server, study) == {}


def test_fetch_reports_per_instance_failures(env: Env) -> None:
    """An instance that can't be stored here fails alone, with its reason; the rest arrive,
    the exit status says the study is incomplete, and a re-run retries only the failure."""
    parts = study_parts("PID-" + secrets.token_hex(4))
    study = seed(env.peer, parts)
    mr = next(sop for sop, data in parts.items() if _read(data).Modality == "MR")
    squatter = make_instance(series=str(_read(parts[mr]).SeriesInstanceUID))  # another study
    with httpx.Client(base_url=env.server.dicomweb, headers=env.server.auth, timeout=30) as client:
        assert stow(client, [to_bytes(squatter)]).status_code == 200
    code, out = env.fetch("hospital-b", study, "--via", "get")
    assert code == 1, out
    assert _plan(out) == (4, 0, 4, "C-GET")
    assert re.search(rf"FAILED {re.escape(mr)}: .*already belongs to another study", out), out
    assert "fetched 3, failed 1; 3 of 4 instances stored here, 1 missing" in out
    assert set(stored_here(env.server, study)) == set(parts) - {mr}
    code, out = env.fetch("hospital-b", study, "--via", "get")
    assert code == 1 and _plan(out) == (4, 3, 1, "C-GET"), out


# -- send ---------------------------------------------------------------------
def test_send_to_orthanc(env: Env) -> None:
    """Stored syntaxes go unchanged; RLE, which this Orthanc refuses, is decoded to
    Explicit VR Little Endian with the same pixels."""
    parts = study_parts("PID-" + secrets.token_hex(4),
                        extra_samples=("MR_small_jp2klossless.dcm", "MR_small_RLE.dcm"))
    study = study_of(parts)
    with httpx.Client(base_url=env.server.dicomweb, headers=env.server.auth, timeout=30) as client:
        assert stow(client, list(parts.values())).status_code == 200
    code, out, _ = env.cli("remote", "send", "hospital-b", "--study", study, "--ae-title", OUR_AET)
    assert code == 0, out
    assert f"sent 5 of 5 instances of study {study} to hospital-b, failed 0" in out
    at_orthanc = env.peer.instances_of_study(study)
    assert set(at_orthanc) == set(parts)
    files = {sop: env.peer.file(orthanc_id) for sop, orthanc_id in at_orthanc.items()}
    rle = [sop for sop, d in parts.items() if _read(d).file_meta.TransferSyntaxUID == RLELossless]
    assert len(rle) == 1 and re.search(rf"{re.escape(rle[0])} ok: converted to Explicit VR", out)
    assert_same_data_sets({s: d for s, d in parts.items() if s not in rle},
                          {s: d for s, d in files.items() if s not in rle})
    original, copy = _read(parts[rle[0]]), _read(files[rle[0]])
    assert copy.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(copy.pixel_array, original.pixel_array)


# -- unreachable nodes ----------------------------------------------------------
@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake but nobody ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


CASES = {  # case -> (the command's arguments after NODE, the same request to the service)
    "refused-c-find": (["find"], lambda svc, node, study: svc.find(node, StudyQuery())),
    "silent-c-get": (["fetch", "--via", "get", "--study"],
                     lambda svc, node, study: svc.plan_fetch(node, study, via="get")),
    "silent-qido": (["find"], lambda svc, node, study: svc.find(node, StudyQuery())),
    "refused-send": (["send", "--study"], lambda svc, node, study: svc.send(node, study)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_unreachable_node_fails_clearly_within_timeout(
        env: Env, case: str, silent_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Refused: at once. Silent (TCP accepted, no DICOM/HTTP answer): after the configured
    3 s, not pynetdicom's 30 s or httpx's 5 s defaults. Timed in-process, where start-up
    doesn't blur it; the command must then say the same in one line."""
    monkeypatch.setenv("CLOUDFILM_REMOTE_TIMEOUT", "3")
    name = f"down-{case}-{secrets.token_hex(3)}"
    port = silent_port if case.startswith("silent") else free_port()
    _add_node(env.server, name, port, f"http://127.0.0.1:{port}/dicom-web"
              if case == "silent-qido" else None, aet="DOWN")
    study = stored_study(env) if case == "refused-send" else generate_uid()
    args, call = CASES[case]
    with env.archive() as archive:
        started = time.monotonic()
        with pytest.raises(RemoteError) as caught:
            call(RemoteService(archive), name, study)
        seconds = time.monotonic() - started
    message = str(caught.value)
    if case.startswith("silent"):
        assert "no answer within 3 s" in message or "response within 3 s" in message, message
        assert 3 <= seconds < 5, seconds
    else:
        assert message == f"cannot reach {name} (DOWN@127.0.0.1:{port}): Connection refused"
        assert seconds < 1, seconds
    code, out, _ = env.cli("remote", args[0], name, *args[1:],
                           *([study] if args[-1] == "--study" else []))
    assert code == 1, out
    assert f"error: {message}" in out and "Traceback" not in out, out


def stored_study(env: Env) -> str:
    """Any study stored here (send needs one before it can try the node)."""
    parts = study_parts("PID-" + secrets.token_hex(4), extra_samples=())
    with httpx.Client(base_url=env.server.dicomweb, headers=env.server.auth, timeout=30) as client:
        assert stow(client, list(parts.values())).status_code == 200
    return study_of(parts)
