"""Delivering the notification outbox: a worker, senders per channel, retries with backoff.

``NotificationWorker.run_once(now)`` delivers every due message (``due_at <= now``, not
yet sent, attempts left) whose channel has a sender. A message is claimed by moving its
``due_at`` forward by a lease (a conditional UPDATE, so two workers never send it
twice at once; a worker that dies mid-send leaves it to be retried after the lease:
delivery is at least once). A failed send counts an attempt, keeps the error and is
retried after an exponential backoff; an undeliverable one (no address) stops at once.

Senders: ``log`` (python logging, subject only: bodies may carry links), ``in-app``
(delivered = visible at ``GET /api/me/notifications``) and ``email`` (SMTP, RFC 5321;
``CLOUDFILM_SMTP_HOST``, ``_PORT`` (25), ``_FROM``, ``_STARTTLS``, ``_USER``, ``_PASSWORD``).

Jobs run it (services/jobs/handlers.py): ``notify.deliver`` every
``CLOUDFILM_NOTIFY_INTERVAL`` s, and the share-expiry (``CLOUDFILM_REMINDER_DAYS``) and
nodule follow-up (``CLOUDFILM_FOLLOWUP_DAYS``) reminder scans every
``CLOUDFILM_REMINDER_INTERVAL`` s, in whichever worker takes them.
"""

from __future__ import annotations

import logging
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import make_msgid
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select, update

from cloudfilm.config import SmtpSettings
from cloudfilm.domain.clock import as_utc
from cloudfilm.storage.index.access_models import OutboxRow, UserRow
from cloudfilm.storage.index.db import Index

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 8
BACKOFF_BASE = timedelta(minutes=1)
BACKOFF_MAX = timedelta(hours=6)
LEASE = timedelta(minutes=5)
BATCH = 100


class DeliveryError(Exception):
    """A send failed and may succeed later (the message is retried)."""


class Undeliverable(DeliveryError):
    """A send can never succeed as queued (e.g. no address): no more attempts."""


@dataclass(frozen=True)
class Delivery:
    """A queued message with its recipient resolved (the address: queued, or the user's email)."""

    id: int
    channel: str
    kind: str
    subject: str
    body: str
    recipient_user_id: int | None
    username: str
    address: str


class Sender(Protocol):
    def send(self, message: Delivery) -> None: ...


class LogSender:
    """Writes one log line per message: id, kind, recipient user and subject (never the body)."""

    def send(self, message: Delivery) -> None:
        log.info("notification %s (%s) for user %s: %s", message.id, message.kind,
                 message.recipient_user_id, message.subject)


class InAppSender:
    """In-app messages are delivered by being marked sent; users read them over the API."""

    def send(self, message: Delivery) -> None:
        if message.recipient_user_id is None:
            raise Undeliverable("an in-app message needs a recipient user")


@dataclass(frozen=True)
class SmtpSender:
    """E-mail over SMTP (smtplib), optionally STARTTLS (RFC 3207) and AUTH."""

    host: str
    port: int = 25
    sender: str = "cloudfilm@localhost"
    starttls: bool = False
    user: str = ""
    password: str = ""
    timeout: float = 30.0

    @classmethod
    def from_settings(cls, settings: SmtpSettings | None) -> SmtpSender | None:
        """The sender of ``Settings.smtp`` (CLOUDFILM_SMTP_*), None when e-mail is off."""
        if settings is None:
            return None
        return cls(host=settings.host, port=settings.port, sender=settings.sender,
                   starttls=settings.starttls, user=settings.user, password=settings.password)

    def send(self, message: Delivery) -> None:
        if not message.address:
            raise Undeliverable("no e-mail address for the recipient")
        email = EmailMessage()
        email["From"], email["To"], email["Subject"] = self.sender, message.address, message.subject
        email["Message-ID"] = make_msgid(domain=self.sender.rpartition("@")[2] or None)
        email.set_content(message.body)
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self.user:
                    smtp.login(self.user, self.password)
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            raise Undeliverable(f"recipient refused: {exc.recipients}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"SMTP {self.host}:{self.port}: {exc}") from exc


def default_senders(smtp_settings: SmtpSettings | None = None) -> dict[str, Sender]:
    """log and in-app always; email when ``CLOUDFILM_SMTP_HOST`` is set (else e-mails wait)."""
    senders: dict[str, Sender] = {"log": LogSender(), "in-app": InAppSender()}
    if (smtp := SmtpSender.from_settings(smtp_settings)) is not None:
        senders["email"] = smtp
    return senders


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, ... minutes after the n-th failure, at most 6 hours."""
    return min(BACKOFF_BASE * (1 << max(attempts - 1, 0)), BACKOFF_MAX)



def _delivery(row: OutboxRow, user: UserRow | None) -> Delivery:
    address = row.recipient_address or (user.email or "" if user is not None else "")
    return Delivery(row.id, row.channel, row.kind, row.subject, row.body, row.recipient_user_id,
                    user.username if user is not None else "", address)


class NotificationWorker:
    """Sends due outbox messages through the sender of their channel."""

    def __init__(self, archive: Archive, senders: Mapping[str, Sender] | None = None) -> None:
        self.archive = archive
        self.index: Index = archive.index
        self.senders: dict[str, Sender] = (default_senders(archive.settings.smtp) if senders is None
                                           else dict(senders))

    def run_once(self, now: datetime | None = None) -> int:
        """Deliver what is due at ``now``; returns how many messages were delivered."""
        now = as_utc(now or datetime.now(UTC))
        delivered = 0
        for row, user in self._due(now):
            if self._claim(row.id, now):
                delivered += self._deliver(row, user, now)
        return delivered

    def _due(self, now: datetime) -> list[tuple[OutboxRow, UserRow | None]]:
        if not self.senders:
            return []
        stmt = (select(OutboxRow, UserRow)
                .outerjoin(UserRow, UserRow.id == OutboxRow.recipient_user_id)
                .where(OutboxRow.sent_at.is_(None), OutboxRow.due_at <= now,
                       OutboxRow.attempts < MAX_ATTEMPTS, OutboxRow.channel.in_(list(self.senders)))
                .order_by(OutboxRow.due_at, OutboxRow.id).limit(BATCH))
        with self.index.session() as session:
            return [(row, user) for row, user in session.execute(stmt).all()]

    def _claim(self, outbox_id: int, now: datetime) -> bool:
        """Take a lease on a due message; False if another worker took it first."""
        with self.index.write_session() as session:
            result: Any = session.execute(
                update(OutboxRow)
                .where(OutboxRow.id == outbox_id, OutboxRow.sent_at.is_(None),
                       OutboxRow.due_at <= now)
                .values(due_at=now + LEASE))
            session.commit()
            return bool(result.rowcount == 1)

    def _deliver(self, row: OutboxRow, user: UserRow | None, now: datetime) -> int:
        try:
            if user is not None and user.disabled:
                raise Undeliverable("the recipient's account is disabled")
            self.senders[row.channel].send(_delivery(row, user))
        except Exception as exc:  # noqa: BLE001 - any sender failure is recorded and retried, never raised
            self._failed(row, exc, now)
            return 0
        self._update(row.id, sent_at=now, attempts=row.attempts + 1, last_error="")
        return 1

    def _failed(self, row: OutboxRow, exc: Exception, now: datetime) -> None:
        attempts = MAX_ATTEMPTS if isinstance(exc, Undeliverable) else row.attempts + 1
        error = f"{type(exc).__name__}: {exc}"[:1000]
        log.warning("notification %s (%s, %s) failed, attempt %s of %s: %s", row.id, row.kind,
                    row.channel, row.attempts + 1, MAX_ATTEMPTS, error)
        self._update(row.id, attempts=attempts, last_error=error,
                     due_at=now + backoff(row.attempts + 1))

    def _update(self, outbox_id: int, **values: Any) -> None:
        with self.index.write_session() as session:
            session.execute(update(OutboxRow).where(OutboxRow.id == outbox_id).values(**values))
            session.commit()


# --- the in-app inbox ------------------------------------------------------------------------

def _inbox_item(row: OutboxRow) -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "subject": row.subject, "body": row.body,
            "sent_at": as_utc(row.sent_at).isoformat() if row.sent_at else None,
            "read_at": as_utc(row.read_at).isoformat() if row.read_at else None}


def list_in_app(index: Index, user_id: int, *, unread_only: bool = False,
                limit: int = 100) -> list[dict[str, Any]]:
    """A user's delivered in-app messages, newest first."""
    stmt = select(OutboxRow).where(OutboxRow.channel == "in-app",
                                   OutboxRow.recipient_user_id == user_id,
                                   OutboxRow.sent_at.is_not(None))
    if unread_only:
        stmt = stmt.where(OutboxRow.read_at.is_(None))
    with index.session() as session:
        rows = session.scalars(stmt.order_by(OutboxRow.sent_at.desc(), OutboxRow.id.desc())
                               .limit(limit)).all()
        return [_inbox_item(r) for r in rows]


def mark_read(index: Index, user_id: int, notification_id: int,
              now: datetime | None = None) -> dict[str, Any] | None:
    """Mark one of the user's delivered in-app messages read (idempotent); None if not theirs."""
    with index.write_session() as session:
        row = session.scalars(select(OutboxRow).where(
            OutboxRow.id == notification_id, OutboxRow.channel == "in-app",
            OutboxRow.recipient_user_id == user_id, OutboxRow.sent_at.is_not(None))).first()
        if row is None:
            return None
        if row.read_at is None:
            row.read_at = as_utc(now or datetime.now(UTC))
            session.commit()
        return _inbox_item(row)
