"""Notification delivery (outbox worker, retries, senders) and share-expiry reminders.

E-mail goes to a real SMTP server (aiosmtpd) on a free loopback port; in-app messages
are read back over HTTP from the real server. Both databases.
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from cloudfilm.config import NotifySettings, Settings, SmtpSettings
from cloudfilm.services.access.accounts import accounts_of
from cloudfilm.services.context import Archive
from cloudfilm.services.jobs.worker import start_worker
from cloudfilm.services.notify.notifications import (
    MAX_ATTEMPTS,
    InAppSender,
    LogSender,
    NotificationWorker,
    SmtpSender,
    backoff,
    list_in_app,
)
from cloudfilm.services.notify.outbox import Message
from cloudfilm.services.notify.reminders import enqueue_expiry_reminders
from cloudfilm.storage.index.access_models import (
    CaregiverRow,
    GrantRow,
    OutboxRow,
    PersonRow,
    UserRow,
)
from conftest import ROOT, Server, free_port


@pytest.fixture
def now() -> datetime:
    """A moment just after everything a test enqueues (queued messages are due at once)."""
    return datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)


@dataclass
class Mailbox:
    """An aiosmtpd handler keeping every accepted message."""

    received: list[tuple[str, list[str], EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos),
                              parsed))  # type: ignore[arg-type]
        return "250 OK"


@dataclass
class Smtp:
    port: int
    box: Mailbox
    controller: Controller

    def sender(self) -> SmtpSender:
        return SmtpSender("127.0.0.1", self.port, sender="cloudfilm@example.org", timeout=10)


def start_smtp(port: int) -> Smtp:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    return Smtp(port, box, controller)


@pytest.fixture
def smtp() -> Iterator[Smtp]:
    server = start_smtp(free_port())
    try:
        yield server
    finally:
        server.controller.stop()


def add_user(archive: Archive, name: str, role: str = "patient", *,
             email_address: str | None = None, person_id: int | None = None,
             disabled: bool = False) -> int:
    with archive.index.write_session() as session:
        row = UserRow(username=f"{name}-{time.monotonic_ns()}", role=role, email=email_address,
                      display_name=name.title(), person_id=person_id, disabled=disabled)
        session.add(row)
        session.commit()
        return row.id


def outbox(archive: Archive, message_id: int) -> OutboxRow:
    with archive.index.session() as session:
        row = session.get(OutboxRow, message_id)
        assert row is not None
        return row


def aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value and value.tzinfo is None else value


def enqueue(archive: Archive, channel: str, user: int | None, **fields: Any) -> int:
    values = {"kind": "share-opened", "subject": "Your share was opened",
              "body": "Dr Who opened your share at 10:00."} | fields
    message_id = archive.outbox.enqueue(Message(channel, recipient_user_id=user, **values))
    assert message_id is not None
    return message_id


# --- the worker and its senders --------------------------------------------------------------

def test_email_reaches_the_users_address(now: datetime, archive: Archive, smtp: Smtp) -> None:
    user = add_user(archive, "alice", email_address="alice@example.org")
    message_id = enqueue(archive, "email", user, subject="Ihr Befund ist da", body="Grüße\nline 2")
    worker = NotificationWorker(archive, {"email": smtp.sender()})
    assert worker.run_once(now) == 1
    [(mail_from, rcpt, mail)] = smtp.box.received
    assert (mail_from, rcpt) == ("cloudfilm@example.org", ["alice@example.org"])
    assert mail["Subject"] == "Ihr Befund ist da" and mail["To"] == "alice@example.org"
    assert mail.get_content().replace("\r\n", "\n").strip() == "Grüße\nline 2"
    row = outbox(archive, message_id)
    assert aware(row.sent_at) == now and row.attempts == 1 and row.last_error == ""
    assert worker.run_once(now + timedelta(hours=1)) == 0  # sent once only
    assert len(smtp.box.received) == 1


def test_a_queued_address_wins_over_the_users(now: datetime, archive: Archive,
                                              smtp: Smtp) -> None:
    user = add_user(archive, "bob", email_address="bob@example.org")
    enqueue(archive, "email", user, recipient_address="bob.work@example.org")
    enqueue(archive, "email", None, recipient_address="someone@example.org")
    assert NotificationWorker(archive, {"email": smtp.sender()}).run_once(now) == 2
    assert sorted(r[1][0] for r in smtp.box.received) == ["bob.work@example.org",
                                                          "someone@example.org"]


def test_failed_sends_are_retried_with_backoff(now: datetime, archive: Archive) -> None:
    port = free_port()  # no SMTP server there yet
    user = add_user(archive, "carol", email_address="carol@example.org")
    message_id = enqueue(archive, "email", user)
    worker = NotificationWorker(archive, {"email": SmtpSender("127.0.0.1", port, timeout=5)})
    assert worker.run_once(now) == 0
    row = outbox(archive, message_id)
    assert row.attempts == 1 and row.sent_at is None and "SMTP 127.0.0.1" in row.last_error
    assert aware(row.due_at) == now + backoff(1) == now + timedelta(minutes=1)
    assert worker.run_once(now + timedelta(seconds=30)) == 0  # backing off: not even tried
    assert outbox(archive, message_id).attempts == 1
    assert worker.run_once(now + timedelta(minutes=1)) == 0  # second failure
    second = outbox(archive, message_id)
    assert second.attempts == 2 and aware(second.due_at) == now + timedelta(minutes=3)
    server = start_smtp(port)
    try:
        assert worker.run_once(now + timedelta(minutes=3)) == 1
    finally:
        server.controller.stop()
    done = outbox(archive, message_id)
    assert done.attempts == 3 and done.last_error == "" and done.sent_at is not None
    assert [r[1] for r in server.box.received] == [["carol@example.org"]]


def test_backoff_grows_and_is_capped() -> None:
    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert backoff(30) == timedelta(hours=6)


def test_a_message_is_not_sent_before_it_is_due(now: datetime, archive: Archive) -> None:
    user = add_user(archive, "dave")
    message_id = archive.outbox.enqueue(Message("in-app", "follow-up-due", "Follow-up", "CT due",
                                                recipient_user_id=user,
                                                due_at=now + timedelta(days=2)))
    worker = NotificationWorker(archive, {"in-app": InAppSender()})
    assert worker.run_once(now + timedelta(days=1)) == 0
    assert list_in_app(archive.index, user) == []
    assert worker.run_once(now + timedelta(days=2)) == 1
    assert [n["id"] for n in list_in_app(archive.index, user)] == [message_id]


def test_undeliverable_messages_stop_at_once(now: datetime, archive: Archive,
                                            smtp: Smtp) -> None:
    no_address = add_user(archive, "erin")
    gone = add_user(archive, "frank", disabled=True)
    mail_id = enqueue(archive, "email", no_address)
    in_app_id = enqueue(archive, "in-app", gone)
    worker = NotificationWorker(archive, {"email": smtp.sender(), "in-app": InAppSender()})
    assert worker.run_once(now) == 0
    for message_id, error in ((mail_id, "no e-mail address"), (in_app_id, "disabled")):
        row = outbox(archive, message_id)
        assert row.attempts == MAX_ATTEMPTS and error in row.last_error and row.sent_at is None
    assert worker.run_once(now + timedelta(days=30)) == 0
    assert smtp.box.received == []


def test_the_log_sender_never_logs_the_body(now: datetime, archive: Archive,
                                            caplog: pytest.LogCaptureFixture) -> None:
    user = add_user(archive, "gina")
    enqueue(archive, "log", user, subject="Share opened", body="open https://x/s/SECRET-TOKEN-123")
    with caplog.at_level(logging.INFO, logger="cloudfilm.services.notify.notifications"):
        assert NotificationWorker(archive, {"log": LogSender()}).run_once(now) == 1
    assert "Share opened" in caplog.text and f"user {user}" in caplog.text
    assert "SECRET-TOKEN" not in caplog.text


def test_messages_wait_for_a_sender_of_their_channel(now: datetime, archive: Archive) -> None:
    user = add_user(archive, "hank", email_address="hank@example.org")
    message_id = enqueue(archive, "email", user)
    assert NotificationWorker(archive, {"log": LogSender()}).run_once(now) == 0
    row = outbox(archive, message_id)
    assert (row.attempts, row.sent_at, row.last_error) == (0, None, "")


def test_concurrent_workers_never_send_a_message_twice(now: datetime, archive: Archive,
                                                      smtp: Smtp) -> None:
    user = add_user(archive, "ivy", email_address="ivy@example.org")
    for n in range(20):
        enqueue(archive, "email", user, subject=f"message {n}")
    counts: list[int] = []
    workers = [NotificationWorker(archive, {"email": smtp.sender()}) for _ in range(3)]
    threads = [threading.Thread(target=lambda w=w: counts.append(w.run_once(now))) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    subjects = sorted(str(m["Subject"]) for _, _, m in smtp.box.received)
    assert subjects == sorted(f"message {n}" for n in range(20))
    assert sum(counts) == 20


def test_the_background_worker_delivers_until_stopped(archive: Archive) -> None:
    user = add_user(archive, "jo")
    archive.settings = replace(archive.settings, notify=NotifySettings(interval=0.2))
    handle = start_worker(archive)  # the job worker: notify.deliver every 0.2 s
    try:
        message_id = enqueue(archive, "in-app", user)
        deadline = time.monotonic() + 20
        while not list_in_app(archive.index, user) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [n["id"] for n in list_in_app(archive.index, user)] == [message_id]
    finally:
        handle.stop()
    assert not handle.running
    later = enqueue(archive, "in-app", user, subject="after stop")
    time.sleep(0.6)
    assert outbox(archive, later).sent_at is None


# --- in-app notifications over HTTP ----------------------------------------------------------

@pytest.fixture
def server_archive(server: Server) -> Iterator[Archive]:
    opened = Archive.open(Settings.load(server.data_dir, server.database_url), recover=False)
    try:
        yield opened
    finally:
        opened.close()


def token_for(archive: Archive, name: str, role: str = "patient") -> tuple[int, str]:
    accounts = accounts_of(archive)
    user = accounts.add_user(f"{name}-{time.monotonic_ns()}", role)
    return user.id, accounts.issue_token(user.username, timedelta(hours=1))


def test_in_app_notifications_over_http(now: datetime, server: Server,
                                        server_archive: Archive) -> None:
    kim, kim_token = token_for(server_archive, "kim")
    lee, lee_token = token_for(server_archive, "lee")
    first = enqueue(server_archive, "in-app", kim, subject="first")
    second = enqueue(server_archive, "in-app", kim, subject="second")
    enqueue(server_archive, "in-app", lee, subject="for lee")
    later = server_archive.outbox.enqueue(Message("in-app", "follow-up-due", "not yet", "later",
                                                  recipient_user_id=kim,
                                                  due_at=now + timedelta(days=3)))
    NotificationWorker(server_archive, {"in-app": InAppSender()}).run_once()
    url, headers = f"{server.url}/api/me/notifications", {"Authorization": f"Bearer {kim_token}"}
    listed = httpx.get(url, headers=headers)
    assert listed.status_code == 200, listed.text
    assert [n["subject"] for n in listed.json()] == ["second", "first"]  # delivered, newest first
    assert all(n["read_at"] is None for n in listed.json())
    read = httpx.post(f"{url}/{first}/read", headers=headers)
    assert read.status_code == 200 and read.json()["read_at"] is not None
    unread = httpx.get(url, params={"unread": "1"}, headers=headers).json()
    assert [n["id"] for n in unread] == [second]
    lee_headers = {"Authorization": f"Bearer {lee_token}"}
    assert httpx.post(f"{url}/{second}/read", headers=lee_headers).status_code == 404
    assert httpx.post(f"{url}/{later}/read", headers=headers).status_code == 404  # not delivered
    assert [n["subject"] for n in httpx.get(url, headers=lee_headers).json()] == ["for lee"]
    assert httpx.get(url).status_code == 401
    assert httpx.post(f"{url}/{first}/read").status_code == 401


def serve_starts_the_worker() -> bool:
    source = (ROOT / "src/cloudfilm/commands/serve.py").read_text(encoding="utf-8")
    return "start_worker" in source


@pytest.mark.skipif(not serve_starts_the_worker(),
                    reason="cloudfilm serve does not start the notification worker yet")
def test_serve_delivers_notifications_in_the_background(fresh_server: Server) -> None:
    fresh_server.extra_env["CLOUDFILM_NOTIFY_INTERVAL"] = "0.5"
    fresh_server.start()
    opened = Archive.open(Settings.load(fresh_server.data_dir, fresh_server.database_url),
                          recover=False)
    try:
        user, token = token_for(opened, "max")
        enqueue(opened, "in-app", user, subject="from the worker")
    finally:
        opened.close()
    url, headers = f"{fresh_server.url}/api/me/notifications", {"Authorization": f"Bearer {token}"}
    deadline, seen = time.monotonic() + 30, []
    while not seen and time.monotonic() < deadline:
        seen = httpx.get(url, headers=headers).json()
        time.sleep(0.2)
    assert [n["subject"] for n in seen] == ["from the worker"]


# --- share-expiry reminders ------------------------------------------------------------------

@dataclass
class Family:
    person: int
    owner: int
    carer: int
    carer_without_mail: int
    former_carer: int
    physician: int


def family(archive: Archive) -> Family:
    with archive.index.write_session() as session:
        person = PersonRow(display_name="Alice Example")
        session.add(person)
        session.commit()
    ids = Family(person.id,
                 add_user(archive, "alice", email_address="alice@example.org", person_id=person.id),
                 add_user(archive, "carol", "caregiver", email_address="carol@example.org"),
                 add_user(archive, "cody", "caregiver"),
                 add_user(archive, "fred", "caregiver", email_address="fred@example.org"),
                 add_user(archive, "house", "physician", email_address="house@example.org"))
    with archive.index.write_session() as session:
        for carer, status in ((ids.carer, "active"), (ids.carer_without_mail, "active"),
                              (ids.former_carer, "removed")):
            session.add(CaregiverRow(person_id=person.id, caregiver_user_id=carer, status=status))
        session.commit()
    return ids


def add_grant(archive: Archive, who: Family, until: date | None, **fields: Any) -> int:
    values = {"owner_user_id": who.owner, "person_id": who.person, "audience": "physician",
              "physician_user_id": who.physician, "permissions": "view",
              "study_uids": json.dumps(["1.2.3"]),
              "valid_from": datetime.now(UTC) - timedelta(days=30),
              "valid_until": until} | fields
    with archive.index.write_session() as session:
        row = GrantRow(**values)
        session.add(row)
        session.commit()
        return row.id


def queued(archive: Archive, kind: str = "share-expiring") -> list[OutboxRow]:
    with archive.index.session() as session:
        return list(session.scalars(select(OutboxRow).where(OutboxRow.kind == kind)
                                    .order_by(OutboxRow.id)))


def reminded_for(archive: Archive, grant_id: int) -> date | None:
    with archive.index.session() as session:
        return session.scalars(select(GrantRow.reminded_for).where(GrantRow.id == grant_id)).one()


def test_expiry_reminders_reach_the_owner_and_active_caregivers(now: datetime, archive: Archive,
                                                                smtp: Smtp) -> None:
    who, today = family(archive), now.date()
    due = add_grant(archive, who, today + timedelta(days=10))
    not_yet = add_grant(archive, who, today + timedelta(days=30))
    revoked = add_grant(archive, who, today + timedelta(days=5), revoked_at=now - timedelta(days=1))
    expired = add_grant(archive, who, today - timedelta(days=1))
    forever = add_grant(archive, who, None, audience="link", physician_user_id=None)
    assert enqueue_expiry_reminders(archive, now, days_before=14) == 5
    rows = queued(archive)
    assert sorted((r.recipient_user_id, r.channel) for r in rows) == sorted([
        (who.owner, "in-app"), (who.owner, "email"), (who.carer, "in-app"), (who.carer, "email"),
        (who.carer_without_mail, "in-app")])
    until = (today + timedelta(days=10)).isoformat()
    assert all(until in r.subject and "Alice Example" in r.subject for r in rows)
    assert "House (physician)" in rows[0].body and f"share #{due}" in rows[0].body
    assert reminded_for(archive, due) == today + timedelta(days=10)
    assert [reminded_for(archive, g) for g in (not_yet, revoked, expired, forever)] == [None] * 4
    worker = NotificationWorker(archive, {"email": smtp.sender(), "in-app": InAppSender()})
    assert worker.run_once(now) == 5
    assert sorted(r[1][0] for r in smtp.box.received) == ["alice@example.org", "carol@example.org"]
    assert all(until in str(m["Subject"]) for _, _, m in smtp.box.received)
    assert len(list_in_app(archive.index, who.carer_without_mail)) == 1


def test_one_reminder_per_end_date_and_a_new_one_after_renewal(now: datetime,
                                                               archive: Archive) -> None:
    who, today = family(archive), now.date()
    grant = add_grant(archive, who, today + timedelta(days=3))
    assert enqueue_expiry_reminders(archive, now, 14) == 5
    assert enqueue_expiry_reminders(archive, now + timedelta(hours=1), 14) == 0
    with archive.index.write_session() as session:  # renewed: a new end date
        session.execute(update(GrantRow).where(GrantRow.id == grant)
                        .values(valid_until=today + timedelta(days=12)))
        session.commit()
    assert enqueue_expiry_reminders(archive, now, 14) == 5
    assert reminded_for(archive, grant) == today + timedelta(days=12)
    assert len(queued(archive)) == 10


def test_a_repeated_scan_after_a_crash_queues_nothing_twice(now: datetime,
                                                            archive: Archive) -> None:
    who = family(archive)
    grant = add_grant(archive, who, now.date() + timedelta(days=1))
    assert enqueue_expiry_reminders(archive, now, 14) == 5
    with archive.index.write_session() as session:  # as if the process died before the update
        session.execute(update(GrantRow).where(GrantRow.id == grant).values(reminded_for=None))
        session.commit()
    assert enqueue_expiry_reminders(archive, now, 14) == 0
    assert reminded_for(archive, grant) == now.date() + timedelta(days=1)
    assert len(queued(archive)) == 5


def test_the_background_worker_sends_reminders(archive: Archive, smtp: Smtp) -> None:
    who, today = family(archive), datetime.now(UTC).date()
    soon = add_grant(archive, who, today + timedelta(days=2))
    later = add_grant(archive, who, today + timedelta(days=5))
    archive.settings = replace(
        archive.settings, notify=NotifySettings(interval=0.2, reminder_days=3),
        smtp=SmtpSettings("127.0.0.1", smtp.port, sender="cloudfilm@example.org"))
    handle = start_worker(archive)
    try:
        deadline = time.monotonic() + 30
        while len(smtp.box.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        handle.stop()
    assert sorted(r[1][0] for r in smtp.box.received) == ["alice@example.org", "carol@example.org"]
    assert reminded_for(archive, soon) is not None and reminded_for(archive, later) is None
