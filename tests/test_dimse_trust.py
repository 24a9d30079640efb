"""Whom the DIMSE node trusts (issue 11, finding 5), against a real ``cloudfilm serve``.

- Idle connections from one address can't starve the node: one address holds at most
  ``CLOUDFILM_DIMSE_MAX_PER_ADDRESS`` (10) open connections, more are closed at once,
  and a peer that sends no A-ASSOCIATE-RQ is closed after a few seconds (PS3.8 §9.1.5).
- A registered node is trusted by its AE title *and* its host: the same title from
  another address is rejected (A-ASSOCIATE-RJ, calling AE title not recognised) and
  audited.
- An AE that is no registered node may not C-STORE unless ``CLOUDFILM_DIMSE_ALLOW=any``.

dcmtk has no option for the source address, so dcmtk calls from 127.0.0.1 and the
other loopback addresses (all of 127.0.0.0/8 on Linux) are raw sockets or pynetdicom
with ``bind_address``.
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, Verification  # type: ignore[attr-defined]

from conftest import Server, database_url_for, free_port
from factory import make_instance, to_bytes
from test_dimse import HOST, add_node, dcmtk

CAP = 10  # the default CLOUDFILM_DIMSE_MAX_PER_ADDRESS
OLD_ARTIM = 30  # seconds an idle connection was kept before the fix


@pytest.fixture(scope="module")
def node(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server per database with DIMSE on and the default caller policy (loopback)."""
    data_dir = tmp_path_factory.mktemp(f"trust-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url, dimse_port=free_port())
    try:
        srv.start()
        add_node(srv, "ct-room", "CTROOM", host="127.0.0.5")  # a modality at 127.0.0.5
        add_node(srv, "by-name", "NAMED", host="localhost")  # a host name, resolved
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


def connect_from(source: str, server: Server) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.connect((HOST, server.dimse_port))
    return sock


def closed_by_server(sockets: list[socket.socket], within: float) -> list[socket.socket]:
    """Those of ``sockets`` the server closed (EOF or reset) before ``within`` seconds pass."""
    closed: list[socket.socket] = []
    deadline = time.monotonic() + within
    waiting = list(sockets)
    while waiting and time.monotonic() < deadline:
        readable, _, _ = select.select(waiting, [], [], max(0.0, deadline - time.monotonic()))
        for sock in readable:
            try:
                data = sock.recv(1024)
            except ConnectionError:
                data = b""
            if not data:
                closed.append(sock)
                waiting.remove(sock)
    return closed


def audit_records(server: Server) -> list[dict[str, Any]]:
    with server.http() as http:
        response = http.get("/api/audit", params={"format": "json", "limit": 10_000})
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()
    return records


def wait_for_audit(server: Server, wanted: dict[str, str], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if any(wanted.items() <= record.items() for record in audit_records(server)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no audit record with {wanted}")


def pynetdicom_call(server: Server, ae_title: str, source: str, *contexts: str) -> Any:
    """An association from ``source`` (pynetdicom binds the address; dcmtk can't)."""
    ae = AE(ae_title=ae_title)
    for context in contexts or (Verification,):
        ae.add_requested_context(context)
    return ae.associate(HOST, server.dimse_port, ae_title=server.ae_title,
                        bind_address=(source, 0))


def is_stored(server: Server, sop_uid: str) -> bool:
    with server.http() as http:
        found = http.get("/dicomweb/instances", params={"SOPInstanceUID": sop_uid})
    assert found.status_code in (200, 204), found.text
    return bool(found.content and found.json())


# -- idle connections ----------------------------------------------------------------------


def test_idle_connections_from_one_address_do_not_block_other_callers(node: Server) -> None:
    idle = [connect_from("127.0.0.3", node) for _ in range(40)]
    try:
        # over the cap: closed at once, before any association could time out
        refused = closed_by_server(idle, within=4)
        assert len(refused) >= 40 - CAP, f"only {len(refused)} of 40 were refused"
        echo = dcmtk("echoscu", "-v", "-aec", node.ae_title, HOST, node.dimse_port)
        assert echo.returncode == 0, echo.stdout
        assert "Received Echo Response (Success)" in echo.stdout
        # those within the cap never sent an A-ASSOCIATE-RQ: closed by the timeout
        held = [sock for sock in idle if sock not in refused]
        assert len(closed_by_server(held, within=OLD_ARTIM - 10)) == len(held)
    finally:
        for sock in idle:
            sock.close()
    wait_for_audit(node, {"action": "access-denied", "outcome": "failure", "from": "127.0.0.3"})


def test_a_peer_stalling_inside_its_association_request_is_closed(node: Server) -> None:
    """A-ASSOCIATE-RQ header (type 01H, length 200) and then nothing: a slowloris peer."""
    stalled = [connect_from("127.0.0.4", node) for _ in range(3)]
    try:
        for sock in stalled:
            sock.sendall(b"\x01\x00\x00\x00\x00\xc8\x00\x01")
        assert len(closed_by_server(stalled, within=OLD_ARTIM - 10)) == len(stalled)
    finally:
        for sock in stalled:
            sock.close()
    echo = dcmtk("echoscu", "-aec", node.ae_title, HOST, node.dimse_port)
    assert echo.returncode == 0, echo.stdout


# -- a node is its AE title and its host ---------------------------------------------------


def test_node_calling_from_another_address_is_rejected_and_audited(node: Server) -> None:
    # CTROOM is registered at 127.0.0.5; dcmtk calls from 127.0.0.1
    impostor = dcmtk("echoscu", "-v", "-aet", "CTROOM", "-aec", node.ae_title, HOST,
                     node.dimse_port)
    assert impostor.returncode != 0
    assert "Association Rejected" in impostor.stdout, impostor.stdout
    assert "Calling AE Title Not Recognized" in impostor.stdout, impostor.stdout
    wait_for_audit(node, {"who": "aet:CTROOM", "action": "access-denied", "outcome": "failure",
                          "from": "127.0.0.1"})
    genuine = pynetdicom_call(node, "CTROOM", "127.0.0.5")
    assert genuine.is_established
    try:
        assert genuine.send_c_echo().Status == 0x0000
    finally:
        genuine.release()


def test_node_registered_by_host_name_is_checked_against_its_addresses(node: Server) -> None:
    """NAMED's host is ``localhost`` (127.0.0.1): accepted from there, not from 127.0.0.5."""
    from_name = dcmtk("echoscu", "-v", "-aet", "NAMED", "-aec", node.ae_title, HOST,
                      node.dimse_port)
    assert from_name.returncode == 0, from_name.stdout
    elsewhere = pynetdicom_call(node, "NAMED", "127.0.0.5")
    assert elsewhere.is_rejected and not elsewhere.is_established
    wait_for_audit(node, {"who": "aet:NAMED", "action": "access-denied", "outcome": "failure",
                          "from": "127.0.0.5"})


# -- who may store -------------------------------------------------------------------------


def _storescu(server: Server, folder: Path, ae_title: str) -> tuple[str, Any]:
    ds = make_instance(patient_id="TRUST-1", patient_name="Trust^Test")
    path = folder / "ct.dcm"
    path.write_bytes(to_bytes(ds))
    sent = dcmtk("storescu", "-v", "-aet", ae_title, "-aec", server.ae_title, HOST,
                 server.dimse_port, path)
    return str(ds.SOPInstanceUID), sent


def test_unregistered_ae_may_not_store_by_default(node: Server, tmp_path: Path) -> None:
    """Loopback lets it associate (C-ECHO; a C-FIND that sees nothing), never store."""
    sop, sent = _storescu(node, tmp_path, "STRANGER")
    assert "Received Store Response (Success)" not in sent.stdout, sent.stdout
    assert "Received Store Response (Unknown Status: 0x124)" in sent.stdout, sent.stdout  # 0124H
    assert not is_stored(node, sop)
    wait_for_audit(node, {"who": "aet:STRANGER", "action": "store", "outcome": "failure"})
    # the registered node, from its own address, stores
    ds = make_instance(patient_id="TRUST-2")
    assoc = pynetdicom_call(node, "CTROOM", "127.0.0.5", CTImageStorage)
    assert assoc.is_established
    try:
        assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    assert is_stored(node, str(ds.SOPInstanceUID))


@pytest.mark.parametrize(("allow", "stored"), [("known", False), ("any", True)])
def test_unregistered_ae_stores_only_when_any_caller_is_allowed(
        fresh_server: Server, tmp_path: Path, allow: str, stored: bool) -> None:
    fresh_server.dimse_port = free_port()
    fresh_server.extra_env["CLOUDFILM_DIMSE_ALLOW"] = allow
    fresh_server.start()
    sop, sent = _storescu(fresh_server, tmp_path, "STRANGER")
    assert ("Received Store Response (Success)" in sent.stdout) is stored, sent.stdout
    assert is_stored(fresh_server, sop) is stored
