"""An audit trail that cannot be cut (issue 11, finding 7), against a real server and the
real ``cloudfilm audit verify``, on SQLite and PostgreSQL.

The attacks are what a person with write access to the index (but not the server key)
can do: plain SQL on ``audit_events``, recomputing the plain SHA-256 chain from the
published algorithm. And every 401/403, on any route, leaves a ``failure`` record.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import inspect, select, text

from cloudfilm.domain.audit import AuditEntry, canonical
from cloudfilm.domain.clock import as_utc
from cloudfilm.services.audit.log import ANCHOR_FILE, AuditLog
from cloudfilm.services.audit.syslog import SyslogForwarder
from cloudfilm.storage.index.access_models import AuditEventRow
from cloudfilm.storage.index.db import Index
from conftest import Server, admin_token, run_cli

QUERIES = 6


@pytest.fixture
def index(fresh_server: Server) -> Iterator[Index]:
    idx = Index(fresh_server.database_url)
    yield idx
    idx.dispose()


def verify(server: Server) -> tuple[int, str]:
    done = run_cli(["audit", "verify", "--data", str(server.data_dir)], server.database_url)
    return done.returncode, done.stdout + done.stderr


def leave_records(server: Server, count: int = QUERIES) -> None:
    """Each QIDO search is audited (a ``query`` record)."""
    with server.http() as http:
        for _ in range(count):
            assert http.get("/dicomweb/studies").status_code in (200, 204)


def served_and_stopped(server: Server) -> None:
    """Some records, then a clean shutdown (which anchors the newest of them)."""
    server.start()
    leave_records(server)
    server.stop()


def rows(index: Index) -> list[AuditEventRow]:
    with index.session() as session:
        return list(session.scalars(select(AuditEventRow).order_by(AuditEventRow.id)))


def sql(index: Index, *statements: str, **params: object) -> None:
    with index.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), params)


def entry_of(row: AuditEventRow, **changes: object) -> AuditEntry:
    fields = dict(actor=row.actor, action=row.action, outcome=row.outcome,
                  actor_role=row.actor_role, on_behalf_of=row.on_behalf_of,
                  person_id=row.person_id, patient_ref=row.patient_ref, study_uid=row.study_uid,
                  source=row.source, detail=json.loads(row.detail))
    return AuditEntry(**(fields | changes))  # type: ignore[arg-type]


def rewrite_with_plain_hashes(index: Index, start: int, *, downgrade: bool = False) -> None:
    """The attacker: change record ``start`` and recompute SHA-256 for it and every later one."""
    has_version = "chain_version" in {c["name"] for c in inspect(index.engine)
                                      .get_columns("audit_events")}
    old = rows(index)
    prev = old[start - 2].hash if start > 1 else "0" * 64
    with index.engine.begin() as connection:
        for row in old[start - 1:]:
            changed = entry_of(row, actor="mallory") if row.id == old[start - 1].id \
                else entry_of(row)
            digest = hashlib.sha256(canonical(changed, as_utc(row.at), prev)).hexdigest()
            version = ", chain_version = 1" if downgrade and has_version else ""
            connection.execute(text(f"UPDATE audit_events SET actor = :actor, prev_hash = :prev, "
                                    f"hash = :hash{version} WHERE id = :id"),
                               {"actor": changed.actor, "prev": prev, "hash": digest, "id": row.id})
            prev = digest


# --- the chain and its anchor ----------------------------------------------------------------

def test_an_untouched_log_verifies_intact_before_and_after_a_restart(fresh_server: Server,
                                                                    index: Index) -> None:
    served_and_stopped(fresh_server)
    code, out = verify(fresh_server)
    assert code == 0, out
    assert f"intact: {len(rows(index))} records" in out
    assert re.search(r", [1-9]\d* checkpoints", out), out  # the anchor was really checked
    fresh_server.start()
    leave_records(fresh_server)
    code, out = verify(fresh_server)  # while the server runs
    assert code == 0, out
    fresh_server.stop()
    code, out = verify(fresh_server)
    assert code == 0, out
    assert len(rows(index)) >= 2 * QUERIES


def test_removing_the_newest_records_is_found(fresh_server: Server, index: Index) -> None:
    served_and_stopped(fresh_server)
    newest = rows(index)[-1].id
    sql(index, "DELETE FROM audit_events WHERE id > :keep", keep=newest - 3)
    code, out = verify(fresh_server)
    assert code == 1, out
    assert "broken" in out and "newest records were removed" in out


def test_removing_every_record_is_found(fresh_server: Server, index: Index) -> None:
    served_and_stopped(fresh_server)
    sql(index, "DELETE FROM audit_events")
    code, out = verify(fresh_server)
    assert code == 1, out
    assert "only 0 remain" in out


@pytest.mark.parametrize("downgrade", [False, True], ids=["keep-version", "mark-as-plain"])
def test_a_rewrite_with_the_plain_chain_recomputed_is_found(fresh_server: Server, index: Index,
                                                           downgrade: bool) -> None:
    served_and_stopped(fresh_server)
    rewrite_with_plain_hashes(index, 1 if downgrade else 3, downgrade=downgrade)
    assert [r.actor for r in rows(index)].count("mallory") == 1
    code, out = verify(fresh_server)
    assert code == 1, out
    assert "broken at record" in out


def test_the_anchor_file_is_private_and_only_grows(fresh_server: Server) -> None:
    served_and_stopped(fresh_server)
    anchor = fresh_server.data_dir / ANCHOR_FILE
    assert stat.S_IMODE(anchor.stat().st_mode) == 0o600
    first = anchor.read_bytes()
    assert first.count(b"\n") >= 2  # the first append's checkpoint and the closing one
    fresh_server.start()
    leave_records(fresh_server, 2)
    fresh_server.stop()
    later = anchor.read_bytes()
    assert later.startswith(first) and len(later) > len(first)
    assert stat.S_IMODE(anchor.stat().st_mode) == 0o600


def test_a_forged_checkpoint_line_is_found(fresh_server: Server) -> None:
    """Someone without the key cannot add a checkpoint that blesses a cut log."""
    served_and_stopped(fresh_server)
    anchor = fresh_server.data_dir / ANCHOR_FILE
    last = json.loads(anchor.read_text().splitlines()[-1])
    forged = last | {"count": 1, "mac": "0" * 64}
    with anchor.open("a") as fh:
        fh.write(json.dumps(forged) + "\n")
    code, out = verify(fresh_server)
    assert code == 1 and "signature does not match" in out, out


def test_records_from_before_the_keyed_chain_still_verify_and_stay_protected(
        archive: Any) -> None:
    """Rows hashed the old way (version 1) verify as such; the first keyed row's HMAC covers
    the last plain hash, so rewriting them afterwards is found."""
    legacy = AuditLog(archive.index)  # no key: what versions before issue 11 wrote
    for n in range(3):
        legacy.record(AuditEntry(actor=f"before{n}", action="login"))
    for n in range(2):
        archive.audit.record(AuditEntry(actor=f"after{n}", action="login"))
    archive.audit.anchor_pending()
    assert [r.chain_version for r in rows(archive.index)] == [1, 1, 1, 2, 2]
    command = ["audit", "verify", "--data", str(archive.settings.data_dir)]
    done = run_cli(command, archive.settings.database_url)
    assert done.returncode == 0 and "intact: 5 records" in done.stdout, done.stdout
    rewrite_with_plain_hashes(archive.index, 2)
    done = run_cli(command, archive.settings.database_url)
    assert done.returncode == 1 and "broken at record 4 " in done.stdout, done.stdout


def test_checkpoints_go_to_syslog_too(archive: object, tmp_path: Path) -> None:
    from cloudfilm.domain.audit import audit_key

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(10)
        port = listener.getsockname()[1]
        log = AuditLog(archive.index, key=audit_key(b"k" * 32),  # type: ignore[attr-defined]
                       anchor_dir=tmp_path,
                       forwarder=SyslogForwarder("udp", "127.0.0.1", port))
        try:
            log.record(AuditEntry(actor="alice", action="login"))
            messages = [listener.recv(65535) for _ in range(2)]
        finally:
            log.close()
    checkpoint = next(m for m in messages if b" CHECKPOINT " in m)
    line = checkpoint.split(b"\xef\xbb\xbf", 1)[1].decode()
    assert line == (tmp_path / ANCHOR_FILE).read_text().splitlines()[0]
    assert json.loads(line)["count"] == 1


# --- refusals --------------------------------------------------------------------------------

def refusals(index: Index) -> list[AuditEventRow]:
    return [r for r in rows(index) if r.outcome == "failure" and r.action == "access-denied"]


def test_role_refusals_leave_a_failure_record_naming_the_route(fresh_server: Server,
                                                              index: Index) -> None:
    fresh_server.start()
    patient = admin_token(fresh_server.database_url, "pat-refused", role="patient")
    physician = admin_token(fresh_server.database_url, "doc-refused", role="physician")
    study = "1.2.826.0.1.3680043.8.498.77"
    with httpx.Client(base_url=fresh_server.url, timeout=30) as http:
        deleted = http.delete(f"/dicomweb/studies/{study}",
                              headers={"Authorization": f"Bearer {patient}"})
        exported = http.get("/api/audit", headers={"Authorization": f"Bearer {physician}"})
    assert (deleted.status_code, exported.status_code) == (403, 403)
    found = {(r.actor, json.loads(r.detail)["method"], json.loads(r.detail)["route"])
             for r in refusals(index)}
    assert ("pat-refused", "DELETE", f"/dicomweb/studies/{study}") in found
    assert ("doc-refused", "GET", "/api/audit") in found
    by_patient = next(r for r in refusals(index) if r.actor == "pat-refused")
    assert by_patient.actor_role == "patient" and by_patient.source == "127.0.0.1"
    assert "roles" in json.loads(by_patient.detail)["reason"]


def test_refusals_are_recorded_once_and_no_token_is_kept(fresh_server: Server,
                                                        index: Index) -> None:
    fresh_server.start()
    patient = admin_token(fresh_server.database_url, "pat-tokens", role="patient")
    bogus = "Zq" * 22
    with httpx.Client(base_url=fresh_server.url, timeout=30) as http:
        assert http.get("/api/audit", headers={"Authorization": f"Bearer {patient}"}) \
            .status_code == 403
        assert http.get("/api/admin/users", headers={"Authorization": f"Bearer {bogus}"}) \
            .status_code == 401
        assert http.get(f"/s/{bogus}").status_code in (200, 404, 410)
        assert http.get(f"/api/things/{bogus}").status_code == 401
    mine = [r for r in refusals(index) if r.actor == "pat-tokens"]
    assert len(mine) == 1
    anonymous = {json.loads(r.detail)["route"] for r in refusals(index) if r.actor == "anonymous"}
    assert "/api/admin/users" in anonymous and "/api/things/…" in anonymous
    fresh_server.stop()
    stored = "\n".join(f"{r.actor} {r.detail} {r.source}" for r in rows(index))
    server_log = Path(fresh_server.log_path or "").read_text()
    for secret in (patient, bogus, fresh_server.token):
        assert secret not in stored and secret not in server_log
    code, out = verify(fresh_server)
    assert code == 0, out
