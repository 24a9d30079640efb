"""The notification outbox: a row per message, delivered later by a worker and a sender.

Writers only enqueue (in the same database as everything else, so a notification
is never lost between a change and its message); delivery, retries and senders
(log, in-app, SMTP) live in the notification worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from cloudfilm.storage.index.access_models import OutboxRow
from cloudfilm.storage.index.db import Index

CHANNELS = ("log", "in-app", "email")


@dataclass(frozen=True)
class Message:
    channel: str
    kind: str  # e.g. share-expiring, share-opened, follow-up-due
    subject: str
    body: str
    recipient_user_id: int | None = None
    recipient_address: str = ""
    due_at: datetime | None = None
    dedupe_key: str | None = None  # the same key is enqueued once (e.g. one reminder per grant and date)

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise ValueError(f"channel {self.channel!r} is not one of {CHANNELS}")


class Outbox:
    def __init__(self, index: Index) -> None:
        self.index = index

    def enqueue(self, message: Message) -> int | None:
        """Queue a message; returns its id, or None if its dedupe key was already queued."""
        with self.index.write_session() as session:
            if message.dedupe_key and session.scalars(
                    select(OutboxRow.id).where(OutboxRow.dedupe_key == message.dedupe_key)).first():
                return None
            row = OutboxRow(channel=message.channel, kind=message.kind, subject=message.subject,
                            body=message.body, recipient_user_id=message.recipient_user_id,
                            recipient_address=message.recipient_address,
                            due_at=message.due_at or datetime.now(UTC),
                            dedupe_key=message.dedupe_key)
            session.add(row)
            try:
                session.commit()
            except IntegrityError:
                return None
            return row.id
