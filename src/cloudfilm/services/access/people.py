"""One person across hospitals: records, claim codes, suggestions, the timeline, caregivers.

Issue "People, access and sharing":
- A Person is linked to each hospital's record (IssuerOfPatientID, PatientID) by an
  operator, by the patient entering a claim code, or by an operator confirming a
  suggestion (same name, birth date and sex). A record belongs to at most one person.
  Every link and unlink is audited ("link"/"unlink").
- Claim codes: 10 characters of Crockford base32 (50 bits; O/I/L are read as 0/1/1,
  hyphens and spaces ignored), stored as SHA-256, valid 90 days, single use.
  Wrong codes count against the claimant (rate limiter key ``claim:<user id>``).
- The timeline lists every study of the person's records, newest first, always
  filtered through the policy (services/access/policy.py).
- Caregivers: invited by the patient with a single-use link that a patient or caregiver
  account accepts (never a staff account; no account name is looked up), or set up by
  an operator; the patient removes them at any time, which also withdraws every share
  the caregiver made for them, and the patient is told in-app.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from cloudfilm.domain.access import Permission, Principal, Role, may_act_for
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.domain.identity import Profile, mismatch
from cloudfilm.services.access.credentials import new_token, token_hash
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.access.ratelimit import LockedOut
from cloudfilm.services.nodules.service import NoduleService
from cloudfilm.services.notify.outbox import Message
from cloudfilm.storage.index import queries
from cloudfilm.storage.index.access_models import (
    CaregiverRow,
    ClaimCodeRow,
    FilmRow,
    GrantRow,
    PersonRecordRow,
    PersonRow,
    UserRow,
    WebSessionRow,
)
from cloudfilm.storage.index.ai_models import AiResultRow
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

CLAIM_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
CLAIM_LENGTH = 10  # 10 × 5 bits = 50 bits
CLAIM_DAYS = 90
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
SC_CLASS = "1.2.840.10008.5.1.4.1.1.7"


# -- errors every service here raises (the API maps ``status`` to HTTP) -------------------


class ServiceError(Exception):
    status = 400


class Invalid(ServiceError):
    status = 400


class Forbidden(ServiceError):
    status = 403


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class TooManyAttempts(ServiceError):
    status = 429


# -- audit helpers -----------------------------------------------------------------------


def actor_name(principal: Principal) -> str:
    if principal.username:
        return principal.username
    if principal.kind == "share":
        return f"share-link:{principal.share_grant_id}"
    return principal.kind


def on_behalf_of(principal: Principal, person_id: int | None) -> str:
    """"caregiver X for patient Y": set when the principal acts for someone else's folder."""
    if person_id is None or person_id == principal.own_person_id:
        return ""
    return f"person:{person_id}" if person_id in principal.acting_for else ""


def audit_entry(principal: Principal, action: str, *, person_id: int | None = None,
                outcome: str = "success", **extra: Any) -> AuditEntry:
    role = principal.role.value if principal.role else principal.kind
    return AuditEntry(actor=actor_name(principal), action=action, outcome=outcome,
                      actor_role=role, on_behalf_of=on_behalf_of(principal, person_id),
                      person_id=person_id, **extra)


def require_operator(principal: Principal) -> None:
    if principal.role not in (Role.OPERATOR, Role.ADMIN):
        raise Forbidden("only operators and admins may do this")


# -- claim codes -------------------------------------------------------------------------


def new_claim_code() -> str:
    return "".join(secrets.choice(CLAIM_ALPHABET) for _ in range(CLAIM_LENGTH))


def normalise_claim_code(text: str) -> str:
    """What a person typed → the canonical code (Crockford: O→0, I/L→1; no separators)."""
    cleaned = "".join(text.split()).replace("-", "").upper()
    return cleaned.translate(str.maketrans("OIL", "011"))


# -- records the hospital handed over (issue 12) ------------------------------------------

RECORD_HELD = "this hospital record is already in another person's account"


def take_record(session: Session, actor_user_id: int | None, person_id: int, patient_id: str,
                issuer: str, method: str) -> str:
    """Link a record on the hospital's consent (its film or claim code): "created", "already",
    or "adopted" when an account-less person an operator made held it (the link moves).
    A record in another account's folder is refused (Conflict, naming nobody)."""
    existing = session.scalars(select(PersonRecordRow).where(
        PersonRecordRow.patient_id == patient_id, PersonRecordRow.issuer == issuer)
        .with_for_update()).first()
    if existing is None:
        session.add(PersonRecordRow(person_id=person_id, patient_id=patient_id, issuer=issuer,
                                    method=method, linked_by=actor_user_id))
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict(RECORD_HELD) from exc
        return "created"
    if existing.person_id == person_id:
        return "already"
    if person_has_account(session, existing.person_id):
        raise Conflict(RECORD_HELD)
    existing.person_id, existing.method, existing.linked_by = person_id, method, actor_user_id
    films = select(FilmRow.grant_id).where(FilmRow.patient_id == patient_id,
                                           FilmRow.issuer == issuer)
    session.execute(update(GrantRow).where(GrantRow.id.in_(films))
                    .values(person_id=person_id))  # the record's films keep opening
    return "adopted"


def person_has_account(session: Session, person_id: int) -> bool:
    """Does any account sign in as this person (else an operator made them at the desk)?"""
    return session.scalars(select(UserRow.id).where(UserRow.person_id == person_id)
                           ).first() is not None


# -- values ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Record:
    patient_id: str
    issuer: str
    method: str = ""
    name: str = ""
    birth_date: str = ""
    sex: str = ""
    studies: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PersonInfo:
    """A person as callers outside the service see them (never the index row)."""

    id: int
    display_name: str
    birth_date: str
    sex: str


@dataclass(frozen=True)
class Document:
    sop_uid: str
    series_uid: str
    sop_class_uid: str
    kind: str  # report | pdf | secondary-capture
    title: str
    url: str


@dataclass
class TimelineStudy:
    study_uid: str
    date: str
    time: str
    hospital: str
    modalities: list[str]
    description: str
    series: int
    instances: int
    patient_id: str
    issuer: str
    accession: str
    documents: list[Document] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _iso_date(value: str) -> str:
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:8]}"
    return value


def _iso_time(value: str) -> str:
    digits = value.split(".")[0]
    if len(digits) == 6 and digits.isdigit():
        return f"{digits[:2]}:{digits[2:4]}:{digits[4:6]}"
    return value


def _first_text(attrs: dict[str, Any], tag: str) -> str:
    values = attrs.get(tag, {}).get("Value") or [""]
    value = values[0]
    if isinstance(value, dict):  # PN: its groups as in DICOM, e.g. ZHANG^SAN=张三
        groups = [value.get(k, "") for k in ("Alphabetic", "Ideographic", "Phonetic")]
        return "=".join(groups).rstrip("=")
    return str(value)


def document_kind(sop_class: str) -> str | None:
    if sop_class.startswith(SR_PREFIX):
        return "report"
    if sop_class == PDF_CLASS:
        return "pdf"
    if sop_class == SC_CLASS or sop_class.startswith(SC_CLASS + "."):
        return "secondary-capture"
    return None


def _document_title(metadata: dict[str, Any], series_description: str) -> str:
    """DocumentTitle (PDF), the SR's concept name, else the series description."""
    title = _first_text(metadata, "00420010")
    if not title:
        concept = (metadata.get("0040A043", {}).get("Value") or [{}])[0]
        title = _first_text(concept, "00080104")
    return title or series_description


class PeopleService:
    """Persons, their hospital records, claim codes, suggestions and the timeline."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.index = archive.index
        self.policy = Policy(archive)

    # -- persons -------------------------------------------------------------------------

    def create_person(self, actor: Principal, display_name: str, birth_date: str = "",
                      sex: str = "", username: str | None = None) -> int:
        """An operator creates a person (optionally the person of a patient account)."""
        require_operator(actor)
        with self.index.write_session() as session:
            person = PersonRow(display_name=display_name, birth_date=birth_date, sex=sex)
            session.add(person)
            session.flush()
            if username:
                self._user_in(session, username).person_id = person.id
            session.commit()
            person_id = person.id
        self.archive.audit.record(audit_entry(actor, "admin", person_id=person_id,
                                              patient_ref=display_name,
                                              detail={"event": "person-create",
                                                      "user": username or ""}))
        return person_id

    @staticmethod
    def _user_in(session: Session, username: str) -> UserRow:
        user = session.scalars(select(UserRow).where(UserRow.username == username)).first()
        if user is None:
            raise NotFound(f"no user named {username!r}")
        return user

    def person(self, person_id: int) -> PersonRow:
        with self.index.session() as session:
            row = session.get(PersonRow, person_id)
        if row is None:
            raise NotFound(f"person {person_id} not found")
        return row

    def person_info(self, person_id: int) -> PersonInfo:
        """`person` as a plain value; NotFound when there is no such person."""
        row = self.person(person_id)
        return PersonInfo(row.id, row.display_name, row.birth_date, row.sex)

    def records(self, person_id: int) -> list[Record]:
        """The hospital records linked to a person, with each record's study count."""
        with self.index.session() as session:
            rows = session.execute(
                select(PersonRecordRow, PatientRow)
                .outerjoin(PatientRow, queries.record_of_patient())
                .where(PersonRecordRow.person_id == person_id)
                .order_by(PersonRecordRow.id)).all()
            return [self._record(session, rec.patient_id, rec.issuer, patient, rec.method)
                    for rec, patient in rows]

    @staticmethod
    def _record(session: Session, patient_id: str, issuer: str, patient: PatientRow | None,
                method: str = "") -> Record:
        if patient is None:  # linked ahead of its first study
            return Record(patient_id, issuer, method)
        studies = session.scalar(select(func.count(StudyRow.id))
                                 .where(StudyRow.patient_pk == patient.id)) or 0
        name = _first_text(orjson.loads(patient.attrs or "{}"), "00100010")
        return Record(patient_id, issuer, method, name, patient.birth_date, patient.sex, studies)

    # -- linking -------------------------------------------------------------------------

    def link(self, actor: Principal, person_id: int, patient_id: str, issuer: str = "",
             method: str = "operator") -> Record:
        """An operator links (IssuerOfPatientID, PatientID) to a person (``method``: operator,
        or suggestion when confirming one); audited. Idempotent for the same person."""
        require_operator(actor)
        if method not in ("operator", "suggestion"):
            raise Invalid("method must be operator or suggestion")
        if not patient_id:
            raise Invalid("patient_id is required")
        self.person(person_id)
        with self.index.write_session() as session:
            created = self._insert_link(session, actor, person_id, patient_id, issuer, method)
            session.commit()
        if not created:  # already linked to this person: nothing changed, nothing to audit
            return self._one_record(person_id, patient_id, issuer)
        NoduleService(self.archive).follow_record(patient_id, issuer)
        self.archive.audit.record(audit_entry(
            actor, "link", person_id=person_id, patient_ref=f"{issuer}/{patient_id}",
            detail={"method": method, "patient_id": patient_id, "issuer": issuer}))
        return self._one_record(person_id, patient_id, issuer)

    @staticmethod
    def _insert_link(session: Session, actor: Principal, person_id: int, patient_id: str,
                     issuer: str, method: str) -> bool:
        """Insert the link; False if this person already has the record."""
        existing = session.scalars(select(PersonRecordRow).where(
            PersonRecordRow.patient_id == patient_id, PersonRecordRow.issuer == issuer)).first()
        if existing is not None:
            if existing.person_id != person_id:
                raise Conflict("this hospital record is already linked to another person")
            return False
        session.add(PersonRecordRow(person_id=person_id, patient_id=patient_id, issuer=issuer,
                                    method=method, linked_by=actor.user_id))
        try:
            session.flush()
        except IntegrityError as exc:
            raise Conflict("this hospital record is already linked to another person") from exc
        return True

    def _one_record(self, person_id: int, patient_id: str, issuer: str) -> Record:
        for record in self.records(person_id):
            if (record.patient_id, record.issuer) == (patient_id, issuer):
                return record
        raise NotFound("record not linked")

    def unlink(self, actor: Principal, person_id: int, patient_id: str, issuer: str = "") -> None:
        """Remove a record from a person (operators only); audited."""
        require_operator(actor)
        with self.index.write_session() as session:
            row = session.scalars(select(PersonRecordRow).where(
                PersonRecordRow.person_id == person_id, PersonRecordRow.patient_id == patient_id,
                PersonRecordRow.issuer == issuer)).first()
            if row is None:
                raise NotFound("this record is not linked to this person")
            session.delete(row)
            session.commit()
        NoduleService(self.archive).follow_record(patient_id, issuer)
        self.archive.audit.record(audit_entry(
            actor, "unlink", person_id=person_id, patient_ref=f"{issuer}/{patient_id}",
            detail={"patient_id": patient_id, "issuer": issuer}))

    # -- suggestions ---------------------------------------------------------------------

    def suggestions(self, actor: Principal, person_id: int) -> list[Record]:
        """Unlinked records with the person's birth date, sex and one of their names.

        The person's names are their display name plus the names on their linked
        records; birth date and sex likewise. Confirmed by an operator with `link`.
        """
        require_operator(actor)
        with self.index.session() as session:
            profile = self.profile_in(session, person_id)
            if not profile.names or not profile.births:
                return []
            return [self._record(session, p.patient_id, p.issuer, p)
                    for p in self._unlinked_candidates(session, set(profile.births))
                    if mismatch(profile, p) is None]

    def profile_in(self, session: Session, person_id: int) -> Profile:
        """The person's names, birth dates and sexes, from them and their linked records."""
        person = session.get(PersonRow, person_id)
        if person is None:
            raise NotFound("no such person")
        linked = session.execute(
            select(PatientRow).join(PersonRecordRow, queries.record_of_patient())
            .where(PersonRecordRow.person_id == person_id)).scalars().all()
        return Profile.of(person.display_name, person.birth_date, person.sex, linked)

    @staticmethod
    def _unlinked_candidates(session: Session, births: set[str]) -> list[PatientRow]:
        record = aliased(PersonRecordRow)
        is_linked = exists(select(record.id).where(record.patient_id == PatientRow.patient_id,
                                                   record.issuer == PatientRow.issuer))
        return list(session.scalars(select(PatientRow).where(
            PatientRow.birth_date.in_(sorted(births)), ~is_linked).order_by(PatientRow.id)))

    # -- claim codes ---------------------------------------------------------------------

    def create_claim_code(self, study_uid: str, days: int = CLAIM_DAYS) -> tuple[str, datetime]:
        """A single-use code for the patient of one study; only its hash is stored."""
        with self.index.write_session() as session:
            known = session.scalars(select(StudyRow.id).where(StudyRow.study_uid == study_uid))
            if known.first() is None:
                raise NotFound(f"study {study_uid} is not in the archive")
            code, expires = new_claim_code(), utcnow() + timedelta(days=days)
            session.add(ClaimCodeRow(code_hash=token_hash(code), study_uid=study_uid,
                                     expires_at=expires))
            session.commit()
        return code, expires

    def claim(self, principal: Principal, code: str, person_id: int | None = None) -> Record:
        """The patient (or their caregiver) enters a code: the study's record joins their person."""
        person_id = person_id if person_id is not None else principal.own_person_id
        if person_id is None or not may_act_for(principal, person_id):
            raise Forbidden("only a patient (or their caregiver) can claim records")
        key = f"claim:{principal.user_id}"
        self._reserve_attempt(key)
        study_uid = self._valid_code(normalise_claim_code(code))
        if study_uid is None:
            raise NotFound("this code is unknown, expired or already used")
        self.archive.rate_limiter.clear(key)
        patient_id, issuer = self._patient_of(study_uid)
        with self.index.write_session() as session:
            take_record(session, principal.user_id, person_id, patient_id, issuer, "claim-code")
            used = session.execute(update(ClaimCodeRow).where(
                ClaimCodeRow.code_hash == token_hash(normalise_claim_code(code)),
                ClaimCodeRow.used_at.is_(None))
                .values(used_at=utcnow(), used_by_person_id=person_id))
            if used.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFound("this code is unknown, expired or already used")
            session.commit()
        NoduleService(self.archive).follow_record(patient_id, issuer)
        self.archive.audit.record(audit_entry(
            principal, "link", person_id=person_id, patient_ref=f"{issuer}/{patient_id}",
            study_uid=study_uid, detail={"method": "claim-code", "patient_id": patient_id,
                                         "issuer": issuer}))
        return self._one_record(person_id, patient_id, issuer)

    def link_uploaded(self, principal: Principal, person_id: int, patient_id: str, issuer: str,
                      study_uid: str) -> None:
        """Link a record whose images the patient (or their caregiver) uploaded into their
        folder, after `UploadAdmission` matched its demographics to the person; audited."""
        with self.index.write_session() as session:
            created = self._insert_link(session, principal, person_id, patient_id, issuer,
                                        "upload")
            session.commit()
        if created:
            NoduleService(self.archive).follow_record(patient_id, issuer)
            self.archive.audit.record(audit_entry(
                principal, "link", person_id=person_id, patient_ref=f"{issuer}/{patient_id}",
                study_uid=study_uid, detail={"method": "upload", "patient_id": patient_id,
                                             "issuer": issuer}))

    def _reserve_attempt(self, key: str) -> None:
        """Count the try before looking the code up (parallel guesses share the limit)."""
        try:
            self.archive.rate_limiter.reserve(key)
        except LockedOut as exc:
            raise TooManyAttempts(str(exc)) from exc

    def _valid_code(self, code: str) -> str | None:
        if len(code) != CLAIM_LENGTH or any(c not in CLAIM_ALPHABET for c in code):
            return None
        with self.index.session() as session:
            row = session.scalars(select(ClaimCodeRow).where(
                ClaimCodeRow.code_hash == token_hash(code))).first()
        if row is None or row.used_at is not None:
            return None
        expires = as_utc(row.expires_at)
        return row.study_uid if expires is None or expires > utcnow() else None

    def _patient_of(self, study_uid: str) -> tuple[str, str]:
        with self.index.session() as session:
            row = session.execute(select(PatientRow.patient_id, PatientRow.issuer)
                                  .join(StudyRow, StudyRow.patient_pk == PatientRow.id)
                                  .where(StudyRow.study_uid == study_uid)).first()
        if row is None:
            raise NotFound("the study of this code is no longer in the archive")
        return row.patient_id, row.issuer

    # -- timeline ------------------------------------------------------------------------

    def timeline(self, principal: Principal, person_id: int) -> list[TimelineStudy]:
        """The person's studies, newest first, only those the policy lets ``principal`` view."""
        return self.studies_of(person_id, self.policy.visible_clause(principal, Permission.VIEW))

    def studies_for(self, principal: Principal, person_id: int,
                    permission: Permission) -> list[TimelineStudy]:
        """The person's studies that the policy lets ``principal`` have ``permission`` on
        (DOWNLOAD: what a folder's download holds), newest first."""
        return self.studies_of(person_id, self.policy.visible_clause(principal, permission))

    def studies_of(self, person_id: int, visible: Any) -> list[TimelineStudy]:
        """The person's studies restricted by a ``visible`` clause (None: all of them)."""
        with self.index.session() as session:
            rows = session.execute(self._timeline_query(person_id, visible)).all()
            pks = [r.id for r in rows]
            counts = queries.study_counts(session, pks, visible)
            documents = self._documents(session, pks, visible)
        studies = []
        for row in rows:
            attrs = orjson.loads(row.attrs or "{}")
            count = counts.get(row.id, queries.StudyCounts())
            studies.append(TimelineStudy(
                row.study_uid, _iso_date(row.study_date), _iso_time(row.study_time),
                _first_text(attrs, "00080080"), list(count.modalities), row.description,
                count.series, count.instances, row.patient_id, row.issuer, row.accession_number,
                documents.get(row.id, [])))
        return studies

    @staticmethod
    def _timeline_query(person_id: int, visible: Any) -> Any:
        statement = (
            select(StudyRow.id, StudyRow.study_uid, StudyRow.study_date, StudyRow.study_time,
                   StudyRow.description, StudyRow.accession_number, StudyRow.attrs,
                   PatientRow.patient_id, PatientRow.issuer)
            .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
            .join(PersonRecordRow, queries.record_of_patient())
            .where(PersonRecordRow.person_id == person_id))
        if visible is not None:
            statement = statement.where(queries.study_has_visible_instance(visible))
        return statement.order_by(StudyRow.study_date.desc(), StudyRow.study_time.desc(),
                                  StudyRow.id.desc())

    @staticmethod
    def _documents(session: Session, study_pks: list[int],
                   visible: Any) -> dict[int, list[Document]]:
        """Reports (SR), encapsulated PDFs and secondary captures in the listed studies."""
        if not study_pks:
            return {}
        statement = (
            select(InstanceRow.sop_uid, InstanceRow.sop_class_uid, InstanceRow.metadata_json,
                   SeriesRow.series_uid, SeriesRow.study_pk, SeriesRow.description,
                   StudyRow.study_uid)
            .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
            .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
            .where(SeriesRow.study_pk.in_(study_pks), or_(
                InstanceRow.sop_class_uid.like(SR_PREFIX + "%"),
                InstanceRow.sop_class_uid == PDF_CLASS, InstanceRow.sop_class_uid == SC_CLASS,
                InstanceRow.sop_class_uid.like(SC_CLASS + ".%")),
                   # an AI service's result is no document of the folder (issue 15)
                   ~exists().where(AiResultRow.sop_uid == InstanceRow.sop_uid))
            .order_by(SeriesRow.study_pk, InstanceRow.id))
        if visible is not None:
            statement = statement.where(visible)
        found: dict[int, list[Document]] = {}
        for row in session.execute(statement):
            kind = document_kind(row.sop_class_uid) or "document"
            title = _document_title(orjson.loads(row.metadata_json or b"{}"), row.description)
            url = (f"/dicomweb/studies/{row.study_uid}/series/{row.series_uid}"
                   f"/instances/{row.sop_uid}")
            found.setdefault(row.study_pk, []).append(
                Document(row.sop_uid, row.series_uid, row.sop_class_uid, kind, title, url))
        return found


# -- caregivers --------------------------------------------------------------------------

# In-app message texts: stored in English, shown in the reader's language (the same
# ids are marked for the catalogue in web/pages.py, where messages are shown).
INVITE_DAYS = 14
CAREGIVER_ROLES = frozenset({Role.PATIENT, Role.CAREGIVER})  # never staff
CAREGIVER_REMOVED_SUBJECT = "A family helper was removed"
CAREGIVER_REMOVED_BODY = ("They can no longer see or share your images. The links and shares "
                          "they made for you no longer open.")


def _revoke_shares_made_by(session: Session, user_id: int, person_id: int) -> list[int]:
    """Revoke the live grants ``user_id`` created for ``person_id`` and their link sessions."""
    now = utcnow()
    grant_ids = list(session.scalars(select(GrantRow.id).where(
        GrantRow.owner_user_id == user_id, GrantRow.person_id == person_id,
        GrantRow.revoked_at.is_(None))))
    if grant_ids:
        session.execute(update(GrantRow).where(GrantRow.id.in_(grant_ids))
                        .values(revoked_at=now))
        session.execute(update(WebSessionRow).where(WebSessionRow.grant_id.in_(grant_ids),
                                                    WebSessionRow.revoked_at.is_(None))
                        .values(revoked_at=now))
    return grant_ids



@dataclass(frozen=True)
class CaregiverLink:
    invite_id: int
    person_id: int
    user_id: int | None  # None: an invitation link nobody has opened yet
    username: str
    status: str  # invited | active | removed
    person_name: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Invitation:
    """A new invitation link: the secret is shown once, only its hash is kept."""

    invite_id: int
    secret: str
    expires_at: datetime

    @property
    def path(self) -> str:
        return f"/caregivers/join/{self.secret}"


class CaregiverService:
    """Who may act for a patient: invited by the patient, accepted by the caregiver, or set up
    by an operator; the patient removes them at any time (issue: "Caregivers").

    Invitations are links (issue 11): the patient makes one and passes it on however they
    like (message, e-mail, in person); whoever opens it signed in to a patient or caregiver
    account becomes the helper. No account name is ever looked up for a patient, so
    invitations reveal nothing about who has an account, and staff accounts (physician,
    operator, admin) can never become caregivers.
    """

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.index = archive.index

    def invite(self, principal: Principal) -> Invitation:
        """The patient makes an invitation link (single use, valid for INVITE_DAYS)."""
        person_id = principal.own_person_id
        if principal.role is not Role.PATIENT or person_id is None:
            raise Forbidden("only a patient can invite their caregivers")
        secret = new_token()
        with self.index.write_session() as session:
            row = CaregiverRow(person_id=person_id, caregiver_user_id=None, status="invited",
                               invite_hash=token_hash(secret), invited_by=principal.user_id,
                               created_at=utcnow())
            session.add(row)
            session.commit()
            invitation = Invitation(row.id, secret, utcnow() + timedelta(days=INVITE_DAYS))
        self._audit(principal, person_id, "caregiver-invite", f"invitation:{row.id}")
        return invitation

    def join(self, principal: Principal, secret: str) -> CaregiverLink:
        """The signed-in user who opened an invitation link becomes the patient's caregiver."""
        with self.index.write_session() as session:
            row = self._open_invitation(session, secret)
            user = session.get(UserRow, principal.user_id) if principal.user_id else None
            if user is None or Role(user.role) not in CAREGIVER_ROLES:
                raise Forbidden("staff accounts cannot be family helpers")
            if user.person_id == row.person_id:
                raise Invalid("a patient cannot be their own caregiver")
            row = self._bind(session, row, user.id)
            session.commit()
            link = CaregiverLink(row.id, row.person_id, user.id, user.username, row.status)
        self._audit(principal, link.person_id, "caregiver-accept", principal.username)
        return link

    def invitation_person(self, secret: str) -> str:
        """The display name of whoever sent a live invitation (for the accept page)."""
        with self.index.session() as session:
            row = self._open_invitation(session, secret)
            person = session.get(PersonRow, row.person_id)
            return person.display_name if person else ""

    @staticmethod
    def _open_invitation(session: Session, secret: str) -> CaregiverRow:
        row = session.scalars(select(CaregiverRow).where(
            CaregiverRow.invite_hash == token_hash(secret))).first() if secret else None
        created = as_utc(row.created_at) if row else None
        if row is None or row.status != "invited" or row.caregiver_user_id is not None \
                or created is None or created + timedelta(days=INVITE_DAYS) <= utcnow():
            raise NotFound("this invitation is unknown, used or expired")
        return row

    @staticmethod
    def _bind(session: Session, invitation: CaregiverRow, user_id: int) -> CaregiverRow:
        """The invitation's user is now known: reuse an earlier row of the pair, if any."""
        earlier = session.scalars(select(CaregiverRow).where(
            CaregiverRow.person_id == invitation.person_id,
            CaregiverRow.caregiver_user_id == user_id)).first()
        if earlier is not None and earlier.status == "active":
            raise Conflict("you are already this patient's family helper")
        row = invitation
        if earlier is not None:
            session.delete(invitation)
            session.flush()
            row = earlier
        row.caregiver_user_id, row.status, row.invite_hash = user_id, "active", None
        row.accepted_at, row.removed_at = utcnow(), None
        return row

    def withdraw(self, principal: Principal, invite_id: int) -> None:
        """The patient withdraws an invitation link nobody has used yet."""
        with self.index.write_session() as session:
            row = session.get(CaregiverRow, invite_id)
            if row is None or row.person_id != principal.own_person_id \
                    or row.status != "invited" or principal.own_person_id is None:
                raise NotFound("no such invitation")
            row.status, row.removed_at, row.invite_hash = "removed", utcnow(), None
            session.commit()
        self._audit(principal, row.person_id, "caregiver-withdraw", f"invitation:{invite_id}")

    def add_direct(self, actor: Principal, person_id: int, username: str) -> CaregiverLink:
        """An operator sets a caregiver up directly (e.g. after checking papers at the desk)."""
        require_operator(actor)
        with self.index.session() as session:
            if session.get(PersonRow, person_id) is None:
                raise NotFound(f"person {person_id} not found")
        return self._set(person_id, username, "active", actor)

    def _set(self, person_id: int, username: str, status: str, actor: Principal) -> CaregiverLink:
        now = utcnow()
        with self.index.write_session() as session:
            user = PeopleService._user_in(session, username)
            if Role(user.role) not in CAREGIVER_ROLES:
                raise Invalid("staff accounts cannot be family helpers")
            if user.person_id == person_id:
                raise Invalid("a patient cannot be their own caregiver")
            row = session.scalars(select(CaregiverRow).where(
                CaregiverRow.person_id == person_id,
                CaregiverRow.caregiver_user_id == user.id)).first()
            if row is None:
                row = CaregiverRow(person_id=person_id, caregiver_user_id=user.id)
                session.add(row)
            elif row.status == "active":
                raise Conflict(f"{username} is already a caregiver")
            row.status, row.invited_by, row.removed_at = status, actor.user_id, None
            row.created_at = now
            row.accepted_at = now if status == "active" else None
            session.commit()
            link = CaregiverLink(row.id, person_id, user.id, user.username, status)
        self._audit(actor, person_id, f"caregiver-{'invite' if status == 'invited' else 'add'}",
                    username)
        return link

    def accept(self, principal: Principal, invite_id: int) -> CaregiverLink:
        """The invited user accepts; only they can, and only while the invitation stands."""
        with self.index.write_session() as session:
            row = session.get(CaregiverRow, invite_id)
            if row is None or row.caregiver_user_id is None \
                    or row.caregiver_user_id != principal.user_id or row.status != "invited":
                raise NotFound("no such invitation for you")
            row.status, row.accepted_at = "active", utcnow()
            session.commit()
            link = CaregiverLink(row.id, row.person_id, principal.user_id, principal.username,
                                 row.status)
        self._audit(principal, link.person_id, "caregiver-accept", principal.username)
        return link

    def remove(self, principal: Principal, user_id: int, person_id: int | None = None) -> None:
        """The patient (or an admin, naming the person) ends a caregiver's access at once.

        Removing a caregiver also withdraws every share they made for this patient (links,
        whole-timeline links, physician shares) and ends those links' open sessions, in the
        same transaction (issue 11, finding 4); the patient gets an in-app message.
        """
        person_id = principal.own_person_id if person_id is None else person_id
        if person_id is None or not (principal.own_person_id == person_id
                                     or principal.role in (Role.ADMIN, Role.OPERATOR)):
            raise Forbidden("only the patient can remove their caregivers")
        with self.index.write_session() as session:
            row = session.scalars(select(CaregiverRow).where(
                CaregiverRow.person_id == person_id, CaregiverRow.caregiver_user_id == user_id,
                CaregiverRow.status != "removed")).first()
            if row is None:
                raise NotFound("this user is not a caregiver of this patient")
            row.status, row.removed_at = "removed", utcnow()
            revoked = _revoke_shares_made_by(session, user_id, person_id)
            patients = list(session.scalars(select(UserRow.id).where(
                UserRow.person_id == person_id, UserRow.role == Role.PATIENT.value)))
            session.commit()
        self._audit(principal, person_id, "caregiver-remove", str(user_id))
        for grant_id in revoked:
            self.archive.audit.record(audit_entry(principal, "share-revoke", person_id=person_id,
                                                  detail={"share": grant_id,
                                                          "reason": "caregiver removed"}))
        for patient in patients:
            self.archive.outbox.enqueue(Message(
                channel="in-app", kind="caregiver-removed", recipient_user_id=patient,
                subject=CAREGIVER_REMOVED_SUBJECT, body=CAREGIVER_REMOVED_BODY))

    def for_person(self, person_id: int) -> list[CaregiverLink]:
        """A patient's caregivers and pending invitations (removed ones are not listed)."""
        return self._links(CaregiverRow.person_id == person_id)

    def caring_for(self, principal: Principal) -> list[CaregiverLink]:
        """The caller's own side: patients they care for, and invitations waiting for them."""
        if principal.user_id is None:
            return []
        return self._links(CaregiverRow.caregiver_user_id == principal.user_id)

    def _links(self, condition: Any) -> list[CaregiverLink]:
        with self.index.session() as session:
            rows = session.execute(
                select(CaregiverRow, UserRow.username, PersonRow.display_name)
                .outerjoin(UserRow, UserRow.id == CaregiverRow.caregiver_user_id)
                .join(PersonRow, PersonRow.id == CaregiverRow.person_id)
                .where(condition, CaregiverRow.status != "removed")
                .order_by(CaregiverRow.id)).all()
        return [CaregiverLink(r.id, r.person_id, r.caregiver_user_id, username or "", r.status,
                              name) for r, username, name in rows]

    def _audit(self, actor: Principal, person_id: int, event: str, who: str) -> None:
        self.archive.audit.record(audit_entry(actor, "admin", person_id=person_id,
                                              detail={"event": event, "caregiver": who}))
