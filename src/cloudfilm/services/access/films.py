"""Cloud films: a hospital hands a patient the link to one exam (issue 12, part 1).

In China the cloud film is a QR code printed on the report. Here a film is:

- a link grant (services/access/sharing.py) covering exactly one study, with view and download
  (what a CD from the desk would give), no end date unless the hospital sets one (the
  film lives as long as retention keeps the study), an optional PIN, no open cap and no
  owner notification; its secret is HMAC(server key, nonce), stored hashed, and it opens
  at ``/s/<secret>`` like every share link, so opening, PIN lock-outs, "a link never
  replaces a login" and the ``share-open`` audit of every open are the same code;
- a ``films`` row naming the hospital record (PatientID, IssuerOfPatientID) and the
  operator who issued it.

No patient account is needed. A grant belongs to a person, so when the study's record
is not linked yet, issuing the first film creates an account-less person for it (linked
with method ``operator``, as an operator would). A patient who keeps the film takes the
record over (services/access/people.py ``take_record``), and the record's film grants move with
it, so the film keeps opening. ``FilmRef.person_id`` names the person holding it now.

Without a camera, the slip's 10-character code (HMAC of the grant's nonce, stored
hashed, Crockford base32) is typed at ``/code``; each try counts against the address.

Only operators and admins issue, list and revoke films; each is audited.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cloudfilm.domain import names
from cloudfilm.domain.access import Audience, Permission, Principal
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.clock import utcnow
from cloudfilm.services.access.credentials import hash_password, new_nonce, share_secret, token_hash
from cloudfilm.services.access.people import (
    CLAIM_ALPHABET,
    Invalid,
    NotFound,
    TooManyAttempts,
    audit_entry,
    normalise_claim_code,
    require_operator,
)
from cloudfilm.services.access.policy import record_owner
from cloudfilm.services.access.ratelimit import Limit, LockedOut
from cloudfilm.services.access.sharing import (
    PIN_PATTERN,
    SECRET_PATTERN,
    SharingService,
    cutoff_now,
    grant_status,
)
from cloudfilm.services.nodules.service import NoduleService
from cloudfilm.storage.index.access_models import (
    FilmRow,
    GrantRow,
    PersonRecordRow,
    PersonRow,
    WebSessionRow,
)
from cloudfilm.storage.index.models import PatientRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

CODE_LENGTH = 10  # Crockford base32: 50 bits, typed only under a per-address limit
CODE_LIMIT = Limit(max_failures=10)  # wrong codes per address per 15 minutes
FILM_PERMISSIONS = ",".join(sorted((Permission.VIEW.value, Permission.DOWNLOAD.value)))
_SECRET_IN_URL = re.compile(r"(?:^|/)s/([A-Za-z0-9_-]{43})(?:[/?#]|$)")


@dataclass(frozen=True)
class FilmRef:
    """An open-able film as sign-up (issue 12 part 2) needs it: whose record it is."""

    id: int
    study_uid: str
    patient_id: str
    issuer: str
    grant_id: int
    person_id: int  # the person the record is linked to (account-less until adopted)


@dataclass(frozen=True)
class FilmInfo:
    """A film as the hospital desk sees it; ``path`` is ``/s/<secret>``."""

    id: int
    study_uid: str
    patient_id: str
    issuer: str
    path: str
    code: str  # the short code printed on the slip, XXXXX-XXXXX
    valid_until: str | None
    status: str  # active | expired | revoked
    has_pin: bool
    open_count: int
    issued_by: str
    created_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def film_json(base: str, info: FilmInfo) -> dict[str, Any]:
    """A film as ``POST /api/films`` and ``cloudfilm film issue`` print it: the absolute
    URL (``base`` is the server's public address) and where its QR code and slip are."""
    return {"id": info.id, "url": f"{base}{info.path}",
            "qr_png_url": f"{base}/api/films/{info.id}/qr.png",
            "slip_pdf_url": f"{base}/api/films/{info.id}/slip.pdf",
            "code": info.code, "code_url": f"{base}/code",
            "valid_until": info.valid_until, "study_uid": info.study_uid,
            "patient_id": info.patient_id, "issuer": info.issuer, "status": info.status,
            "has_pin": info.has_pin, "open_count": info.open_count,
            "issued_by": info.issued_by, "created_at": info.created_at}


@dataclass(frozen=True)
class SlipFacts:
    """What the printed slip shows about the exam (never the PIN, never the full name)."""

    hospital: str
    study_date: str
    exam: str
    valid_until: date | None
    has_pin: bool


@dataclass(frozen=True)
class StudyHit:
    """A study found at the desk by PatientID, accession number or name."""

    study_uid: str
    date: str
    description: str
    accession: str
    patient_id: str
    issuer: str
    name: str
    hospital: str


@dataclass(frozen=True)
class _Study:
    study_uid: str
    patient_id: str
    issuer: str
    name: str
    birth_date: str
    sex: str


def film_code(server_key: bytes, nonce: str) -> str:
    """The slip's short code: HMAC(server key, nonce) in Crockford base32, so the index
    keeps only its hash and a reprinted slip shows the same code."""
    digest = hmac.new(server_key, f"film-code:{nonce}".encode("ascii"), hashlib.sha256).digest()
    number = int.from_bytes(digest[:8], "big") >> (64 - 5 * CODE_LENGTH)
    return "".join(CLAIM_ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(CODE_LENGTH)))


def spaced(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


def secret_of(url_or_secret: str) -> str | None:
    """The link secret in ``https://host/s/<secret>``, ``/s/<secret>`` or the bare secret."""
    text = url_or_secret.strip()
    if SECRET_PATTERN.match(text):
        return text
    found = _SECRET_IN_URL.search(text)
    return found.group(1) if found else None


def parse_film_request(body: Any, today: date) -> tuple[str, date | None, str | None]:
    """``{"study_uid", "valid_until"?, "pin"?}`` → (uid, end date or None, PIN or None)."""
    if not isinstance(body, dict):
        raise Invalid("the body must be a JSON object")
    uid = body.get("study_uid")
    if not isinstance(uid, str) or not uid.strip() or len(uid) > 64:
        raise Invalid("study_uid must be a Study Instance UID")
    until_raw, pin = body.get("valid_until"), body.get("pin")
    until = None
    if until_raw is not None:
        try:
            until = date.fromisoformat(str(until_raw))
        except ValueError as exc:
            raise Invalid("valid_until must be a date (YYYY-MM-DD) or null") from exc
        if until < today:
            raise Invalid("valid_until is in the past")
    if pin is not None and (not isinstance(pin, str) or not PIN_PATTERN.match(pin)):
        raise Invalid("pin must be 6 to 12 digits")
    return uid.strip(), until, pin


def _person_name(attrs_json: str) -> str:
    value = (orjson.loads(attrs_json or "{}").get("00100010", {}).get("Value") or [{}])[0]
    if not isinstance(value, dict):
        return ""
    return "=".join(g for g in (value.get("Alphabetic"), value.get("Ideographic")) if g)


def _first_text(attrs_json: str, tag: str) -> str:
    value = (orjson.loads(attrs_json or "{}").get(tag, {}).get("Value") or [""])[0]
    return value if isinstance(value, str) else ""


def _iso_day(day: str | None) -> str:
    """DICOM DA (YYYYMMDD) → ISO 8601; anything else as it is."""
    text = day or ""
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


class FilmService:
    """Issue, list, revoke and resolve cloud films; the slip's facts."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.index = archive.index
        self.sharing = SharingService(archive)

    # -- issuing -------------------------------------------------------------------------

    def issue(self, principal: Principal, study_uid: str, valid_until: date | None = None,
              pin: str | None = None) -> FilmInfo:
        """A new film (a new link) for a study; earlier films of it stay as they are."""
        require_operator(principal)
        study = self._study(study_uid)
        pin_hash = hash_password(pin) if pin else None  # slow: outside the write lock
        nonce, created = new_nonce(), cutoff_now()
        with self.index.write_session() as session:
            person_id, linked = self._record_person(session, principal, study)
            grant = GrantRow(
                owner_user_id=principal.user_id, person_id=person_id,
                study_uids=json.dumps([study.study_uid]), include_future=False,
                audience=(Audience.LINK_PIN if pin else Audience.LINK).value,
                permissions=FILM_PERMISSIONS, secret_nonce=nonce,
                secret_hash=token_hash(share_secret(self.archive.server_key, nonce)), pin_hash=pin_hash,
                valid_until=valid_until, max_opens=None, notify_on_open=False, open_count=0,
                created_at=created, valid_from=created)
            session.add(grant)
            session.flush()
            code = film_code(self.archive.server_key, nonce)
            film = FilmRow(grant_id=grant.id, study_uid=study.study_uid,
                           patient_id=study.patient_id, issuer=study.issuer,
                           issued_by=principal.username, code_hash=token_hash(code),
                           created_at=created)
            session.add(film)
            session.commit()
        if linked:
            NoduleService(self.archive).follow_record(study.patient_id, study.issuer)
            self._audit_link(principal, person_id, study)
        self._audit(principal, "share-create", film, person_id,
                    valid_until=valid_until.isoformat() if valid_until else None,
                    pin=pin is not None)
        return self.info(film, grant)

    def _study(self, study_uid: str) -> _Study:
        with self.index.session() as session:
            row = session.execute(
                select(StudyRow.study_uid, PatientRow.patient_id, PatientRow.issuer,
                       PatientRow.attrs, PatientRow.birth_date, PatientRow.sex)
                .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
                .where(StudyRow.study_uid == study_uid)).first()
        if row is None:
            raise NotFound(f"study {study_uid} is not in the archive")
        return _Study(row.study_uid, row.patient_id, row.issuer or "", _person_name(row.attrs),
                      row.birth_date or "", row.sex or "")

    def _record_person(self, session: Session, principal: Principal,
                       study: _Study) -> tuple[int, bool]:
        """The person the study's record is linked to; a new account-less one if none
        (True: created here, to be audited once the transaction commits)."""
        owner = record_owner(session, study.patient_id, study.issuer)
        if owner is not None:
            return owner, False
        person = PersonRow(display_name=study.name, birth_date=study.birth_date, sex=study.sex)
        session.add(person)
        session.flush()
        session.add(PersonRecordRow(person_id=person.id, patient_id=study.patient_id,
                                    issuer=study.issuer, method="operator",
                                    linked_by=principal.user_id))
        try:
            session.flush()
        except IntegrityError:  # linked by a parallel request meanwhile: use that person
            session.rollback()
            owner = record_owner(session, study.patient_id, study.issuer)
            if owner is None:
                raise
            return owner, False
        return person.id, True

    def _audit_link(self, principal: Principal, person_id: int, study: _Study) -> None:
        self.archive.audit.record(audit_entry(
            principal, "link", person_id=person_id,
            patient_ref=f"{study.issuer}/{study.patient_id}",
            detail={"method": "operator", "patient_id": study.patient_id,
                    "issuer": study.issuer, "for": "film"}))

    # -- the desk's views ----------------------------------------------------------------

    def find_studies(self, principal: Principal, text: str, limit: int = 50) -> list[StudyHit]:
        """Studies whose PatientID or accession number is ``text``, or whose patient's name
        has a word starting with it (names.word_index), newest first."""
        require_operator(principal)
        query = text.strip()
        if not query:
            return []
        words = names.words(query)
        conditions = [PatientRow.patient_id == query, StudyRow.accession_number == query]
        if words:
            conditions.append(and_(*(PatientRow.name_words.like(f"% {word}%")
                                     for word in words[:4])))
        with self.index.session() as session:
            rows = session.execute(
                select(StudyRow.study_uid, StudyRow.study_date, StudyRow.description,
                       StudyRow.accession_number, StudyRow.attrs, PatientRow.patient_id,
                       PatientRow.issuer, PatientRow.attrs.label("patient_attrs"))
                .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
                .where(or_(*conditions))
                .order_by(StudyRow.study_date.desc(), StudyRow.id.desc()).limit(limit)).all()
        return [StudyHit(r.study_uid, _iso_day(r.study_date), r.description or "",
                         r.accession_number or "", r.patient_id, r.issuer or "",
                         _person_name(r.patient_attrs), _first_text(r.attrs, "00080080"))
                for r in rows]

    def list(self, principal: Principal, study_uid: str) -> list[FilmInfo]:
        """A study's films, newest first (operators and admins)."""
        require_operator(principal)
        with self.index.session() as session:
            rows = session.execute(
                select(FilmRow, GrantRow).join(GrantRow, GrantRow.id == FilmRow.grant_id)
                .where(FilmRow.study_uid == study_uid).order_by(FilmRow.id.desc())).all()
        return [self.info(film, grant) for film, grant in rows]

    def get(self, principal: Principal, film_id: int) -> tuple[FilmRow, GrantRow]:
        require_operator(principal)
        with self.index.session() as session:
            film = session.get(FilmRow, film_id)
            grant = session.get(GrantRow, film.grant_id) if film is not None else None
        if film is None or grant is None:
            raise NotFound(f"film {film_id} not found")
        return film, grant

    def film(self, principal: Principal, film_id: int) -> FilmInfo:
        """One film as the desk sees it (operators and admins); NotFound otherwise."""
        return self.info(*self.get(principal, film_id))

    def slip(self, principal: Principal, film_id: int) -> tuple[FilmInfo, SlipFacts]:
        """What one film's printable slip shows: the film and its study's facts."""
        film, grant = self.get(principal, film_id)
        return self.info(film, grant), self.slip_facts(film, grant)

    def info(self, film: FilmRow, grant: GrantRow) -> FilmInfo:
        created_at: datetime | None = film.created_at  # None until flushed (server default)
        created = created_at.isoformat() if created_at else ""
        code = film_code(self.archive.server_key, grant.secret_nonce or "")
        return FilmInfo(film.id, film.study_uid, film.patient_id, film.issuer,
                        self.path(grant), spaced(code),
                        grant.valid_until.isoformat() if grant.valid_until else None,
                        grant_status(grant, utcnow()), grant.pin_hash is not None,
                        grant.open_count, film.issued_by, created)

    def path(self, grant: GrantRow) -> str:
        path = self.sharing.link_path(grant)
        assert path is not None  # every film grant has a nonce
        return path

    def revoke(self, principal: Principal, film_id: int) -> None:
        """The link stops at once, for share sessions already opened with it too."""
        film, grant = self.get(principal, film_id)
        now = utcnow()
        with self.index.write_session() as session:
            session.execute(update(GrantRow).where(GrantRow.id == grant.id,
                                                   GrantRow.revoked_at.is_(None))
                            .values(revoked_at=now))
            session.execute(update(WebSessionRow).where(WebSessionRow.grant_id == grant.id,
                                                        WebSessionRow.revoked_at.is_(None))
                            .values(revoked_at=now))
            session.commit()
        self._audit(principal, "share-revoke", film, grant.person_id)

    # -- opening -------------------------------------------------------------------------

    def resolve(self, url_or_secret: str) -> FilmRef | None:
        """The film behind a URL or secret if it can be opened now; None for every bad case
        (unknown, malformed, revoked, expired, or a share link that is not a film)."""
        secret = secret_of(url_or_secret)
        grant = self.sharing.find_link(secret) if secret else None
        if grant is None:
            return None
        with self.index.session() as session:
            film = session.scalars(select(FilmRow).where(FilmRow.grant_id == grant.id)).first()
        if film is None:
            return None
        return FilmRef(film.id, film.study_uid, film.patient_id, film.issuer, grant.id,
                       grant.person_id)

    def open_code(self, typed: str, address: str) -> str | None:
        """The link path (``/s/<secret>``) of the film whose slip code was typed, if it opens
        now; None otherwise. Every try is reserved on ``film-code:<address>`` before the
        look-up (10 per 15 minutes), a hit is given back: TooManyAttempts while locked."""
        key = f"film-code:{address}"
        try:
            self.archive.rate_limiter.reserve((key, CODE_LIMIT))
        except LockedOut as exc:
            self._audit_code_refusal(address, "locked")
            raise TooManyAttempts(str(exc)) from exc
        code = normalise_claim_code(typed)
        grant = None
        if len(code) == CODE_LENGTH and all(c in CLAIM_ALPHABET for c in code):
            with self.index.session() as session:
                film = session.scalars(select(FilmRow).where(
                    FilmRow.code_hash == token_hash(code))).first()
                grant = session.get(GrantRow, film.grant_id) if film is not None else None
        if grant is None or grant_status(grant, utcnow()) != "active":
            self._audit_code_refusal(address, "no film opens with this code")
            return None
        self.archive.rate_limiter.refund(key)
        return self.path(grant)

    def _audit_code_refusal(self, address: str, reason: str) -> None:
        """A wrong or locked slip code, as a failed ``share-open`` (the code is not kept);
        at most one record per address and reason an hour, so a flood cannot grow the log."""
        self.archive.audit.record_once(AuditEntry(
            actor="anonymous", actor_role="anonymous", action="share-open", outcome="failure",
            source=address, detail={"audience": "film", "reason": reason}),
            f"film-code:{address}:{reason}")

    # -- the slip ------------------------------------------------------------------------

    def slip_facts(self, film: FilmRow, grant: GrantRow) -> SlipFacts:
        with self.index.session() as session:
            row = session.execute(
                select(StudyRow.study_date, StudyRow.description, StudyRow.attrs)
                .where(StudyRow.study_uid == film.study_uid)).first()
        if row is None:
            raise NotFound("the study of this film is no longer in the archive")
        return SlipFacts(_first_text(row.attrs, "00080080"), _iso_day(row.study_date),
                         row.description or "", grant.valid_until, grant.pin_hash is not None)

    # -- audit ---------------------------------------------------------------------------

    def _audit(self, principal: Principal, action: str, film: FilmRow, person_id: int,
               **detail: Any) -> None:
        self.archive.audit.record(audit_entry(
            principal, action, person_id=person_id, study_uid=film.study_uid,
            patient_ref=f"{film.issuer}/{film.patient_id}",
            detail={"film": film.id, "share": film.grant_id, "audience": "film", **detail}))
