"""Grants and share links (issue "People, access and sharing": grants and share links).

- Only the patient, their caregiver (on their behalf) or an admin may share a person's
  data (domain.access.may_act_for); named studies must belong to that person.
- Audiences: a link, a link plus PIN, or a named physician. Physician shares default
  to 90 days when ``valid_until`` is absent; link shares too, unless ``null`` is given
  explicitly (no end).
- A link's secret is HMAC(server key, nonce) (credentials.share_secret): the index keeps
  the nonce and SHA-256(secret), so renewal shows the same URL and QR code again.
- Unknown, expired, revoked, malformed and used-up secrets are indistinguishable (None).
- PINs are 6 to 12 digits, stored as argon2id. Each try is reserved on the rate limiter
  key ``pin:<grant id>`` before the PIN is hashed, so parallel requests share the count:
  5 wrong PINs lock the link for 15 minutes (guessing a 6-digit PIN takes years, where
  a 4-digit one would fall within weeks).
- Opens are counted, optionally capped (``max_opens``), audited, and the owner is
  notified in-app unless ``notify_on_open`` is off.
- Create, renew, revoke and open are audited.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Audience, Permission, Principal, Role, may_act_for
from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.services.access.credentials import (
    hash_password,
    new_nonce,
    share_secret,
    token_hash,
    verify_password,
)
from cloudfilm.services.access.people import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PeopleService,
    TooManyAttempts,
    audit_entry,
)
from cloudfilm.services.access.policy import (
    Policy,
    grant_from_row,
    grant_scope,
    visible_instances_clause,
)
from cloudfilm.services.access.ratelimit import LockedOut
from cloudfilm.services.notify.outbox import Message
from cloudfilm.storage.index.access_models import GrantRow, PersonRow, UserRow, WebSessionRow
from cloudfilm.storage.index.models import PatientRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

DEFAULT_DAYS = 90
PIN_PATTERN = re.compile(r"^[0-9]{6,12}$")  # 6+ digits: ~3 years of lock-outs to guess
SECRET_PATTERN = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url of 32 bytes, unpadded
ABSENT: Any = object()


class WrongPin(Forbidden):
    """A wrong PIN: ``remaining`` attempts before the link locks."""

    def __init__(self, remaining: int) -> None:
        super().__init__(f"wrong PIN; {remaining} attempt(s) left before a 15-minute lock")
        self.remaining = remaining


# -- requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareRequest:
    person_id: int | None
    study_uids: tuple[str, ...] | None  # None: the person's timeline
    include_future: bool
    audience: Audience
    physician: str | None
    permissions: frozenset[Permission]
    valid_until: date | None
    pin: str | None = None
    max_opens: int | None = None
    notify_on_open: bool = True


def parse_valid_until(value: Any, today: date) -> date | None:
    """Absent → 90 days from today; ``null`` → no end; else an ISO date."""
    if value is ABSENT:
        return today + timedelta(days=DEFAULT_DAYS)
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError as exc:
        raise Invalid("valid_until must be a date (YYYY-MM-DD) or null") from exc


def _parse_scope(body: dict[str, Any]) -> tuple[int | None, tuple[str, ...] | None, bool]:
    scope = body.get("scope")
    if not isinstance(scope, dict):
        raise Invalid('scope must be {"studies": [...]} or {"patient": PERSON_ID}')
    if "studies" in scope:
        uids = scope["studies"]
        if not isinstance(uids, list) or not uids \
                or not all(isinstance(u, str) and u for u in uids):
            raise Invalid("scope.studies must be a non-empty list of Study Instance UIDs")
        person = scope.get("patient")
        return (int(person) if person is not None else None), tuple(dict.fromkeys(uids)), False
    if "patient" in scope:
        try:
            return int(scope["patient"]), None, bool(scope.get("include_future", False))
        except (TypeError, ValueError) as exc:
            raise Invalid("scope.patient must be a person id") from exc
    raise Invalid('scope must be {"studies": [...]} or {"patient": PERSON_ID}')


def _parse_audience(body: dict[str, Any]) -> tuple[Audience, str | None, str | None]:
    audience, pin = body.get("audience", "link"), body.get("pin")
    if pin is not None and (not isinstance(pin, str) or not PIN_PATTERN.match(pin)):
        raise Invalid("pin must be 6 to 12 digits")
    if isinstance(audience, dict) and isinstance(audience.get("physician"), str):
        if pin is not None:
            raise Invalid("a PIN protects links; physician shares need none")
        return Audience.PHYSICIAN, audience["physician"], None
    if audience == Audience.LINK_PIN.value and pin is None:
        raise Invalid("a link+pin share needs a pin")
    if audience in (Audience.LINK.value, Audience.LINK_PIN.value):
        return (Audience.LINK_PIN if pin else Audience.LINK), None, pin
    raise Invalid('audience must be "link", "link+pin" or {"physician": USERNAME}')


def _parse_permissions(body: dict[str, Any]) -> frozenset[Permission]:
    raw = body.get("permissions", ["view"])
    try:
        found = frozenset(Permission(p) for p in raw)
    except (TypeError, ValueError) as exc:
        raise Invalid('permissions must be a list of "view", "download", "upload"') from exc
    if not found:
        raise Invalid("permissions must not be empty")
    return found | {Permission.VIEW} if Permission.DOWNLOAD in found else found


def _parse_max_opens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise Invalid("max_opens must be a positive integer or null")
    return value


def parse_share_request(body: Any, today: date) -> ShareRequest:
    """The JSON body of ``POST /api/shares``, checked; raises Invalid with the reason."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    person_id, uids, future = _parse_scope(body)
    audience, physician, pin = _parse_audience(body)
    until = parse_valid_until(body.get("valid_until", ABSENT), today)
    if until is not None and until < today:
        raise Invalid("valid_until is in the past")
    return ShareRequest(person_id, uids, future, audience, physician, _parse_permissions(body),
                        until, pin, _parse_max_opens(body.get("max_opens")),
                        bool(body.get("notify_on_open", True)))


# -- views -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShareInfo:
    """A grant as its owner sees it; ``link_path`` is ``/s/<secret>`` for link shares."""

    id: int
    person_id: int
    scope: dict[str, Any]
    audience: str
    physician: str | None
    permissions: list[str]
    valid_until: str | None
    status: str  # active | expired | revoked | used-up
    open_count: int
    max_opens: int | None
    has_pin: bool
    notify_on_open: bool
    created_at: str
    link_path: str | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CardStudy:
    date: str
    hospital: str
    description: str


@dataclass(frozen=True)
class CardFacts:
    """What the printable card shows (share_card.py masks the name)."""

    patient_name: str
    studies: list[CardStudy]
    valid_until: date | None
    has_pin: bool


@dataclass(frozen=True)
class OpenableLink:
    """A link secret that opens now, as the link pages need it (no secret, no hashes)."""

    grant_id: int
    has_pin: bool


def cutoff_now() -> datetime:
    """A new grant's ``created_at``: the end of the previous second.

    A timeline share without ``include_future`` covers studies that arrived no later
    than its creation. SQLite keeps index timestamps to the second, so a study that
    arrives in the same second as the grant could not be ordered against it: such ties
    go to privacy (the study is not covered).
    """
    return utcnow().replace(microsecond=0) - timedelta(microseconds=1)


def grant_status(row: GrantRow, now: datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if not grant_from_row(row).active(now):
        return "expired"
    if row.max_opens is not None and row.open_count >= row.max_opens:
        return "used-up"
    return "active"


def _iso(value: datetime | None) -> str:
    moment = as_utc(value)
    return moment.isoformat() if moment else ""


class SharingService:
    """Create, renew, revoke, list and open shares."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.index = archive.index
        self.policy = Policy(archive)

    # -- owner side ----------------------------------------------------------------------

    def create(self, principal: Principal, request: ShareRequest) -> ShareInfo:
        """A new grant for a person's studies or timeline, by someone who may act for them."""
        person_id = self._person_for(principal, request)
        pin_hash = hash_password(request.pin) if request.pin else None  # slow: outside the lock
        nonce = new_nonce() if request.audience is not Audience.PHYSICIAN else None
        created = cutoff_now()
        with self.index.write_session() as session:
            physician_id = self._physician_id(session, request.physician)
            row = GrantRow(
                owner_user_id=principal.user_id, person_id=person_id,
                study_uids=json.dumps(sorted(request.study_uids)) if request.study_uids else None,
                include_future=request.include_future, audience=request.audience.value,
                physician_user_id=physician_id,
                permissions=",".join(sorted(p.value for p in request.permissions)),
                secret_nonce=nonce, secret_hash=token_hash(self._secret(nonce)) if nonce else None,
                pin_hash=pin_hash,
                valid_until=request.valid_until, max_opens=request.max_opens,
                notify_on_open=request.notify_on_open, open_count=0, created_at=created,
                valid_from=created)
            session.add(row)
            session.commit()
        self._audit(principal, "share-create", row, audience=row.audience,
                    physician=request.physician or "")
        return self.info(row)

    def _person_for(self, principal: Principal, request: ShareRequest) -> int:
        """The person whose data is shared; every named study must be theirs."""
        if principal.user_id is None:
            raise Forbidden("sign in to share")
        person_id = request.person_id
        if request.study_uids is not None:
            refs = [self.policy.study_ref(uid) for uid in request.study_uids]
            owners = {ref.person_id if ref else None for ref in refs}
            if len(owners) != 1 or None in owners or (person_id is not None
                                                      and owners != {person_id}):
                raise Invalid("every study must be in the folder of one and the same person")
            person_id = owners.pop()
        assert person_id is not None
        if not may_act_for(principal, person_id):
            raise Forbidden("only the patient, their caregiver or an admin may share this")
        with self.index.session() as session:
            if session.get(PersonRow, person_id) is None:
                raise NotFound(f"person {person_id} not found")
        return person_id

    @staticmethod
    def _physician_id(session: Session, username: str | None) -> int | None:
        if username is None:
            return None
        user = session.scalars(select(UserRow).where(UserRow.username == username)).first()
        if user is None or user.role != Role.PHYSICIAN.value or user.disabled:
            raise Invalid(f"{username!r} is not a physician's account")
        return user.id

    def owned(self, principal: Principal, grant_id: int) -> GrantRow:
        """A grant the caller manages (patient, caregiver, admin); else NotFound (no leak)."""
        with self.index.session() as session:
            row = session.get(GrantRow, grant_id)
        if row is None or not may_act_for(principal, row.person_id):
            raise NotFound(f"share {grant_id} not found")
        return row

    def get(self, principal: Principal, grant_id: int) -> ShareInfo:
        """A share the caller manages, as its owner sees it; else NotFound (no leak)."""
        return self.info(self.owned(principal, grant_id))

    def card_facts_of(self, principal: Principal, grant_id: int) -> CardFacts:
        """The printable card of a share the caller manages."""
        return self.card_facts(self.owned(principal, grant_id))

    def renew(self, principal: Principal, grant_id: int, valid_until: date | None) -> ShareInfo:
        """A new end date (a past one ends the share); the link and QR code stay the same."""
        row = self.owned(principal, grant_id)
        if row.revoked_at is not None:
            raise Conflict("a revoked share cannot be renewed; create a new one")
        with self.index.write_session() as session:
            session.execute(update(GrantRow).where(GrantRow.id == grant_id).values(
                valid_until=valid_until, renewed_at=utcnow(), reminded_for=None))
            session.commit()
        row = self.owned(principal, grant_id)
        self._audit(principal, "share-renew", row,
                    valid_until=valid_until.isoformat() if valid_until else None)
        return self.info(row)

    def revoke(self, principal: Principal, grant_id: int) -> None:
        """Revocation holds from the next request on, for open share sessions too."""
        row = self.owned(principal, grant_id)
        now = utcnow()
        with self.index.write_session() as session:
            session.execute(update(GrantRow).where(GrantRow.id == grant_id,
                                                   GrantRow.revoked_at.is_(None))
                            .values(revoked_at=now))
            session.execute(update(WebSessionRow).where(WebSessionRow.grant_id == grant_id,
                                                        WebSessionRow.revoked_at.is_(None))
                            .values(revoked_at=now))
            session.commit()
        self._audit(principal, "share-revoke", row)

    def list(self, principal: Principal) -> list[ShareInfo]:
        """The caller's shares and those of every person they act for, newest first."""
        persons = set(principal.acting_for)
        if principal.own_person_id is not None:
            persons.add(principal.own_person_id)
        statement = select(GrantRow).order_by(GrantRow.id.desc())
        if principal.role is not Role.ADMIN:
            statement = statement.where(or_(GrantRow.owner_user_id == principal.user_id,
                                            GrantRow.person_id.in_(sorted(persons))))
        with self.index.session() as session:
            rows = list(session.scalars(statement))
        return [self.info(row) for row in rows if may_act_for(principal, row.person_id)
                or row.owner_user_id == principal.user_id]

    def info(self, row: GrantRow) -> ShareInfo:
        scope: dict[str, Any] = ({"studies": json.loads(row.study_uids)} if row.study_uids
                                 else {"patient": row.person_id,
                                       "include_future": bool(row.include_future)})
        physician = None
        if row.physician_user_id is not None:
            with self.index.session() as session:
                user = session.get(UserRow, row.physician_user_id)
                physician = user.username if user else None
        return ShareInfo(
            row.id, row.person_id, scope, row.audience, physician,
            [p for p in row.permissions.split(",") if p],
            row.valid_until.isoformat() if row.valid_until else None,
            grant_status(row, utcnow()), row.open_count, row.max_opens, row.pin_hash is not None,
            bool(row.notify_on_open), _iso(row.created_at), self.link_path(row))

    def _secret(self, nonce: str) -> str:
        return share_secret(self.archive.server_key, nonce)

    def link_path(self, row: GrantRow) -> str | None:
        """``/s/<secret>``: derived again from the nonce, so it never changes."""
        return f"/s/{self._secret(row.secret_nonce)}" if row.secret_nonce else None

    # -- opening a link ------------------------------------------------------------------

    def find_link(self, secret: str) -> GrantRow | None:
        """The grant behind a link secret if it can be opened now; None for every bad case."""
        if not SECRET_PATTERN.match(secret):
            return None
        with self.index.session() as session:
            row = session.scalars(select(GrantRow).where(
                GrantRow.secret_hash == token_hash(secret))).first()
        if row is None or row.audience == Audience.PHYSICIAN.value:
            return None
        return row if grant_status(row, utcnow()) == "active" else None

    def openable(self, secret: str) -> OpenableLink | None:
        """`find_link` as a plain value: the grant behind a secret that opens now, or None."""
        row = self.find_link(secret)
        return OpenableLink(row.id, row.pin_hash is not None) if row is not None else None

    def _link_row(self, link: OpenableLink) -> GrantRow:
        with self.index.session() as session:
            row = session.get(GrantRow, link.grant_id)
        if row is None:
            raise NotFound("this link is not available")
        return row

    def link_locked(self, link: OpenableLink) -> bool:
        """Is the link locked after too many wrong PINs?"""
        return self.pin_locked(self._link_row(link))

    def try_pin(self, link: OpenableLink, pin: str) -> None:
        """`check_pin` for an openable link: TooManyAttempts, WrongPin, or nothing."""
        self.check_pin(self._link_row(link), pin)

    def open_link(self, link: OpenableLink, source: str = "") -> bool:
        """`record_open` for an openable link: False when it no longer opens."""
        return self.record_open(self._link_row(link), source)

    def pin_locked(self, row: GrantRow) -> bool:
        try:
            self.archive.rate_limiter.check(f"pin:{row.id}")
        except LockedOut:
            return True
        return False

    def check_pin(self, row: GrantRow, pin: str) -> None:
        """Raise TooManyAttempts while locked, WrongPin on a mismatch (counted).

        The try is reserved before the slow hash (services/access/ratelimit.py), so at most
        five PINs are ever evaluated per lock-out window, however many arrive at once.
        """
        key = f"pin:{row.id}"
        limiter = self.archive.rate_limiter
        try:
            used = limiter.reserve(key)[key]
        except LockedOut as exc:
            self._audit_pin(row, "locked")
            raise TooManyAttempts(str(exc)) from exc
        if verify_password(row.pin_hash, pin):
            limiter.clear(key)
            return
        self._audit_pin(row, "wrong PIN")
        remaining = limiter.limit.max_failures - used
        if remaining <= 0:
            raise TooManyAttempts("too many wrong PINs; the link is locked for 15 minutes")
        raise WrongPin(remaining)

    def _audit_pin(self, row: GrantRow, reason: str) -> None:
        self.archive.audit.record(audit_entry(self._link_principal(row), "share-open",
                                              person_id=row.person_id, outcome="failure",
                                              detail={"share": row.id, "reason": reason}))

    def record_open(self, row: GrantRow, source: str = "") -> bool:
        """Count one open (atomically, within ``max_opens``), audit it, notify the owner."""
        with self.index.write_session() as session:
            counted = session.execute(update(GrantRow).where(
                GrantRow.id == row.id, GrantRow.revoked_at.is_(None),
                or_(GrantRow.max_opens.is_(None), GrantRow.open_count < GrantRow.max_opens))
                .values(open_count=GrantRow.open_count + 1))
            session.commit()
        if counted.rowcount != 1:  # type: ignore[attr-defined]
            return False
        self.archive.audit.record(audit_entry(self._link_principal(row), "share-open",
                                              person_id=row.person_id, source=source,
                                              detail={"share": row.id}))
        if row.notify_on_open:
            self.archive.outbox.enqueue(Message(
                channel="in-app", kind="share-opened", recipient_user_id=row.owner_user_id,
                subject="Your shared images were opened",
                body=f"Your share #{row.id} was opened at "
                     f"{utcnow().strftime('%Y-%m-%d %H:%M')} UTC "
                     f"(opened {row.open_count + 1} time(s) so far)."))
        return True

    @staticmethod
    def _link_principal(row: GrantRow) -> Principal:
        return Principal(kind="share", share_grant_id=row.id)

    # -- the printable card --------------------------------------------------------------

    def card_facts(self, row: GrantRow) -> CardFacts:
        """Name (from the person, else the first study), dates and hospitals of the share."""
        covered = visible_instances_clause(grant_scope(grant_from_row(row)))
        studies = PeopleService(self.archive).studies_of(row.person_id, covered)
        with self.index.session() as session:
            person = session.get(PersonRow, row.person_id)
            name = person.display_name if person else ""
            if not name and studies:
                name = self._patient_name(session, studies[0].study_uid)
        return CardFacts(name, [CardStudy(s.date, s.hospital, s.description) for s in studies],
                         row.valid_until, row.pin_hash is not None)

    @staticmethod
    def _patient_name(session: Session, study_uid: str) -> str:
        attrs = session.scalars(select(PatientRow.attrs).join(
            StudyRow, StudyRow.patient_pk == PatientRow.id)
            .where(StudyRow.study_uid == study_uid)).first()
        value = (orjson.loads(attrs or "{}").get("00100010", {}).get("Value") or [{}])[0]
        if not isinstance(value, dict):
            return ""
        return "=".join(g for g in (value.get("Alphabetic"), value.get("Ideographic")) if g)

    # -- audit ---------------------------------------------------------------------------

    def _audit(self, principal: Principal, action: str, row: GrantRow, **detail: Any) -> None:
        self.archive.audit.record(audit_entry(principal, action, person_id=row.person_id,
                                              detail={"share": row.id, **detail}))


def ensure_demo_physician_share(archive: Archive, patient: Principal, physician: str) -> None:
    """The demo patient shares their whole timeline with the demo physician (once), so
    `make run` shows "patients shared with me" and OHIF for a physician straight away."""
    sharing = SharingService(archive)
    if any(s.audience == Audience.PHYSICIAN.value and s.physician == physician
           and s.status == "active" for s in sharing.list(patient)):
        return
    sharing.create(patient, ShareRequest(
        person_id=patient.own_person_id, study_uids=None, include_future=True,
        audience=Audience.PHYSICIAN, physician=physician,
        permissions=frozenset({Permission.VIEW, Permission.DOWNLOAD, Permission.UPLOAD}),
        valid_until=date.today() + timedelta(days=DEFAULT_DAYS)))
