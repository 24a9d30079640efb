"""Expiry reminders: tell a share's owner and the patient's caregivers before it ends.

A grant that is active (not revoked, started) and whose ``valid_until`` falls within
the next ``days_before`` days gets one reminder per ``valid_until`` date: renewing a
share (a new date) earns a new reminder. Each recipient gets an in-app message, and an
e-mail if their account has an address. The outbox's dedupe key (grant, date, user,
channel) makes a scan idempotent, so a crash between enqueueing and setting
``grants.reminded_for`` never sends twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, or_, select, update

from cloudfilm.domain.clock import as_utc
from cloudfilm.services.notify.outbox import Message
from cloudfilm.storage.index.access_models import CaregiverRow, GrantRow, PersonRow, UserRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

KIND = "share-expiring"



def expiring_grants(archive: Archive, now: datetime, days_before: int) -> list[GrantRow]:
    """Active grants ending within ``days_before`` days and not yet reminded for that end date."""
    today = now.date()
    stmt = select(GrantRow).where(
        GrantRow.revoked_at.is_(None), GrantRow.valid_from <= now,
        GrantRow.valid_until.is_not(None), GrantRow.valid_until >= today,
        GrantRow.valid_until <= today + timedelta(days=days_before),
        or_(GrantRow.reminded_for.is_(None), GrantRow.reminded_for != GrantRow.valid_until))
    with archive.index.session() as session:
        return list(session.scalars(stmt.order_by(GrantRow.id)).all())


def people_to_remind(archive: Archive, person_id: int, user_ids: Iterable[int] = (), *,
                     patient_accounts: bool = False) -> list[UserRow]:
    """Who hears about a person's folder: ``user_ids``, the person's active caregivers and,
    with ``patient_accounts``, the person's own accounts (enabled accounts, each once)."""
    caregivers = select(CaregiverRow.caregiver_user_id).where(
        CaregiverRow.person_id == person_id, CaregiverRow.status == "active")
    who: list[ColumnElement[bool]] = [UserRow.id.in_(caregivers), UserRow.id.in_(list(user_ids))]
    if patient_accounts:
        who.append(UserRow.person_id == person_id)
    stmt = select(UserRow).where(or_(*who), UserRow.disabled.is_(False))
    with archive.index.session() as session:
        return list(session.scalars(stmt.order_by(UserRow.id)).all())


def recipients(archive: Archive, grant: GrantRow) -> list[UserRow]:
    """The grant's owner and the person's active caregivers (enabled accounts, each once)."""
    owner = [] if grant.owner_user_id is None else [grant.owner_user_id]
    return people_to_remind(archive, grant.person_id, owner)


def _audience(grant: GrantRow, physician: str) -> str:
    if grant.audience == "physician":
        return f"{physician} (physician)" if physician else "a physician"
    return "a link protected by a PIN" if grant.audience == "link+pin" else "a link"


def describe(archive: Archive, grant: GrantRow, until: date) -> tuple[str, str]:
    """Subject and body of the reminder (no link secret: only the holder has it)."""
    with archive.index.session() as session:
        person = session.get(PersonRow, grant.person_id)
        physician = (session.get(UserRow, grant.physician_user_id)
                     if grant.physician_user_id else None)
    whose = person.display_name if person is not None and person.display_name else "the patient"
    studies = json.loads(grant.study_uids) if grant.study_uids else None
    scope = (f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}" if studies is not None
             else "the whole imaging timeline")
    name = (physician.display_name or physician.username) if physician is not None else ""
    shared_with = _audience(grant, name)
    subject = f"A share of {whose}'s images ends on {until.isoformat()}"
    body = (f"The share of {scope} of {whose} with {shared_with} (share #{grant.id}) ends on "
            f"{until.isoformat()}. After that day it no longer opens.\n\n"
            "To keep it, renew it in cloudfilm under Sharing; to end it now, revoke it there.\n")
    return subject, body


def reminder_messages(kind: str, key: str, user: UserRow, subject: str,
                      body: str) -> list[Message]:
    """In-app always, e-mail when the account has an address; ``key:channel`` dedupes."""
    messages = [Message("in-app", kind, subject, body, recipient_user_id=user.id,
                        dedupe_key=f"{key}:in-app")]
    if user.email:
        messages.append(Message("email", kind, subject, body, recipient_user_id=user.id,
                                recipient_address=user.email, dedupe_key=f"{key}:email"))
    return messages


def _messages(grant: GrantRow, user: UserRow, until: date, subject: str,
              body: str) -> list[Message]:
    return reminder_messages(KIND, f"{KIND}:{grant.id}:{until.isoformat()}:{user.id}", user,
                             subject, body)


def enqueue_expiry_reminders(archive: Archive, now: datetime | None = None,
                             days_before: int = 14) -> int:
    """Queue reminders for grants ending soon; returns how many messages were queued."""
    now = as_utc(now or datetime.now(UTC))
    queued = 0
    for grant in expiring_grants(archive, now, days_before):
        until = grant.valid_until
        assert until is not None  # selected on it
        subject, body = describe(archive, grant, until)
        for user in recipients(archive, grant):
            for message in _messages(grant, user, until, subject, body):
                queued += archive.outbox.enqueue(message) is not None
        with archive.index.write_session() as session:
            session.execute(update(GrantRow).where(GrantRow.id == grant.id)
                            .values(reminded_for=until))
            session.commit()
    return queued
