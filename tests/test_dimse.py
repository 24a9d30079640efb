"""The DIMSE node, driven by the real dcmtk tools against a real ``cloudfilm serve``.

Verification (PS3.4 Annex A), Storage (Annex B) and Query/Retrieve FIND, MOVE and
GET (Annex C), checked through DICOMweb where the stored result matters, plus the
failure paths: unsupported contexts, a failing C-STORE, an unknown move destination
and the calling-AE policy (``CLOUDFILM_DIMSE_ALLOW``). Query and retrieve callers see
what their known node's ``sees`` allows: the dcmtk and pynetdicom callers below are
registered with ``sees: all``; an unregistered caller sees nothing. storescu's AE is
registered too, as only registered nodes may C-STORE (see tests/test_dimse_trust.py).
"""

from __future__ import annotations

import io
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pydicom
import pytest
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from pynetdicom import AE, build_role, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    Verification,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT_FIND,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelGet as STUDY_ROOT_GET,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelMove as STUDY_ROOT_MOVE,
)

from conftest import Server, database_url_for, free_port
from factory import make_instance, parse_multipart, sample, to_bytes

pytestmark = pytest.mark.skipif(shutil.which("storescu") is None, reason="dcmtk is not installed")

HOST = "127.0.0.1"
# The calling AE titles of dcmtk's findscu, movescu and getscu and of our pynetdicom SCU.
QUERY_CALLERS = ("FINDSCU", "MOVESCU", "GETSCU", "PYSCU")
STORE_CALLER = "STORESCU"  # dcmtk storescu's calling AE title
# storescu proposes each SOP class with the stored file's own transfer syntax.
STORESCU_CONFIG = r"""
[[TransferSyntaxes]]
[Uncompressed]
TransferSyntax1 = LittleEndianExplicit
TransferSyntax2 = LittleEndianImplicit
[JPEGBaseline]
TransferSyntax1 = JPEGBaseline
[JPEG2000Lossless]
TransferSyntax1 = JPEG2000LosslessOnly
[[PresentationContexts]]
[Study]
PresentationContext1 = CTImageStorage\Uncompressed
PresentationContext2 = SecondaryCaptureImageStorage\JPEGBaseline
PresentationContext3 = MRImageStorage\JPEG2000Lossless
[[Profiles]]
[Study]
PresentationContexts = Study
"""


def dcmtk(tool: str, *args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([tool, *map(str, args)], capture_output=True, text=True,
                            timeout=timeout)
    result.stdout += result.stderr  # dcmtk logs to stderr; one place to look
    return result


@dataclass
class Study:
    """Files written to disk and sent with storescu; ``raw`` keeps their bytes by SOP UID."""

    uid: str
    patient_id: str
    series: dict[str, list[str]] = field(default_factory=dict)
    raw: dict[str, bytes] = field(default_factory=dict)
    sent: subprocess.CompletedProcess[str] | None = None

    def add(self, folder: Path, name: str, ds: pydicom.Dataset) -> None:
        data = to_bytes(ds)
        (folder / name).write_bytes(data)
        self.raw[str(ds.SOPInstanceUID)] = data
        self.series.setdefault(str(ds.SeriesInstanceUID), []).append(str(ds.SOPInstanceUID))

    def sop_with(self, transfer_syntax: str) -> str:
        return next(sop for sop, data in self.raw.items()
                    if pydicom.dcmread(io.BytesIO(data)).file_meta.TransferSyntaxUID
                    == transfer_syntax)


def dataset_bytes(part10: bytes) -> bytes:
    """What follows the File Meta group: the data set as sent on the wire."""
    assert part10[128:132] == b"DICM" and part10[132:136] == b"\x02\x00\x00\x00"
    (group_length,) = struct.unpack("<I", part10[140:144])
    return part10[144 + group_length:]


def pixel_bytes(data: bytes | Path) -> bytes:
    source = io.BytesIO(data) if isinstance(data, bytes) else data
    return bytes(pydicom.dcmread(source).PixelData)


# -- fixtures ----------------------------------------------------------------------------


def add_node(server: Server, name: str, ae_title: str, port: int = 104, **settings: str) -> None:
    """Register a known node through the admin API (``sees``, ``issuer`` as keywords)."""
    node = {"name": name, "aet": ae_title, "host": HOST, "port": port} | settings
    with server.http() as http:
        response = http.post("/api/admin/nodes", json=node)
    assert response.status_code == 201, response.text


@pytest.fixture(scope="module")
def dimse(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per database with DIMSE on (conftest's ``server`` has it off)."""
    data_dir = tmp_path_factory.mktemp(f"dimse-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url)
    srv.dimse_port = free_port()
    try:
        srv.start()
        for ae_title in QUERY_CALLERS:  # the query/retrieve callers below may see everything
            add_node(srv, ae_title.lower(), ae_title, sees="all")
        add_node(srv, STORE_CALLER.lower(), STORE_CALLER)  # a modality on this machine
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


def _alice_files(folder: Path) -> Study:
    """Three CT instances in two series, a JPEG Baseline SC and a JPEG 2000 MR."""
    study = Study(generate_uid(), "DIMSE-A")
    person = {"patient_id": study.patient_id, "patient_name": "Dimse^Alice"}
    first, second = generate_uid(), generate_uid()
    for number, series in ((1, first), (2, first), (3, second)):
        study.add(folder, f"ct{number}.dcm", make_instance(study=study.uid, series=series,
                                                          instance_number=number, **person))
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "MR_small_jp2klossless.dcm"):
        ds = sample(name, study=study.uid)
        ds.PatientID, ds.PatientName = study.patient_id, "Dimse^Alice"
        if "DataSetTrailingPadding" in ds:  # media-only padding, dropped by storescu on send
            del ds.DataSetTrailingPadding
        ds["PixelData"].VR = "OB"  # encapsulated is OB (PS3.5 A.4); storescu fixes an OW
        study.add(folder, name, ds)
    return study


@pytest.fixture(scope="module")
def alice(dimse: Server, tmp_path_factory: pytest.TempPathFactory) -> Study:
    """A whole study folder sent with ``storescu +sd +r``, compressed files as they are."""
    folder = tmp_path_factory.mktemp("alice")
    study = _alice_files(folder)
    config = tmp_path_factory.mktemp("cfg") / "storescu.cfg"
    config.write_text(STORESCU_CONFIG)
    study.sent = dcmtk("storescu", "-aec", dimse.ae_title, "-xf", config, "Study", "+sd", "+r",
                       "-v", HOST, dimse.dimse_port, folder)
    return study


@pytest.fixture(scope="module")
def bob(dimse: Server, tmp_path_factory: pytest.TempPathFactory) -> Study:
    folder = tmp_path_factory.mktemp("bob")
    study = Study(generate_uid(), "DIMSE-B")
    study.add(folder, "ct.dcm", make_instance(study=study.uid, patient_id=study.patient_id,
                                              patient_name="Dimse^Bob", study_date="20240101"))
    study.sent = dcmtk("storescu", "-aec", dimse.ae_title, HOST, dimse.dimse_port,
                       folder / "ct.dcm")
    assert study.sent.returncode == 0, study.sent.stdout
    return study


def _wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert process.poll() is None, "storescp exited"
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("storescp did not listen")


@dataclass
class StoreSCP:
    ae_title: str
    port: int
    folder: Path

    def received(self) -> dict[str, Path]:
        return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p
                for p in self.folder.iterdir() if p.is_file()}


@pytest.fixture
def storescp(dimse: Server, tmp_path: Path) -> Iterator[StoreSCP]:
    """dcmtk's storescp, accepting every transfer syntax, registered as a known node."""
    port = free_port()
    scp = StoreSCP(f"SCP{port}", port, tmp_path / "received")
    scp.folder.mkdir()
    process = subprocess.Popen(["storescp", "-aet", scp.ae_title, "+xa", "-od", str(scp.folder),
                                str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        add_node(dimse, f"storescp-{port}", scp.ae_title, port)
        yield scp
    finally:
        process.terminate()
        process.wait(timeout=10)


def findscu(dimse: Server, folder: Path, model: str, *keys: str) -> list[pydicom.Dataset]:
    """Run findscu, keep each response identifier as a file (-X) and read them back."""
    folder.mkdir(exist_ok=True)
    args: list[str] = [model, "-aec", dimse.ae_title, "-X", "-od", str(folder)]
    for key in keys:
        args += ["-k", key]
    result = dcmtk("findscu", *args, HOST, str(dimse.dimse_port))
    assert result.returncode == 0, result.stdout
    return [pydicom.dcmread(p) for p in sorted(folder.glob("rsp*.dcm"))]


# -- Verification and Storage ------------------------------------------------------------


def test_echoscu_succeeds(dimse: Server) -> None:
    result = dcmtk("echoscu", "-v", "-aec", dimse.ae_title, HOST, dimse.dimse_port)
    assert result.returncode == 0, result.stdout
    assert "Received Echo Response (Success)" in result.stdout


def test_storescu_folder_is_stored_with_unchanged_bytes(dimse: Server, alice: Study) -> None:
    assert alice.sent is not None and alice.sent.returncode == 0, alice.sent
    assert alice.sent.stdout.count("Received Store Response (Success)") == len(alice.raw) == 5
    response = httpx.get(f"{dimse.dicomweb}/studies/{alice.uid}", timeout=30, headers={
        "accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'} | dimse.auth)
    assert response.status_code == 200
    stored = {str(pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID): data
              for _, data in parse_multipart(response)}
    assert stored.keys() == alice.raw.keys()
    for sop, data in stored.items():
        assert dataset_bytes(data) == dataset_bytes(alice.raw[sop]), sop
    jpeg = alice.sop_with(JPEGBaseline8Bit)
    assert pydicom.dcmread(io.BytesIO(stored[jpeg])).file_meta.TransferSyntaxUID == JPEGBaseline8Bit


def test_stored_study_metadata_is_served_by_dicomweb(dimse: Server, alice: Study) -> None:
    response = httpx.get(f"{dimse.dicomweb}/studies/{alice.uid}/metadata", timeout=30,
                         headers=dimse.auth)
    assert response.status_code == 200
    assert {item["00080018"]["Value"][0] for item in response.json()} == set(alice.raw)


# -- C-FIND ------------------------------------------------------------------------------


def test_findscu_patient_level_with_wildcard(dimse: Server, alice: Study, bob: Study,
                                             tmp_path: Path) -> None:
    found = findscu(dimse, tmp_path, "-P", "QueryRetrieveLevel=PATIENT", "PatientName=Dimse*",
                    "PatientID", "NumberOfPatientRelatedInstances")
    assert {(ds.PatientID, int(ds.NumberOfPatientRelatedInstances)) for ds in found} == {
        ("DIMSE-A", 5), ("DIMSE-B", 1)}
    assert all(ds.QueryRetrieveLevel == "PATIENT" and ds.RetrieveAETitle == dimse.ae_title
               for ds in found)


def test_findscu_study_level(dimse: Server, alice: Study, bob: Study, tmp_path: Path) -> None:
    found = findscu(dimse, tmp_path, "-S", "QueryRetrieveLevel=STUDY", "PatientName=Dimse^A*",
                    "StudyInstanceUID", "NumberOfStudyRelatedInstances", "ModalitiesInStudy")
    assert [ds.StudyInstanceUID for ds in found] == [alice.uid]
    assert int(found[0].NumberOfStudyRelatedInstances) == 5
    assert set(found[0].ModalitiesInStudy) == {"CT", "MR", "OT"}
    assert "SOPInstanceUID" not in found[0]  # only requested keys come back


def test_findscu_study_level_date_range(dimse: Server, alice: Study, bob: Study,
                                        tmp_path: Path) -> None:
    found = findscu(dimse, tmp_path, "-S", "QueryRetrieveLevel=STUDY",
                    "StudyDate=20240101-20241231", "PatientName=Dimse*", "StudyInstanceUID")
    assert [ds.StudyInstanceUID for ds in found] == [bob.uid]


def test_findscu_series_level(dimse: Server, alice: Study, tmp_path: Path) -> None:
    found = findscu(dimse, tmp_path, "-S", "QueryRetrieveLevel=SERIES",
                    f"StudyInstanceUID={alice.uid}", "SeriesInstanceUID", "Modality")
    assert {ds.SeriesInstanceUID for ds in found} == set(alice.series)
    assert sorted(ds.Modality for ds in found) == ["CT", "CT", "MR", "OT"]


def test_findscu_image_level(dimse: Server, alice: Study, tmp_path: Path) -> None:
    series, sops = next((s, i) for s, i in alice.series.items() if len(i) == 2)
    found = findscu(dimse, tmp_path, "-S", "QueryRetrieveLevel=IMAGE",
                    f"StudyInstanceUID={alice.uid}", f"SeriesInstanceUID={series}",
                    "SOPInstanceUID", "InstanceNumber")
    assert sorted(ds.SOPInstanceUID for ds in found) == sorted(sops)


def test_findscu_patient_root_study_level_is_limited_by_patient_id(
        dimse: Server, alice: Study, bob: Study, tmp_path: Path) -> None:
    found = findscu(dimse, tmp_path, "-P", "QueryRetrieveLevel=STUDY", "PatientID=DIMSE-B",
                    "StudyInstanceUID")
    assert [ds.StudyInstanceUID for ds in found] == [bob.uid]


def test_non_ascii_names_come_back_as_utf8(dimse: Server) -> None:
    """Matches with non-ASCII values carry Specific Character Set ISO_IR 192 (PS3.5 6.1.2.5.3)."""
    ds = make_instance(charset="ISO_IR 192", patient_name="Müller^Jürgen", patient_id="DIMSE-U")
    assoc = _scu(CTImageStorage, STUDY_ROOT_FIND).associate(HOST, dimse.dimse_port,
                                                            ae_title=dimse.ae_title)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
        query = pydicom.Dataset()
        query.QueryRetrieveLevel, query.PatientID, query.PatientName = "STUDY", "DIMSE-U", ""
        responses = list(assoc.send_c_find(query, STUDY_ROOT_FIND))
    finally:
        assoc.release()
    matches = [identifier for status, identifier in responses if status.Status == 0xFF00]
    assert [str(m.PatientName) for m in matches] == ["Müller^Jürgen"]
    assert matches[0].SpecificCharacterSet == "ISO_IR 192"
    assert responses[-1][0].Status == 0x0000


def test_findscu_invalid_level_is_refused(dimse: Server, alice: Study, tmp_path: Path) -> None:
    """Study Root has no PATIENT level: A900, Identifier does not match SOP Class."""
    tmp_path.mkdir(exist_ok=True)
    result = dcmtk("findscu", "-S", "-d", "-aec", dimse.ae_title, "-X", "-od", tmp_path,
                   "-k", "QueryRetrieveLevel=PATIENT", "-k", "PatientID", HOST, dimse.dimse_port)
    assert "DIMSE Status                  : 0xa900" in result.stdout, result.stdout
    assert "QueryRetrieveLevel 'PATIENT' is not STUDY/SERIES/IMAGE" in result.stdout  # comment
    assert not list(tmp_path.glob("rsp*.dcm"))


# -- C-MOVE and C-GET --------------------------------------------------------------------


def test_movescu_study_to_storescp(dimse: Server, alice: Study, storescp: StoreSCP) -> None:
    result = dcmtk("movescu", "-v", "-S", "-aec", dimse.ae_title, "-aem", storescp.ae_title,
                   "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={alice.uid}",
                   HOST, dimse.dimse_port)
    assert result.returncode == 0, result.stdout
    assert "Received Final Move Response (Success)" in result.stdout, result.stdout
    received = storescp.received()
    assert received.keys() == alice.raw.keys()
    for sop, path in received.items():
        assert pixel_bytes(path) == pixel_bytes(alice.raw[sop]), sop
    jpeg = alice.sop_with(JPEGBaseline8Bit)
    assert pydicom.dcmread(received[jpeg]).file_meta.TransferSyntaxUID == JPEGBaseline8Bit


def test_movescu_image_level_moves_only_that_instance(dimse: Server, alice: Study,
                                                      storescp: StoreSCP) -> None:
    series, sops = next((s, i) for s, i in alice.series.items() if len(i) == 2)
    result = dcmtk("movescu", "-S", "-aec", dimse.ae_title, "-aem", storescp.ae_title,
                   "-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={alice.uid}",
                   "-k", f"SeriesInstanceUID={series}", "-k", f"SOPInstanceUID={sops[1]}",
                   HOST, dimse.dimse_port)
    assert result.returncode == 0, result.stdout
    assert list(storescp.received()) == [sops[1]]


def test_movescu_to_unknown_destination_fails(dimse: Server, alice: Study,
                                              storescp: StoreSCP) -> None:
    result = dcmtk("movescu", "-v", "-S", "-aec", dimse.ae_title, "-aem", "NOSUCHAE",
                   "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={alice.uid}",
                   HOST, dimse.dimse_port)
    assert "MoveDestinationUnknown" in result.stdout, result.stdout
    assert not storescp.received()


def test_movescu_without_the_level_key_is_refused(dimse: Server, alice: Study,
                                                  storescp: StoreSCP) -> None:
    """A retrieve needs the unique key of its level (PS3.4 C.4.2.2.1), never 'everything'."""
    result = dcmtk("movescu", "-v", "-S", "-aec", dimse.ae_title, "-aem", storescp.ae_title,
                   "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={alice.uid}",
                   HOST, dimse.dimse_port)
    assert "DataSetDoesNotMatchSOPClass" in result.stdout, result.stdout
    assert not storescp.received()


def getscu(dimse: Server, folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    folder.mkdir(exist_ok=True)
    return dcmtk("getscu", "-v", "-S", "-aec", dimse.ae_title, "-od", folder, *args,
                 HOST, dimse.dimse_port)


def test_getscu_series(dimse: Server, alice: Study, tmp_path: Path) -> None:
    series, sops = next((s, i) for s, i in alice.series.items() if len(i) == 2)
    result = getscu(dimse, tmp_path, "-k", "QueryRetrieveLevel=SERIES",
                    "-k", f"StudyInstanceUID={alice.uid}", "-k", f"SeriesInstanceUID={series}")
    assert result.returncode == 0, result.stdout
    received = {str(pydicom.dcmread(p).SOPInstanceUID): p for p in tmp_path.iterdir()}
    assert sorted(received) == sorted(sops)
    for sop, path in received.items():
        assert pixel_bytes(path) == pixel_bytes(alice.raw[sop])


def test_getscu_keeps_jpeg_when_preferred_and_decodes_when_not(dimse: Server, alice: Study,
                                                               tmp_path: Path) -> None:
    jpeg = alice.sop_with(JPEGBaseline8Bit)
    keys = ["-k", "QueryRetrieveLevel=IMAGE", "-k", f"StudyInstanceUID={alice.uid}",
            "-k", f"SOPInstanceUID={jpeg}"]
    getscu(dimse, tmp_path / "jpeg", "+xy", *keys)  # JPEG offered first: sent as stored
    (as_stored,) = (tmp_path / "jpeg").iterdir()
    assert pydicom.dcmread(as_stored).file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert pixel_bytes(as_stored) == pixel_bytes(alice.raw[jpeg])
    getscu(dimse, tmp_path / "plain", *keys)  # only uncompressed offered: decoded for it
    (decoded,) = (tmp_path / "plain").iterdir()
    ds = pydicom.dcmread(decoded)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert ds.SOPInstanceUID == jpeg
    original = pydicom.dcmread(io.BytesIO(alice.raw[jpeg]))
    assert np.array_equal(ds.pixel_array, original.pixel_array)


# -- bad input and access ----------------------------------------------------------------


def _scu(*abstract_syntaxes: str, ae_title: str = "PYSCU") -> AE:
    ae = AE(ae_title=ae_title)
    for abstract in abstract_syntaxes:
        ae.add_requested_context(abstract)
    return ae


def test_unsupported_abstract_syntax_is_rejected_and_server_goes_on(dimse: Server) -> None:
    assoc = _scu("1.2.826.0.1.3680043.8.498.999.1").associate(HOST, dimse.dimse_port,
                                                               ae_title=dimse.ae_title)
    assert assoc.is_rejected and not assoc.is_established
    result = dcmtk("echoscu", "-aec", dimse.ae_title, HOST, dimse.dimse_port)
    assert result.returncode == 0, result.stdout


def test_failed_c_store_returns_failure_and_association_goes_on(dimse: Server) -> None:
    assoc = _scu(CTImageStorage, Verification).associate(HOST, dimse.dimse_port,
                                                         ae_title=dimse.ae_title)
    assert assoc.is_established
    try:
        ds = make_instance()
        del ds.StudyInstanceUID
        status = assoc.send_c_store(ds)
        assert status.Status == 0xA900
        assert "StudyInstanceUID" in status.ErrorComment
        assert assoc.send_c_echo().Status == 0x0000
        assert assoc.send_c_store(make_instance()).Status == 0x0000
    finally:
        assoc.release()
    missing = httpx.get(f"{dimse.dicomweb}/instances", params={"SOPInstanceUID": ds.SOPInstanceUID},
                        headers=dimse.auth)
    assert missing.status_code in (200, 204) and not (missing.content and missing.json())


def test_known_policy_rejects_unknown_calling_ae(fresh_server: Server) -> None:
    fresh_server.dimse_port = free_port()
    fresh_server.extra_env["CLOUDFILM_DIMSE_ALLOW"] = "known"
    fresh_server.start()
    add_node(fresh_server, "allowed", "ALLOWED")
    stranger = dcmtk("echoscu", "-v", "-aet", "STRANGER", "-aec", fresh_server.ae_title, HOST,
                     fresh_server.dimse_port)
    assert stranger.returncode != 0
    assert "Association Rejected" in stranger.stdout, stranger.stdout
    known = dcmtk("echoscu", "-v", "-aet", "ALLOWED", "-aec", fresh_server.ae_title, HOST,
                  fresh_server.dimse_port)
    assert known.returncode == 0, known.stdout
    assert "Received Echo Response (Success)" in known.stdout


# -- what a calling AE may see -----------------------------------------------------------


def c_find(dimse: Server, ae_title: str, query: pydicom.Dataset) -> list[pydicom.Dataset]:
    """The matches of a Study Root C-FIND by ``ae_title``; the final status must be Success."""
    assoc = _scu(STUDY_ROOT_FIND, ae_title=ae_title).associate(HOST, dimse.dimse_port,
                                                                ae_title=dimse.ae_title)
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_find(query, STUDY_ROOT_FIND))
    finally:
        assoc.release()
    assert responses and responses[-1][0].Status == 0x0000, responses
    return [identifier for status, identifier in responses if status.Status == 0xFF00]


def c_move(dimse: Server, ae_title: str, query: pydicom.Dataset,
           destination: str) -> pydicom.Dataset:
    """The final status of a Study Root C-MOVE by ``ae_title``."""
    assoc = _scu(STUDY_ROOT_MOVE, ae_title=ae_title).associate(HOST, dimse.dimse_port,
                                                                ae_title=dimse.ae_title)
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_move(query, destination, STUDY_ROOT_MOVE))
    finally:
        assoc.release()
    return responses[-1][0]


def c_get(dimse: Server, ae_title: str,
          query: pydicom.Dataset) -> tuple[pydicom.Dataset, list[str]]:
    """The final status of a Study Root C-GET by ``ae_title`` and the SOP UIDs it stored."""
    stored: list[str] = []

    def on_store(event: evt.Event) -> int:
        stored.append(str(event.dataset.SOPInstanceUID))
        return 0x0000

    ae = _scu(STUDY_ROOT_GET, ae_title=ae_title)
    ae.add_requested_context(CTImageStorage, [ExplicitVRLittleEndian])
    assoc = ae.associate(HOST, dimse.dimse_port, ae_title=dimse.ae_title,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    try:
        responses = list(assoc.send_c_get(query, STUDY_ROOT_GET))
    finally:
        assoc.release()
    return responses[-1][0], stored


def test_unregistered_caller_finds_moves_and_gets_nothing(dimse: Server, alice: Study,
                                                          storescp: StoreSCP) -> None:
    """Admitted by CLOUDFILM_DIMSE_ALLOW (loopback) but not a known node: it sees nothing."""
    series, sops = next((s, i) for s, i in alice.series.items() if len(i) == 2)
    query = pydicom.Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "SERIES", alice.uid
    query.SeriesInstanceUID = series
    # the same requests by a node that sees all: the series is there
    assert [m.SeriesInstanceUID for m in c_find(dimse, "PYSCU", query)] == [series]
    status, stored = c_get(dimse, "PYSCU", query)
    assert status.Status == 0x0000 and sorted(stored) == sorted(sops)

    assert c_find(dimse, "STRANGER", query) == []  # C-FIND: no matches
    moved = c_move(dimse, "STRANGER", query, storescp.ae_title)  # C-MOVE: no sub-operations
    assert moved.Status == 0x0000
    assert (moved.NumberOfCompletedSuboperations, moved.NumberOfFailedSuboperations,
            moved.NumberOfWarningSuboperations) == (0, 0, 0)
    assert not storescp.received()
    status, stored = c_get(dimse, "STRANGER", query)  # C-GET: no sub-operations
    assert status.Status == 0x0000
    assert (status.NumberOfCompletedSuboperations, status.NumberOfFailedSuboperations,
            status.NumberOfWarningSuboperations) == (0, 0, 0)
    assert stored == []


def test_node_sees_own_hospital_or_nothing(dimse: Server) -> None:
    """``sees: own`` covers the studies of records with the node's IssuerOfPatientID."""
    studies = {issuer: make_instance(patient_id="DIMSE-O", patient_name="Own^Hospital",
                                     issuer=issuer) for issuer in ("HOSP-A", "HOSP-B")}
    assoc = _scu(CTImageStorage).associate(HOST, dimse.dimse_port, ae_title=dimse.ae_title)
    assert assoc.is_established
    try:
        assert all(assoc.send_c_store(ds).Status == 0x0000 for ds in studies.values())
    finally:
        assoc.release()
    add_node(dimse, "hospital-a", "HOSPA", sees="own", issuer="HOSP-A")
    add_node(dimse, "blind", "BLIND", sees="none")
    query = pydicom.Dataset()
    query.QueryRetrieveLevel, query.PatientID, query.StudyInstanceUID = "STUDY", "DIMSE-O", ""

    def found(ae_title: str) -> set[str]:
        return {str(m.StudyInstanceUID) for m in c_find(dimse, ae_title, query)}

    assert found("PYSCU") == {str(ds.StudyInstanceUID) for ds in studies.values()}
    assert found("HOSPA") == {str(studies["HOSP-A"].StudyInstanceUID)}
    assert found("BLIND") == set()
