"""Keep it for life (issue 12): a patient signs up, or a signed-in patient keeps a record,
with the hospital's paper in hand: a cloud film link or a printed claim code.

Why the birth date: the film (or code) is what the patient *has*; the record's
PatientBirthDate is what they *know*. Both together link the hospital record to their
folder, with no desk visit. Wrong birth dates count against the film or code (5 tries,
then a 15-minute lock, `services/access/ratelimit.py` reserve-before-evaluate as for PINs); the
refusal never says what the right date is, nor whose record it is.

The film or code is the hospital's consent, so a record an operator linked to a person
without an account is taken over: at sign-up that person becomes the new account's
person; a signed-in patient's folder takes the record. A record already in another
account's folder is refused with one reason that names nobody.

A caregiver signs up with an invitation link instead (services/access/people.py
CaregiverService): the new account accepts it in the same transaction.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain.access import Principal, Role, may_act_for
from cloudfilm.domain.clock import utcnow
from cloudfilm.services.access import credentials
from cloudfilm.services.access.accounts import MIN_PASSWORD, USERNAME, phone_digits
from cloudfilm.services.access.people import (
    RECORD_HELD,
    CaregiverService,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PeopleService,
    Record,
    TooManyAttempts,
    audit_entry,
    normalise_claim_code,
    person_has_account,
    take_record,
)
from cloudfilm.services.access.ratelimit import Limit, LockedOut
from cloudfilm.services.nodules.service import NoduleService
from cloudfilm.storage.index.access_models import (
    ClaimCodeRow,
    FilmRow,
    PersonRecordRow,
    PersonRow,
    UserRow,
)
from cloudfilm.storage.index.models import PatientRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

BIRTH_DATE_TRIES = Limit(max_failures=5)  # per film or code: 5 wrong dates, then 15 minutes
CODE_TRIES = Limit(max_failures=30)  # per address: guessing claim codes without an account
EMAIL = re.compile(r"^[a-z0-9._-]+@[a-z0-9-]+(\.[a-z0-9-]+)+$")
BIRTH_FORMATS = re.compile(r"^(\d{4})[-/.]?(\d{1,2})[-/.]?(\d{1,2})$")

# Reasons a person can act on; the pages show them translated (web/signup_pages.py).
FILM_UNKNOWN = "this cloud film link is unknown, withdrawn or expired"
CODE_UNKNOWN = "this code is unknown, expired or already used"
BIRTH_WRONG = "the birth date does not match the hospital's record for this film"
BIRTH_MISSING = "the hospital's record has no birth date to check; please ask the hospital"
USERNAME_TAKEN = "this login name is taken; choose another or sign in"
NO_POSSESSION = "give the cloud film link or the claim code from the hospital"
BAD_LOGIN = "the login must be a phone number or an e-mail address"
BAD_BIRTH_DATE = "give the birth date as year-month-day, e.g. 1960-01-31"
BAD_NAME = "give your name (up to 200 characters)"


class SignupError(Invalid):
    """Invalid input, with a stable ``reason`` the pages translate."""


@dataclass(frozen=True)
class NewAccount:
    username: str
    password: str
    display_name: str


@dataclass(frozen=True)
class Possession:
    """The hospital's paper: which study it opens, and the key its birth-date tries count on."""

    study_uid: str
    method: str  # film | claim-code
    limit_key: str
    code_hash: str | None = None


@dataclass(frozen=True)
class HeldRecord:
    patient_id: str
    issuer: str
    birth_date: str


@dataclass(frozen=True)
class SignedUp:
    user_id: int
    username: str
    person_id: int | None
    role: Role
    outcome: str  # created | adopted | caregiver

    def as_dict(self) -> dict[str, Any]:
        return {"username": self.username, "person_id": self.person_id,
                "role": self.role.value, "outcome": self.outcome}


def normalise_login(text: str) -> str:
    """A phone number (digits; spaces, hyphens, brackets and a leading + dropped) or an
    e-mail address, as the account's user name."""
    value = text.strip().lower()
    if "@" in value:
        if not EMAIL.match(value) or len(value) > 64 or not USERNAME.match(value):
            raise SignupError(BAD_LOGIN)
        return value
    digits = phone_digits(value)
    if digits is None:
        raise SignupError(BAD_LOGIN)
    return digits


def parse_birth_date(text: str) -> str:
    """``1960-01-01``, ``1960/1/1`` or ``19600101`` → DICOM DA ``19600101`` (PS3.5 §6.2)."""
    match = BIRTH_FORMATS.match(text.strip())
    try:
        day = date(*(int(g) for g in match.groups())) if match else None
    except ValueError:
        day = None
    if day is None:
        raise SignupError(BAD_BIRTH_DATE)
    return day.strftime("%Y%m%d")


def check_account(account: NewAccount) -> NewAccount:
    if not account.display_name.strip() or len(account.display_name) > 200:
        raise SignupError(BAD_NAME)
    if len(account.password) < MIN_PASSWORD:
        raise SignupError(f"the password needs at least {MIN_PASSWORD} characters")
    return NewAccount(normalise_login(account.username), account.password,
                      account.display_name.strip())


class SignupService:
    """Accounts made with the hospital's paper, and records kept by signed-in patients."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.index = archive.index
        self.limiter = archive.rate_limiter

    # -- what the caller holds ---------------------------------------------------------

    def possession(self, film_url: str, claim_code: str, source: str,
                   link: Principal | None = None) -> Possession:
        """The film or claim code, resolved; unknown ones are refused (and audited). On the
        film's own pages, the open link session is the film (``link``)."""
        if not film_url.strip() and not claim_code.strip() and link is not None:
            held = self.film_of_link(link)
            if held is not None:
                return held
        if film_url.strip():
            return self._film(film_url.strip(), source)
        if claim_code.strip():
            return self._claim_code(claim_code, source)
        raise SignupError(NO_POSSESSION)

    def _film(self, film_url: str, source: str) -> Possession:
        from cloudfilm.services.access.films import FilmService  # issue 12, part 1 (films)

        film = FilmService(self.archive).resolve(film_url)
        if film is None:
            self._refused("film", FILM_UNKNOWN, source)
            raise NotFound(FILM_UNKNOWN)
        return Possession(film.study_uid, "film", f"film-birth:{film.id}")

    def film_of_link(self, link: Principal) -> Possession | None:
        """The film a live link session was opened from (None: not a film's link)."""
        if link.kind != "share" or link.share_grant_id is None:
            return None
        with self.index.session() as session:
            film = session.scalars(select(FilmRow).where(
                FilmRow.grant_id == link.share_grant_id)).first()
        return Possession(film.study_uid, "film", f"film-birth:{film.id}") if film else None

    def _claim_code(self, text: str, source: str) -> Possession:
        """Codes are guessable in principle: every try counts per address first."""
        self._reserve((f"claim-ip:{source}", CODE_TRIES))
        code = normalise_claim_code(text)
        study_uid = PeopleService(self.archive)._valid_code(code)
        if study_uid is None:
            self._refused("claim-code", CODE_UNKNOWN, source)
            raise NotFound(CODE_UNKNOWN)
        self.limiter.refund(f"claim-ip:{source}")
        code_hash = credentials.token_hash(code)
        return Possession(study_uid, "claim-code", f"claim-birth:{code_hash[:32]}", code_hash)

    def _reserve(self, *keys: str | tuple[str, Limit]) -> None:
        try:
            self.limiter.reserve(*keys)
        except LockedOut as exc:
            raise TooManyAttempts(str(exc)) from exc

    def verified_record(self, held: Possession, birth_date: str, source: str) -> HeldRecord:
        """The study's hospital record, once the birth date matches (tries are counted)."""
        wanted = parse_birth_date(birth_date)
        record = self._record_of(held.study_uid)
        if not record.birth_date:
            raise Forbidden(BIRTH_MISSING)
        try:
            self._reserve((held.limit_key, BIRTH_DATE_TRIES))
        except TooManyAttempts:
            self._refused(held.method, "too many wrong birth dates", source, held.study_uid)
            raise
        if record.birth_date != wanted:
            self._refused(held.method, BIRTH_WRONG, source, held.study_uid)
            raise Forbidden(BIRTH_WRONG)
        self.limiter.clear(held.limit_key)
        return record

    def _record_of(self, study_uid: str) -> HeldRecord:
        with self.index.session() as session:
            row = session.execute(
                select(PatientRow.patient_id, PatientRow.issuer, PatientRow.birth_date)
                .join(StudyRow, StudyRow.patient_pk == PatientRow.id)
                .where(StudyRow.study_uid == study_uid)).first()
        if row is None:
            raise NotFound("the study of this film is no longer in the archive")
        return HeldRecord(row.patient_id, row.issuer, row.birth_date or "")

    def _refused(self, method: str, reason: str, source: str, study_uid: str = "") -> None:
        self.archive.audit.record(audit_entry(
            Principal(kind="anonymous"), "link", outcome="failure", source=source[:64],
            study_uid=study_uid, detail={"method": method, "reason": reason}))

    # -- signing up --------------------------------------------------------------------

    def sign_up(self, account: NewAccount, film_url: str, claim_code: str, birth_date: str,
                source: str, link: Principal | None = None) -> SignedUp:
        """A patient account whose folder holds the film's (or code's) hospital record."""
        account = check_account(account)
        held = self.possession(film_url, claim_code, source, link)
        record = self.verified_record(held, birth_date, source)
        hashed = credentials.hash_password(account.password)
        with self._refusals_audited(held, source), self.index.write_session() as session:
            person_id, outcome = self._person_for(session, record, account.display_name)
            user = self._new_user(session, account, hashed, Role.PATIENT, person_id)
            if outcome != "adopted":
                take_record(session, user.id, person_id, record.patient_id, record.issuer,
                            held.method)
            self._use_code(session, held, person_id)
            session.commit()
            done = SignedUp(user.id, user.username, person_id, Role.PATIENT, outcome)
        NoduleService(self.archive).follow_record(record.patient_id, record.issuer)
        self._audit_link(done, held, record, source)
        return done

    @contextmanager
    def _refusals_audited(self, held: Possession, source: str) -> Iterator[None]:
        """A record in another account (or a taken login) is refused, and audited."""
        try:
            yield
        except (Conflict, NotFound) as exc:
            self._refused(held.method, str(exc), source, held.study_uid)
            raise

    @staticmethod
    def _person_for(session: Session, record: HeldRecord, name: str) -> tuple[int, str]:
        """The operator-made, account-less person holding the record, else a new person."""
        probe = record_holder(session, record)
        if probe is not None:
            return probe, "adopted"
        person = PersonRow(display_name=name, birth_date=record.birth_date)
        session.add(person)
        session.flush()
        return person.id, "created"

    @staticmethod
    def _new_user(session: Session, account: NewAccount, hashed: str, role: Role,
                  person_id: int | None) -> UserRow:
        user = UserRow(username=account.username, role=role.value, password_hash=hashed,
                       display_name=account.display_name, person_id=person_id, disabled=False)
        session.add(user)
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict(USERNAME_TAKEN) from exc
        return user

    @staticmethod
    def _use_code(session: Session, held: Possession, person_id: int) -> None:
        if held.code_hash is None:
            return
        used = session.execute(update(ClaimCodeRow).where(
            ClaimCodeRow.code_hash == held.code_hash, ClaimCodeRow.used_at.is_(None))
            .values(used_at=utcnow(), used_by_person_id=person_id))
        if used.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFound(CODE_UNKNOWN)

    def _audit_link(self, done: SignedUp, held: Possession, record: HeldRecord,
                    source: str) -> None:
        actor = Principal(kind="user", user_id=done.user_id, username=done.username,
                          role=done.role, own_person_id=done.person_id)
        self.archive.audit.record(audit_entry(
            actor, "admin", person_id=done.person_id, source=source[:64],
            detail={"event": "sign-up", "outcome": done.outcome}))
        self.archive.audit.record(audit_entry(
            actor, "link", person_id=done.person_id, source=source[:64],
            patient_ref=f"{record.issuer}/{record.patient_id}", study_uid=held.study_uid,
            detail={"method": held.method, "patient_id": record.patient_id,
                    "issuer": record.issuer, "outcome": done.outcome}))

    def sign_up_caregiver(self, account: NewAccount, invitation: str, source: str) -> SignedUp:
        """A family helper's account, made from the patient's invitation link (accepted)."""
        account = check_account(account)
        with self.index.session() as session:
            CaregiverService._open_invitation(session, invitation)  # fail before hashing
        hashed = credentials.hash_password(account.password)
        with self.index.write_session() as session:
            row = CaregiverService._open_invitation(session, invitation)
            user = self._new_user(session, account, hashed, Role.CAREGIVER, None)
            CaregiverService._bind(session, row, user.id)
            session.commit()
            done = SignedUp(user.id, user.username, None, Role.CAREGIVER, "caregiver")
            patient = row.person_id
        actor = Principal(kind="user", user_id=done.user_id, username=done.username,
                          role=Role.CAREGIVER, acting_for=frozenset({patient}))
        for event in ("sign-up", "caregiver-accept"):
            self.archive.audit.record(audit_entry(
                actor, "admin", person_id=patient, source=source[:64],
                detail={"event": event, "caregiver": done.username}))
        return done

    # -- signed in ---------------------------------------------------------------------

    def keep(self, principal: Principal, film_url: str, claim_code: str, birth_date: str,
             source: str, person_id: int | None = None) -> Record:
        """One confirmation with the birth date: the record joins the caller's folder (or the
        folder of the patient they care for)."""
        person_id = person_id if person_id is not None else principal.own_person_id
        if principal.kind != "user" or person_id is None or not may_act_for(principal, person_id):
            raise Forbidden("only a patient (or their family helper) can keep a record")
        held = self.possession(film_url, claim_code, source)
        record = self.verified_record(held, birth_date, source)
        with self._refusals_audited(held, source), self.index.write_session() as session:
            outcome = take_record(session, principal.user_id, person_id, record.patient_id,
                                  record.issuer, held.method)
            self._use_code(session, held, person_id)
            session.commit()
        if outcome != "already":
            NoduleService(self.archive).follow_record(record.patient_id, record.issuer)
            self.archive.audit.record(audit_entry(
                principal, "link", person_id=person_id, source=source[:64],
                patient_ref=f"{record.issuer}/{record.patient_id}", study_uid=held.study_uid,
                detail={"method": held.method, "patient_id": record.patient_id,
                        "issuer": record.issuer, "outcome": outcome}))
        return PeopleService(self.archive)._one_record(person_id, record.patient_id,
                                                       record.issuer)


def record_holder(session: Session, record: HeldRecord) -> int | None:
    """The account-less person holding ``record`` (they become the new account's person);
    None when nobody holds it; Conflict when another account does."""
    holder = session.scalars(select(PersonRecordRow.person_id).where(
        PersonRecordRow.patient_id == record.patient_id,
        PersonRecordRow.issuer == record.issuer).with_for_update()).first()
    if holder is None:
        return None
    if person_has_account(session, holder):
        raise Conflict(RECORD_HELD)
    return holder
