"""Accounts: users, passwords, bearer tokens and web sessions, and who they make a request.

Why one service: every way in (CLI, login page, single sign-on, bearer tokens, share-link
sessions) must hash, rate-limit and audit the same way. Secrets (passwords, tokens,
session ids, CSRF tokens) are never stored or logged in clear: passwords as argon2id,
the rest as SHA-256, looked up by hash and compared in constant time.

Password tries (issue 11, "lock-outs that hold"). Each try is reserved on its keys
before the slow hash is evaluated (services/access/ratelimit.py), so parallel requests cannot
exceed a limit:
- ``login:NAME@ADDR``: 5 failures in 15 minutes lock that account *from that address*
  for 15 minutes. This is the only lock a stranger's guesses cause, and it falls on the
  stranger's own address.
- ``login-ip:ADDR``: 30 failures from one address, whatever the names, lock that address
  (guessing many accounts from one place).
- ``login-user:NAME``: from every address together, after 20 failures in a day each
  further try waits 1, 2, 4 ... up to 15 minutes. A back-off, not a lock: it bounds a
  distributed guesser to about a hundred tries a day, never shuts the account longer.
- A browser that signed in to the account before carries a signed device cookie
  (services/access/credentials.py). It is counted on its own key, ``login-device:NAME:ID``, and
  none of the above, so however many addresses guess, the owner still signs in from
  their own phone or computer at once (OWASP, "Slow Down Online Guessing Attacks with
  Device Cookies"). After 5 failures in a day on that device, each further try waits
  15 minutes, doubling up to a day: a stolen device gets only a few guesses a day.
A success clears the account-and-address (or device) key and gives back the try it
reserved on the others. Every login and failed login is audited.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Principal, Role
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.services.access import credentials
from cloudfilm.services.access.ratelimit import Limit, LockedOut, RateLimiter
from cloudfilm.services.audit.log import AuditLog
from cloudfilm.storage.index.access_models import (
    ApiTokenRow,
    CaregiverRow,
    GrantRow,
    PersonRow,
    UserRow,
    WebSessionRow,
)
from cloudfilm.storage.index.db import Index

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

__all__ = [
    "SESSION_LIFETIME",
    "AccountError",
    "AccountService",
    "LockedOut",
    "LoginFailed",
    "TokenInfo",
    "User",
    "accounts_of",
    "ensure_demo_users",
    "parse_duration",
    "principal_for_user",
]

SESSION_LIFETIME = timedelta(hours=12)  # sliding: each use moves the end
TOUCH_EVERY = timedelta(minutes=1)      # last_used_at / session expiry written at most this often
MIN_PASSWORD = 8
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class AccountError(ValueError):
    """A request the accounts service refuses, with a message a person can act on."""


class LoginFailed(Exception):
    """Wrong username or password (deliberately not saying which)."""

    def __init__(self) -> None:
        super().__init__("wrong username or password")


@dataclass(frozen=True)
class User:
    id: int
    username: str
    role: Role
    display_name: str
    email: str | None
    person_id: int | None
    oidc_subject: str | None
    disabled: bool
    has_password: bool


@dataclass(frozen=True)
class TokenInfo:
    id: int
    username: str
    label: str
    created_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class ResolvedSession:
    """A live web session: who it is, and what its CSRF token must hash to."""

    row_id: int
    principal: Principal
    csrf_hash: str


def parse_duration(text: str) -> timedelta | None:
    """``30m``, ``12h``, ``1d``, ``90d``, ``2w`` → timedelta; ``never`` → None (no expiry)."""
    if text.strip().lower() == "never":
        return None
    match = DURATION.match(text.lower())
    if not match or int(match.group(1)) == 0:
        raise AccountError(f"invalid duration {text!r}: use e.g. 30m, 12h, 1d, 90d or never")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


PHONE = re.compile(r"^\d{6,15}$")
PHONE_SEPARATORS = str.maketrans("", "", " -()")
MAINLAND_MOBILE = re.compile(r"^861\d{10}$")  # +86 and an 11-digit mobile number


def phone_digits(text: str) -> str | None:
    """A phone number as typed ("+86 138-1234-5678", "0086 13812345678", "138 1234 5678")
    as the one login it stands for ("13812345678"); None if it is not a phone number.
    Sign-up and login both use it, so the way a number is typed never locks anyone out."""
    digits = text.strip().translate(PHONE_SEPARATORS)
    digits = digits.removeprefix("+") if digits.startswith("+") else (
        digits[2:] if digits.startswith("00") else digits)
    if not PHONE.match(digits):
        return None
    return digits[2:] if MAINLAND_MOBILE.match(digits) else digits


def normalise_username(name: str) -> str:
    username = name.strip().lower()
    if not USERNAME.match(username):
        raise AccountError(f"invalid username {name!r}: use 1-64 of a-z 0-9 . _ @ - "
                           "(starting with a letter or digit)")
    return username


def _user(row: UserRow) -> User:
    return User(row.id, row.username, Role(row.role), row.display_name, row.email, row.person_id,
                row.oidc_subject, row.disabled, bool(row.password_hash))


def live_token(session: Session, token: str,
               now: datetime) -> tuple[ApiTokenRow, UserRow] | None:
    """A bearer token's row and user, when the token is known, neither revoked nor
    expired, and its user is not disabled (the one check, cached or not)."""
    row = session.scalars(select(ApiTokenRow).where(
        ApiTokenRow.token_hash == credentials.token_hash(token))).first()
    if row is None or not credentials.same_hash(row.token_hash, token):
        return None
    expires = as_utc(row.expires_at)
    if row.revoked_at is not None or (expires is not None and expires <= now):
        return None
    user = session.get(UserRow, row.user_id)
    if user is None or user.disabled:
        return None
    return row, user


def session_principal(session: Session, row: WebSessionRow) -> Principal | None:
    """A browser session's principal: its unrevoked share, or its user if not disabled
    (the one check, cached or not)."""
    if row.grant_id is not None:
        grant = session.get(GrantRow, row.grant_id)
        if grant is None or grant.revoked_at is not None:
            return None
        return Principal(kind="share", username=f"share:{grant.id}", share_grant_id=grant.id)
    user = session.get(UserRow, row.user_id) if row.user_id is not None else None
    if user is None or user.disabled:
        return None
    return principal_for_user(session, user)


def principal_for_user(session: Session, user_row: UserRow) -> Principal:
    """A user's principal: own person (patients) and the persons they actively care for."""
    acting_for = frozenset(session.scalars(
        select(CaregiverRow.person_id).where(CaregiverRow.caregiver_user_id == user_row.id,
                                             CaregiverRow.status == "active")))
    role = Role(user_row.role)
    return Principal(kind="user", user_id=user_row.id, username=user_row.username, role=role,
                     own_person_id=user_row.person_id if role is Role.PATIENT else None,
                     acting_for=acting_for)


def _token_info(row: ApiTokenRow, username: str) -> TokenInfo:
    return TokenInfo(row.id, username, row.label, as_utc(row.created_at), as_utc(row.expires_at),
                     as_utc(row.revoked_at), as_utc(row.last_used_at))


ACCOUNT_AT_ADDRESS = Limit(max_failures=5)
ADDRESS = Limit(max_failures=30)
ACCOUNT_BACKOFF = Limit(max_failures=20, window=timedelta(days=1),
                        lockout=timedelta(minutes=1), grows_to=timedelta(minutes=15))
DEVICE = Limit(max_failures=5, window=timedelta(days=1), lockout=timedelta(minutes=15),
               grows_to=timedelta(days=1))
DEVICE_COOKIE_AGE = timedelta(days=180)


@dataclass(frozen=True)
class LoginKeys:
    """The rate-limiter keys one password try is counted on (see the module docstring)."""

    own: tuple[str, Limit]  # cleared by a success
    shared: tuple[tuple[str, Limit], ...] = ()  # refunded by a success

    @classmethod
    def of(cls, username: str, source: str, device: str | None) -> LoginKeys:
        if device is not None:
            return cls((f"login-device:{username}:{device}", DEVICE))
        shared: tuple[tuple[str, Limit], ...] = ((f"login-user:{username}", ACCOUNT_BACKOFF),)
        if source:
            shared += ((f"login-ip:{source}", ADDRESS),)
        return cls((f"login:{username}@{source}", ACCOUNT_AT_ADDRESS), shared)


class AccountService:
    """Users, tokens and sessions over the index."""

    def __init__(self, index: Index, *, rate_limiter: RateLimiter | None = None,
                 audit: AuditLog | None = None, server_key: bytes | None = None) -> None:
        self.index = index
        self.rate_limiter = rate_limiter or RateLimiter(index)
        self.audit = audit or AuditLog(index)
        self.server_key = server_key  # signs device cookies; without it none is trusted

    # --- users -------------------------------------------------------------------------

    def add_user(self, username: str, role: Role | str, password: str | None = None, *,
                 display_name: str = "", email: str | None = None,
                 oidc_subject: str | None = None, person_id: int | None = None) -> User:
        """Create a user; a patient gets a Person of their own unless ``person_id`` is given."""
        name, role = normalise_username(username), Role(role)
        if password is not None and len(password) < MIN_PASSWORD:
            raise AccountError(f"password too short: use at least {MIN_PASSWORD} characters")
        hashed = credentials.hash_password(password) if password is not None else None
        with self.index.write_session() as session:
            if role is Role.PATIENT and person_id is None:
                person = PersonRow(display_name=display_name or name)
                session.add(person)
                session.flush()
                person_id = person.id
            row = UserRow(username=name, role=role.value, password_hash=hashed,
                          display_name=display_name, email=email or None,
                          oidc_subject=oidc_subject or None, person_id=person_id, disabled=False)
            session.add(row)
            try:
                session.commit()
            except IntegrityError as exc:
                raise AccountError(f"user {name!r} (or its single sign-on subject) exists") from exc
            return _user(row)

    def _user_row(self, session: Session, username: str) -> UserRow | None:
        return session.scalars(select(UserRow).where(UserRow.username == username.strip().lower())
                               ).first()

    def get_user(self, username: str) -> User | None:
        with self.index.session() as session:
            row = self._user_row(session, username)
            return _user(row) if row else None

    def list_users(self) -> list[User]:
        with self.index.session() as session:
            return [_user(r) for r in session.scalars(select(UserRow).order_by(UserRow.username))]

    def set_password(self, username: str, password: str) -> None:
        """Change a password; the user's web sessions end (they may be a thief's)."""
        if len(password) < MIN_PASSWORD:
            raise AccountError(f"password too short: use at least {MIN_PASSWORD} characters")
        hashed = credentials.hash_password(password)
        with self.index.write_session() as session:
            row = self._require(session, username)
            row.password_hash = hashed
            session.execute(update(WebSessionRow).where(
                WebSessionRow.user_id == row.id, WebSessionRow.revoked_at.is_(None))
                .values(revoked_at=utcnow()))
            session.commit()

    def _require(self, session: Session, username: str) -> UserRow:
        row = self._user_row(session, username)
        if row is None:
            raise AccountError(f"no user named {username!r} (see 'cloudfilm user list')")
        return row

    def user_by_oidc_subject(self, subject: str) -> User | None:
        with self.index.session() as session:
            row = session.scalars(select(UserRow).where(UserRow.oidc_subject == subject)).first()
            return _user(row) if row else None

    def link_oidc_subject(self, username: str, subject: str) -> User:
        """Bind a single sign-on subject to an existing account (once; never re-bound)."""
        with self.index.write_session() as session:
            row = self._require(session, username)
            if row.oidc_subject not in (None, subject):
                raise AccountError(f"user {username!r} is linked to another sign-on subject")
            row.oidc_subject = subject
            session.commit()
            return _user(row)

    # --- password login ----------------------------------------------------------------

    def _login_name(self, typed: str) -> str:
        """The user name a login box entry stands for: as typed when such a user exists,
        else the phone number it spells (``phone_digits``), so "+86 138 1234 5678" signs in
        the account made as "13812345678"."""
        name = typed.strip().lower()[:64]
        phone = phone_digits(name)
        if phone is None or phone == name:
            return name
        with self.index.session() as session:
            return name if self._user_row(session, name) is not None else phone

    def authenticate(self, username: str, password: str, source: str = "",
                     device_cookie: str = "") -> User:
        """Check a password under the limits of the module docstring; audit either way.

        Raises LockedOut when a limit refuses the try (or this very failure reached
        one) and LoginFailed otherwise; an unknown name costs the same hash as a known one.
        """
        name = self._login_name(username)
        keys = LoginKeys.of(name, source, self.trusted_device(name, device_cookie))
        try:
            counts = self.rate_limiter.reserve(keys.own, *keys.shared)
        except LockedOut:
            self._audit_login(name, None, False, source, {"method": "password", "reason": "locked"})
            raise
        with self.index.session() as session:
            row = self._user_row(session, name)
            user = _user(row) if row else None
            stored = row.password_hash if row and not row.disabled else None
        if not credentials.verify_password(stored, password):
            self._audit_login(name, user, False, source, {"method": "password"})
            key, limit = keys.own
            if counts[key] >= limit.max_failures:
                raise LockedOut(utcnow() + limit.delay(counts[key]))
            raise LoginFailed()
        assert user is not None
        self.rate_limiter.clear(keys.own[0])
        self.rate_limiter.refund(*(key for key, _ in keys.shared))
        self._audit_login(name, user, True, source, {"method": "password"})
        return user

    def trusted_device(self, username: str, cookie: str) -> str | None:
        """The id of a device that signed in to ``username`` before (a genuine cookie)."""
        if not cookie or self.server_key is None:
            return None
        return credentials.device_id(self.server_key, username, cookie,
                                     int(DEVICE_COOKIE_AGE.total_seconds()))

    def device_cookie(self, username: str) -> str | None:
        """A new device cookie for a browser that just signed in with the password."""
        if self.server_key is None:
            return None
        return credentials.device_cookie(self.server_key, username)

    def _audit_login(self, name: str, user: User | None, ok: bool, source: str,
                     detail: dict[str, str]) -> None:
        self.audit.record(AuditEntry(
            actor=name[:128], actor_role=user.role.value if user else "",
            action="login" if ok else "login-failed", outcome="success" if ok else "failure",
            source=source[:64], detail=detail))

    def record_login(self, user: User, source: str, method: str) -> None:
        """Audit a login that another mechanism (single sign-on) verified."""
        self._audit_login(user.username, user, True, source, {"method": method})

    def record_failed_login(self, actor: str, source: str, detail: dict[str, str]) -> None:
        self._audit_login(actor, None, False, source, detail)

    def record_logout(self, principal: Principal, source: str) -> None:
        self.audit.record(AuditEntry(actor=principal.username[:128] or principal.kind,
                                     actor_role=principal.role.value if principal.role else "",
                                     action="logout", source=source[:64]))

    # --- bearer tokens -----------------------------------------------------------------

    def issue_token(self, username: str, expires_in: timedelta | None = timedelta(days=90),
                    label: str = "") -> str:
        """A new bearer token for a user; only its hash is kept, so show it once."""
        token = credentials.new_token()
        with self.index.write_session() as session:
            row = self._require(session, username)
            if row.disabled:
                raise AccountError(f"user {username!r} is disabled")
            session.add(ApiTokenRow(user_id=row.id, token_hash=credentials.token_hash(token),
                                    label=label[:100],
                                    expires_at=utcnow() + expires_in if expires_in else None))
            session.commit()
        return token

    def list_tokens(self, username: str) -> list[TokenInfo]:
        with self.index.session() as session:
            user = self._require(session, username)
            rows = session.scalars(select(ApiTokenRow).where(ApiTokenRow.user_id == user.id)
                                   .order_by(ApiTokenRow.id))
            return [_token_info(r, user.username) for r in rows]

    def revoke_token(self, token_or_id: str | int) -> TokenInfo:
        """Revoke by the token itself or by its numeric id (from ``list_tokens``)."""
        with self.index.write_session() as session:
            row = self._token_row(session, token_or_id)
            if row is None:
                raise AccountError("no such token")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            user = session.get(UserRow, row.user_id)
            session.commit()
            return _token_info(row, user.username if user else "")

    def _token_row(self, session: Session, token_or_id: str | int) -> ApiTokenRow | None:
        if isinstance(token_or_id, int) or (token_or_id.isdigit() and len(token_or_id) < 19):
            return session.get(ApiTokenRow, int(token_or_id))
        row = session.scalars(select(ApiTokenRow).where(
            ApiTokenRow.token_hash == credentials.token_hash(token_or_id))).first()
        if row is None or not credentials.same_hash(row.token_hash, token_or_id):
            return None
        return row

    def principal_for_token(self, token: str) -> Principal | None:
        """The user behind a live bearer token; None for unknown, revoked or expired ones."""
        now = utcnow()
        with self.index.session() as session:
            found = live_token(session, token, now)
            if found is None:
                return None
            row, user = found
            principal = principal_for_user(session, user)
            last = as_utc(row.last_used_at)
            token_id = row.id
        if last is None or now - last >= TOUCH_EVERY:
            self._touch_token(token_id, now)
        return principal

    def _touch_token(self, token_id: int, now: datetime) -> None:
        with self.index.write_session() as session:
            session.execute(update(ApiTokenRow).where(ApiTokenRow.id == token_id)
                            .values(last_used_at=now))
            session.commit()

    # --- web sessions ------------------------------------------------------------------

    def create_session(self, user_id: int | None = None, grant_id: int | None = None,
                       acting_for_person_id: int | None = None,
                       source: str = "") -> tuple[str, str]:
        """A new browser session for a user or an opened share link: (session id, CSRF token)."""
        if user_id is None and grant_id is None:
            raise AccountError("a session needs a user or a grant")
        session_id, csrf = credentials.new_token(), credentials.new_token()
        with self.index.write_session() as session:
            session.add(WebSessionRow(
                session_hash=credentials.token_hash(session_id),
                csrf_hash=credentials.token_hash(csrf),
                user_id=user_id, grant_id=grant_id, acting_for_person_id=acting_for_person_id,
                source=source[:64], expires_at=utcnow() + SESSION_LIFETIME))
            session.commit()
        return session_id, csrf

    def resolve_session(self, session_id: str) -> ResolvedSession | None:
        """A live session's principal; each use (at most once a minute) extends it by 12 h."""
        now = utcnow()
        with self.index.session() as session:
            row = session.scalars(select(WebSessionRow).where(
                WebSessionRow.session_hash == credentials.token_hash(session_id))).first()
            if row is None or not credentials.same_hash(row.session_hash, session_id):
                return None
            expires = as_utc(row.expires_at)
            if row.revoked_at is not None or expires <= now:
                return None
            principal = session_principal(session, row)
            if principal is None:
                return None
            resolved = ResolvedSession(row.id, principal, row.csrf_hash)
        if expires - now <= SESSION_LIFETIME - TOUCH_EVERY:
            with self.index.write_session() as session:
                session.execute(update(WebSessionRow).where(WebSessionRow.id == resolved.row_id)
                                .values(expires_at=now + SESSION_LIFETIME))
                session.commit()
        return resolved

    def principal_for_session(self, session_id: str) -> Principal | None:
        resolved = self.resolve_session(session_id)
        return resolved.principal if resolved else None

    def revoke_session(self, session_id: str) -> bool:
        """End a session at once (logout); True if it was live."""
        with self.index.write_session() as session:
            result = session.execute(update(WebSessionRow).where(
                WebSessionRow.session_hash == credentials.token_hash(session_id),
                WebSessionRow.revoked_at.is_(None)).values(revoked_at=utcnow()))
            session.commit()
        return bool(getattr(result, "rowcount", 0))


def accounts_of(archive: Archive) -> AccountService:
    """The archive's account service, sharing its rate limiter and audit log."""
    existing = getattr(archive, "accounts", None)
    if isinstance(existing, AccountService):
        return existing
    service = AccountService(archive.index, rate_limiter=archive.rate_limiter, audit=archive.audit,
                             server_key=archive.server_key)
    archive.accounts = service  # type: ignore[attr-defined]  # until Archive has the field
    return service


DEMO_USERS: tuple[tuple[str, Role, str], ...] = (
    ("demo-patient", Role.PATIENT, "Demo Patient"),
    ("demo-caregiver", Role.CAREGIVER, "Demo Caregiver"),
    ("demo-physician", Role.PHYSICIAN, "Dr. Demo Physician"),
    ("demo-admin", Role.ADMIN, "Demo Administrator"),
)
DEMO_LOGINS_FILE = "demo-logins.json"


def _read_demo_passwords(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_demo_passwords(path: Path, passwords: dict[str, str]) -> None:
    """Kept beside server.key (mode 0600) so repeated ``make run`` prints the same logins."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(passwords, fh, indent=1)
    os.replace(tmp, path)


def ensure_demo_users(archive: Archive) -> list[tuple[str, Role, str]]:
    """Create (once) a demo patient, caregiver, physician and admin; return their logins.

    Passwords are random per deployment; a demo password changed since is reset.
    The caregiver actively cares for the demo patient's Person.
    """
    accounts = accounts_of(archive)
    path = archive.settings.data_dir / DEMO_LOGINS_FILE
    known = _read_demo_passwords(path)
    logins: list[tuple[str, Role, str]] = []
    for username, role, display in DEMO_USERS:
        password = known.get(username) or secrets.token_urlsafe(12)
        user = accounts.get_user(username)
        if user is None:
            accounts.add_user(username, role, password, display_name=display)
        elif not _password_works(accounts, username, password):
            accounts.set_password(username, password)
        known[username] = password
        logins.append((username, role, password))
    _write_demo_passwords(path, known)
    _ensure_demo_caregiving(archive.index)
    return logins


def _password_works(accounts: AccountService, username: str, password: str) -> bool:
    with accounts.index.session() as session:
        row = accounts._user_row(session, username)
        stored = row.password_hash if row else None
        return bool(stored) and credentials.verify_password(stored, password)


def _ensure_demo_caregiving(index: Index) -> None:
    with index.write_session() as session:
        patient = session.scalars(select(UserRow).where(UserRow.username == "demo-patient")).one()
        carer = session.scalars(select(UserRow).where(UserRow.username == "demo-caregiver")).one()
        if patient.person_id is None:
            return
        exists = session.scalars(select(CaregiverRow).where(
            CaregiverRow.person_id == patient.person_id,
            CaregiverRow.caregiver_user_id == carer.id)).first()
        if exists is None:
            session.add(CaregiverRow(person_id=patient.person_id, caregiver_user_id=carer.id,
                                     status="active", invited_by=patient.id, accepted_at=utcnow()))
            session.commit()
