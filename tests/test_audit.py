"""The audit log: tamper evidence (`cloudfilm audit verify`), view aggregation, FHIR and
DICOM exports, the patient's access log over HTTP, and syslog forwarding (RFC 5424 over
real UDP and TCP listeners on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select, text

from cloudfilm.config import Settings
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.services.access.accounts import accounts_of
from cloudfilm.services.audit.export import (
    dicom_audit_messages_xml,
    dicom_audit_xml,
    fhir_audit_event,
    fhir_bundle,
)
from cloudfilm.services.audit.log import AuditLog, AuditRecord, _ViewDedupe
from cloudfilm.services.audit.syslog import SyslogForwarder, format_message, octet_counted
from cloudfilm.services.context import Archive
from cloudfilm.storage.index.access_models import AuditEventRow, CaregiverRow
from cloudfilm.storage.index.db import Index
from conftest import Server, free_port, run_cli

STUDY = "1.2.826.0.1.3680043.8.498.1"
DCM = "http://dicom.nema.org/resources/ontology/DCM"


def entry(n: int = 0, **fields: object) -> AuditEntry:
    values: dict[str, object] = {"actor": f"user{n}", "action": "view", "actor_role": "physician",
                                 "person_id": 7, "study_uid": STUDY, "source": "192.0.2.10",
                                 "detail": {"n": n, "note": "ü"}}
    return AuditEntry(**(values | fields))  # type: ignore[arg-type]


def fill(archive: Archive, count: int = 5) -> list[int]:
    return [archive.audit.record(entry(n)) for n in range(count)]


def verify_cli(archive: Archive) -> tuple[int, str]:
    done = run_cli(["audit", "verify", "--data", str(archive.settings.data_dir)],
                   archive.settings.database_url)
    return done.returncode, done.stdout + done.stderr


def tamper(archive: Archive, *statements: str) -> None:
    with archive.index.engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement))


# --- tamper evidence -------------------------------------------------------------------------

def test_verify_passes_on_an_intact_chain(archive: Archive) -> None:
    fill(archive, 5)
    code, out = verify_cli(archive)
    assert code == 0, out
    with archive.index.session() as session:
        head = session.scalars(select(AuditEventRow.hash).where(AuditEventRow.id == 5)).one()
    assert f"intact: 5 records, head {head}" in out


@pytest.mark.parametrize("how, statements, bad_id, problem", [
    ("update", ["UPDATE audit_events SET actor = 'mallory' WHERE id = 3"], 3, "edited"),
    ("update-detail", ["UPDATE audit_events SET detail = '{\"n\": 99}' WHERE id = 4"], 4, "edited"),
    ("update-time", ["UPDATE audit_events SET at = at + INTERVAL '1' DAY WHERE id = 2"], 2,
     "edited"),
    ("delete", ["DELETE FROM audit_events WHERE id = 3"], 4, "removed or reordered"),
    ("reorder", ["UPDATE audit_events SET id = -2 WHERE id = 2",
                 "UPDATE audit_events SET id = 2 WHERE id = 3",
                 "UPDATE audit_events SET id = 3 WHERE id = -2"], 2, "removed or reordered"),
])
def test_verify_finds_the_first_tampered_record(archive: Archive, how: str, statements: list[str],
                                                bad_id: int, problem: str) -> None:
    ids = fill(archive, 5)
    assert ids == [1, 2, 3, 4, 5]
    if how == "update-time" and archive.index.is_sqlite:
        statements = ["UPDATE audit_events SET at = datetime(at, '+1 day') WHERE id = 2"]
    tamper(archive, *statements)
    code, out = verify_cli(archive)
    assert code == 1, out
    assert f"broken at record {bad_id} " in out
    assert problem in out
    report = archive.audit.verify()
    assert (report.first_bad_id, report.intact) == (bad_id, False)


def test_verify_reports_a_record_that_no_longer_parses(archive: Archive) -> None:
    fill(archive, 3)
    tamper(archive, "UPDATE audit_events SET detail = '{not json' WHERE id = 2")
    code, out = verify_cli(archive)
    assert code == 1
    assert "broken at record 2 " in out and "cannot be read" in out


def test_verify_does_not_depend_on_the_session_time_zone(archive: Archive) -> None:
    """PostgreSQL returns timestamptz in the session's zone; the hash covers UTC."""
    if archive.index.is_sqlite:
        pytest.skip("SQLite keeps no time zone")
    fill(archive, 3)
    tokyo = Index(archive.settings.database_url + "%20-ctimezone%3DAsia/Tokyo")
    try:
        with tokyo.session() as session:
            at = session.scalars(select(AuditEventRow.at).limit(1)).one()
        assert at.utcoffset() == timedelta(hours=9)  # the zone really differs
        assert AuditLog(tokyo).verify().intact
    finally:
        tokyo.dispose()


# --- view aggregation ------------------------------------------------------------------------

def test_record_view_writes_one_view_per_session_study_and_hour(archive: Archive) -> None:
    audit = archive.audit
    first = audit.record_view("alice", STUDY, "session-1", actor_role="patient", person_id=7,
                              source="127.0.0.1", now=1000.0)
    assert first is not None
    assert audit.record_view("alice", STUDY, "session-1", now=1000.0 + 3599) is None
    assert audit.record_view("alice", "1.2.other", "session-1", now=1001.0) is not None
    assert audit.record_view("alice", STUDY, "session-2", now=1002.0) is not None
    assert audit.record_view("alice", STUDY, "session-1", now=1000.0 + 3601) is not None
    views = audit.query(limit=100)
    assert [r.entry.action for r in views] == ["view"] * 4
    assert views[0].entry.actor_role == "patient" and views[0].entry.source == "127.0.0.1"
    assert audit.verify().intact


def test_view_dedupe_is_a_bounded_lru() -> None:
    dedupe = _ViewDedupe(window=3600, maxsize=2)
    assert dedupe.claim(("s", "a"), 0) and dedupe.claim(("s", "b"), 1)
    assert not dedupe.claim(("s", "a"), 2)  # refreshes a: b is now the oldest
    assert dedupe.claim(("s", "c"), 3)  # evicts b
    assert len(dedupe.seen) == 2
    assert dedupe.claim(("s", "b"), 4)  # forgotten, so recorded again (never fewer views)
    assert not dedupe.claim(("s", "c"), 5)


# --- listeners and queries -------------------------------------------------------------------

def test_a_failing_listener_neither_fails_the_record_nor_stops_others(
        archive: Archive, caplog: pytest.LogCaptureFixture) -> None:
    seen: list[AuditRecord] = []

    def broken(record: AuditRecord) -> None:
        raise RuntimeError("listener down")

    archive.audit.on_record.extend([broken, seen.append])
    with caplog.at_level(logging.ERROR, logger="cloudfilm.services.audit.log"):
        record_id = archive.audit.record(entry(1))
    assert [r.id for r in seen] == [record_id]
    assert seen[0].entry.actor == "user1" and seen[0].at.tzinfo is not None
    assert "listener down" in caplog.text
    assert archive.audit.verify().intact


def test_query_filters_by_time_person_and_limit(archive: Archive) -> None:
    for n in range(6):
        archive.audit.record(entry(n, person_id=7 if n % 2 else 8))
    everything = archive.audit.query()
    assert [r.id for r in everything] == [1, 2, 3, 4, 5, 6]
    assert [r.id for r in archive.audit.query(person_ids=[7])] == [2, 4, 6]
    assert [r.id for r in archive.audit.query(person_ids=[7], newest_first=True, limit=2)] == [6, 4]
    at = everything[0].at
    assert archive.audit.query(since=at + timedelta(days=1)) == []
    assert archive.audit.query(until=at - timedelta(seconds=1)) == []
    window = archive.audit.query(since=at - timedelta(seconds=1), until=at + timedelta(days=1))
    assert len(window) == 6


# --- exports ---------------------------------------------------------------------------------

def caregiver_failure() -> AuditRecord:
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    return AuditRecord(41, at, AuditEntry(
        actor="carol", action="download", outcome="failure", actor_role="caregiver",
        on_behalf_of="alice", person_id=7, patient_ref="P1^^^HOSP_A", study_uid=STUDY,
        source="198.51.100.7", detail={"reason": "grant expired"}))


def test_fhir_audit_event_follows_balp() -> None:
    event = fhir_audit_event(caregiver_failure(), source_id="archive-1")
    assert event["resourceType"] == "AuditEvent" and event["id"] == "41"
    assert event["type"] == {"system": DCM, "code": "110106", "display": "Export"}
    assert {"system": "http://hl7.org/fhir/restful-interaction", "code": "read",
            "display": "read"} in event["subtype"]
    assert event["action"] == "R"
    assert event["recorded"] == "2026-03-01T09:30:00+00:00"
    assert event["outcome"] == "4" and event["outcomeDesc"] == "grant expired"
    user, behalf, server = event["agent"]
    assert user["requestor"] is True and user["who"]["identifier"]["value"] == "carol"
    assert user["role"] == [{"text": "caregiver"}]
    assert user["network"] == {"address": "198.51.100.7", "type": "2"}
    assert behalf["requestor"] is False and behalf["who"]["identifier"]["value"] == "alice"
    assert behalf["role"] == [{"text": "on behalf of"}]
    assert server["type"]["coding"][0]["code"] == "110152" and server["requestor"] is False
    assert event["source"]["observer"] == {"display": "archive-1"}
    patient, study = event["entity"]
    assert patient["what"]["reference"] == "Patient/7"
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")
    assert study["what"]["identifier"]["value"] == f"urn:oid:{STUDY}"
    assert study["what"]["identifier"]["type"]["coding"][0]["code"] == "110180"


def test_fhir_codes_follow_the_action() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    login = fhir_audit_event(AuditRecord(1, at, AuditEntry(actor="alice", action="login",
                                                           actor_role="patient", source="host-a")))
    assert login["type"]["code"] == "110114" and login["outcome"] == "0"
    assert login["subtype"] == [{"system": DCM, "code": "110122", "display": "Login"}]
    assert login["agent"][0]["type"]["coding"][0]["code"] == "PAT"  # the user is the patient
    assert login["agent"][0]["network"]["type"] == "1"  # a machine name, not an address
    assert "entity" not in login
    query = fhir_audit_event(AuditRecord(2, at, AuditEntry(
        actor="dr", action="query", detail={"query": "PatientID=P1"})))
    assert query["type"]["code"] == "110112" and query["subtype"][0]["code"] == "search-type"
    assert base64.b64decode(query["entity"][0]["query"]) == b"PatientID=P1"
    store = fhir_audit_event(AuditRecord(3, at, AuditEntry(actor="PACS", action="store",
                                                           study_uid=STUDY)))
    assert (store["type"]["code"], store["action"]) == ("110104", "C")
    assert store["agent"][0]["type"]["coding"][0]["code"] == "AUT"


def test_fhir_bundle_holds_one_event_per_record() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    records = [AuditRecord(i, at, AuditEntry(actor="a", action="view")) for i in (1, 2, 3)]
    bundle = fhir_bundle(records)
    assert (bundle["resourceType"], bundle["type"], bundle["total"]) == ("Bundle", "searchset", 3)
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["1", "2", "3"]


def attrs(element: ET.Element | None) -> dict[str, str]:
    assert element is not None
    return dict(element.attrib)


def test_dicom_audit_message_follows_ps3_15_a5() -> None:
    message = ET.fromstring(dicom_audit_xml(caregiver_failure(), source_id="archive-1"))
    assert message.tag == "AuditMessage"
    assert attrs(message.find("EventIdentification")) == {
        "EventActionCode": "R", "EventDateTime": "2026-03-01T09:30:00+00:00",
        "EventOutcomeIndicator": "4"}
    assert attrs(message.find("EventIdentification/EventID")) == {
        "csd-code": "110106", "codeSystemName": "DCM", "originalText": "Export"}
    assert message.findtext("EventIdentification/EventOutcomeDescription") == "grant expired"
    user, behalf, server = message.findall("ActiveParticipant")
    assert attrs(user) == {"UserID": "carol", "UserName": "carol", "UserIsRequestor": "true",
                           "NetworkAccessPointID": "198.51.100.7",
                           "NetworkAccessPointTypeCode": "2"}
    assert attrs(user.find("RoleIDCode"))["csd-code"] == "110153"
    assert (behalf.get("UserID"), behalf.get("UserIsRequestor")) == ("alice", "false")
    assert attrs(server.find("RoleIDCode"))["csd-code"] == "110152"
    assert attrs(message.find("AuditSourceIdentification"))["AuditSourceID"] == "archive-1"
    patient, study = message.findall("ParticipantObjectIdentification")
    assert attrs(patient) == {"ParticipantObjectID": "P1^^^HOSP_A",
                              "ParticipantObjectTypeCode": "1",
                              "ParticipantObjectTypeCodeRole": "1"}
    assert attrs(study) == {"ParticipantObjectID": STUDY, "ParticipantObjectTypeCode": "2",
                            "ParticipantObjectTypeCodeRole": "3"}
    assert attrs(study.find("ParticipantObjectIDTypeCode"))["csd-code"] == "110180"
    # schema order (PS3.15 A.5.1): event, participants, source, objects
    assert [c.tag for c in message][:2] == ["EventIdentification", "ActiveParticipant"]
    assert [c.tag for c in message].index("AuditSourceIdentification") == 4


@pytest.mark.parametrize("action, code", [("view", "110103"), ("store", "110104"),
                                          ("download", "110106"), ("query", "110112"),
                                          ("login", "110114")])
def test_dicom_event_ids(action: str, code: str) -> None:
    record = AuditRecord(1, datetime(2026, 3, 1, tzinfo=UTC),
                         AuditEntry(actor="a\x01b", action=action))
    message = ET.fromstring(dicom_audit_xml(record))
    assert attrs(message.find("EventIdentification/EventID"))["csd-code"] == code
    assert attrs(message.find("ActiveParticipant"))["UserID"] == "ab"
    assert message.find("ParticipantObjectIdentification") is None


def test_dicom_export_wraps_one_message_per_record() -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    root = ET.fromstring(dicom_audit_messages_xml(
        [AuditRecord(i, at, AuditEntry(actor="a", action="view")) for i in (1, 2)]))
    assert root.tag == "AuditMessages" and len(root.findall("AuditMessage")) == 2


# --- HTTP: the export and "who accessed my images" --------------------------------------------

@pytest.fixture
def server_archive(server: Server) -> Iterator[Archive]:
    """The running server's archive, opened here too (as a second process would)."""
    opened = Archive.open(Settings.load(server.data_dir, server.database_url), recover=False)
    try:
        yield opened
    finally:
        opened.close()


def user_with_token(archive: Archive, name: str, role: str) -> tuple[int, int | None, str]:
    """(user id, person id, bearer token) of a new user; a patient gets a person of their own."""
    accounts = accounts_of(archive)
    user = accounts.add_user(f"{name}-{time.monotonic_ns()}", role, email=f"{name}@example.org")
    return user.id, user.person_id, accounts.issue_token(user.username, timedelta(hours=1))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_http_export_in_fhir_and_dicom(server: Server, server_archive: Archive) -> None:
    _, person, _ = user_with_token(server_archive, "exported", "patient")
    _, _, admin = user_with_token(server_archive, "auditor", "admin")
    for n in range(3):
        server_archive.audit.record(entry(n, person_id=person))
    url, headers = f"{server.url}/api/audit", bearer(admin)
    fhir = httpx.get(url, params={"format": "fhir", "person": person}, headers=headers)
    assert fhir.status_code == 200, fhir.text
    assert fhir.headers["content-type"].startswith("application/fhir+json")
    bundle = fhir.json()
    assert bundle["resourceType"] == "Bundle" and bundle["total"] == 3
    assert {e["resource"]["entity"][0]["what"]["reference"] for e in bundle["entry"]} == {
        f"Patient/{person}"}
    dicom = httpx.get(url, params={"format": "dicom", "person": person, "limit": 2},
                      headers=headers)
    assert dicom.status_code == 200 and dicom.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(dicom.content)
    assert root.tag == "AuditMessages" and len(root.findall("AuditMessage")) == 2
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    yesterday = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    later = httpx.get(url, params={"person": person, "since": tomorrow}, headers=headers).json()
    earlier = httpx.get(url, params={"person": person, "until": yesterday}, headers=headers).json()
    today = httpx.get(url, params={"person": person, "since": yesterday, "until": tomorrow,
                                   "format": "json"}, headers=headers).json()
    assert (later["total"], earlier["total"], len(today)) == (0, 0, 3)
    assert httpx.get(url, params={"format": "pdf"}, headers=headers).status_code == 400
    assert httpx.get(url, params={"since": "yesterday"}, headers=headers).status_code == 400


def test_http_access_log_shows_who_accessed_my_images(server: Server,
                                                      server_archive: Archive) -> None:
    _, alice, alice_token = user_with_token(server_archive, "alice", "patient")
    _, bob, bob_token = user_with_token(server_archive, "bob", "patient")
    carol, _, carol_token = user_with_token(server_archive, "carol", "caregiver")
    assert alice is not None and bob is not None
    with server_archive.index.write_session() as session:  # carol cares for alice
        session.add(CaregiverRow(person_id=alice, caregiver_user_id=carol, status="active"))
        session.commit()
    audit = server_archive.audit
    audit.record(entry(1, actor="dr-house", person_id=alice, source="203.0.113.5"))
    audit.record(entry(2, actor="carol", action="download", actor_role="caregiver",
                       on_behalf_of="alice", person_id=alice))
    audit.record(entry(3, actor="dr-house", person_id=bob))
    url = f"{server.url}/api/me/access-log"
    mine = httpx.get(url, headers=bearer(alice_token) | {"Accept-Language": "en"})
    assert mine.status_code == 200, mine.text
    log = mine.json()
    assert [(r["who"], r["what"]) for r in log] == [("carol", "downloaded images"),
                                                    ("dr-house", "looked at images")]
    in_chinese = httpx.get(url, headers=bearer(alice_token) | {"Accept-Language": "zh-CN"})
    assert [r["what"] for r in in_chinese.json()] == ["下载了影像", "查看了影像"]
    assert log[0]["on_behalf_of"] == "alice" and log[0]["role"] == "caregiver"
    assert (log[1]["from"], log[1]["study"], log[1]["outcome"]) == ("203.0.113.5", STUDY, "success")
    assert datetime.fromisoformat(log[0]["when"]) >= datetime.fromisoformat(log[1]["when"])
    assert [r["who"] for r in httpx.get(url, headers=bearer(bob_token)).json()] == ["dr-house"]
    cared = httpx.get(url, headers=bearer(carol_token))
    assert [r["person_id"] for r in cared.json()] == [alice, alice]
    assert httpx.get(url, params={"person": bob}, headers=bearer(carol_token)).status_code == 403
    assert httpx.get(url).status_code == 401


# --- syslog forwarding (IHE ATNA over RFC 5424) ----------------------------------------------

SYSLOG = re.compile(rb"^<85>1 (\S+) (\S+) cloudfilm (\d+) ATNALOG - \xef\xbb\xbf(<\?xml.*)$", re.S)


def parse_syslog(message: bytes) -> tuple[str, ET.Element]:
    match = SYSLOG.match(message)
    assert match, message[:200]
    return match.group(1).decode(), ET.fromstring(match.group(4))


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(10)
    try:
        yield sock
    finally:
        sock.close()


def test_syslog_over_udp(archive: Archive, udp_listener: socket.socket) -> None:
    port = udp_listener.getsockname()[1]
    audit = AuditLog(archive.index, forwarder=SyslogForwarder("udp", "127.0.0.1", port))
    try:
        record_id = audit.record(entry(1, action="store"))
        datagram, _ = udp_listener.recvfrom(65535)
    finally:
        audit.close()
    timestamp, message = parse_syslog(datagram)
    stored = audit.query()[-1]
    assert stored.id == record_id
    assert timestamp == stored.at.isoformat().replace("+00:00", "Z")
    assert attrs(message.find("EventIdentification/EventID"))["csd-code"] == "110104"
    assert attrs(message.find("ActiveParticipant"))["UserID"] == "user1"


def read_frames(stream: bytes) -> list[bytes]:
    """RFC 6587 octet counting: MSG-LEN SP SYSLOG-MSG, repeated."""
    frames = []
    while stream:
        length, _, rest = stream.partition(b" ")
        frames.append(rest[:int(length)])
        stream = rest[int(length):]
    return frames


def test_syslog_over_tcp_with_octet_counting(archive: Archive) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    received = bytearray()

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            while chunk := connection.recv(65536):
                received.extend(chunk)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    port = listener.getsockname()[1]
    audit = AuditLog(archive.index, forwarder=SyslogForwarder("tcp", "127.0.0.1", port))
    audit.record(entry(1, action="view"))
    audit.record(entry(2, action="query", detail={"query": "StudyDate=2026"}))
    audit.close()
    thread.join(10)
    listener.close()
    frames = read_frames(bytes(received))
    assert len(frames) == 2
    codes = [attrs(parse_syslog(f)[1].find("EventIdentification/EventID"))["csd-code"]
             for f in frames]
    assert codes == ["110103", "110112"]


def test_syslog_framing_and_header_fields() -> None:
    at = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    message = format_message(b"<x/>", at, hostname="my host", procid="42")
    assert message == b"<85>1 2026-03-01T09:30:00Z myhost cloudfilm 42 ATNALOG - \xef\xbb\xbf<x/>"
    assert octet_counted(b"abc") == b"3 abc"


def test_an_unreachable_collector_never_blocks_or_fails_the_record(
        archive: Archive, caplog: pytest.LogCaptureFixture) -> None:
    dead = free_port()  # nothing listens there
    audit = AuditLog(archive.index, forwarder=SyslogForwarder("tcp", "127.0.0.1", dead))
    with caplog.at_level(logging.WARNING, logger="cloudfilm.services.audit.syslog"):
        started = time.monotonic()
        ids = [audit.record(entry(n)) for n in range(3)]
        elapsed = time.monotonic() - started
        audit.close()
    assert len(ids) == 3 and audit.verify().intact
    assert elapsed < 2.0
    assert "syslog forwarding to tcp://127.0.0.1" in caplog.text


def test_cli_commands_forward_their_records_before_exiting(
        archive: Archive, udp_listener: socket.socket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLOUDFILM_SYSLOG", f"udp://127.0.0.1:{udp_listener.getsockname()[1]}")
    done = run_cli(["retention", "hold", "add", "--study", STUDY, "--reason", "litigation",
                    "--data", str(archive.settings.data_dir)], archive.settings.database_url)
    assert done.returncode == 0, done.stderr
    _, message = parse_syslog(udp_listener.recvfrom(65535)[0])
    assert attrs(message.find("EventIdentification/EventID"))["csd-code"] == "110113"
    assert attrs(message.find("ParticipantObjectIdentification"))["ParticipantObjectID"] == STUDY


def test_the_server_forwards_a_failed_login(fresh_server: Server,
                                            udp_listener: socket.socket) -> None:
    fresh_server.extra_env["CLOUDFILM_SYSLOG"] = f"udp://127.0.0.1:{udp_listener.getsockname()[1]}"
    fresh_server.start()
    with httpx.Client(base_url=fresh_server.url) as client:
        form = client.get("/login").text
        csrf = re.search(r'name="csrf" value="([^"]+)"', form)
        assert csrf
        answer = client.post("/login", data={"csrf": csrf.group(1), "username": "nobody",
                                             "password": "wrong password"})
    assert answer.status_code == 401
    _, message = parse_syslog(udp_listener.recvfrom(65535)[0])
    event = message.find("EventIdentification")
    assert attrs(event)["EventOutcomeIndicator"] == "4"
    assert attrs(message.find("EventIdentification/EventID"))["csd-code"] == "110114"
    assert attrs(message.find("ActiveParticipant"))["NetworkAccessPointID"] == "127.0.0.1"
