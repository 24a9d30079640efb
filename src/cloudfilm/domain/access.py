"""The access policy: one function decides every read and write from grants.

Access is data, as in KHEOPS' capability tokens: a Grant gives an audience
(a link, a link plus PIN, or a named physician) a scope (some studies, or a
person's whole timeline, optionally including future studies) with permissions
(view, download, upload: see `Permission`) and a validity window. A patient's own
access and a caregiver's access on their behalf never expire. Everything here is pure: the
callers (DICOMweb, DIMSE, JSON API, pages) load the rows and ask.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Role(StrEnum):
    PATIENT = "patient"
    CAREGIVER = "caregiver"
    PHYSICIAN = "physician"
    OPERATOR = "operator"
    ADMIN = "admin"
    # A researcher (issue 15): sees no identified data at all (no grant, no folder, no
    # study); may only make and read their own de-identified research exports.
    RESEARCHER = "researcher"
    # An AI service's account (issue 15): sees nothing; may only STOW result SR/SEG for
    # series sent to its node (services/ai/admission.py).
    AI_SERVICE = "ai-service"


class Permission(StrEnum):
    """What a grant allows (KHEOPS' read / download / write flags).

    VIEW: see the images and their metadata (frames, renderings, thumbnails, DICOM JSON).
    DOWNLOAD: take the original Part-10 objects away (WADO-RS and WADO-URI
    application/dicom at every level, exports). UPLOAD: write into the patient's record:
    new images, documents, measurements and their reports (SR), by any route.
    """

    VIEW = "view"
    DOWNLOAD = "download"
    UPLOAD = "upload"


class Audience(StrEnum):
    LINK = "link"
    LINK_PIN = "link+pin"
    PHYSICIAN = "physician"


@dataclass(frozen=True)
class Grant:
    """A grant as the policy sees it (storage builds it from a GrantRow)."""

    id: int
    person_id: int
    study_uids: frozenset[str] | None  # None: the person's whole timeline
    include_future: bool
    audience: Audience
    permissions: frozenset[Permission]
    created_at: datetime
    valid_from: datetime
    valid_until: date | None = None
    revoked_at: datetime | None = None
    physician_user_id: int | None = None

    def active(self, now: datetime) -> bool:
        """Revocation takes effect at once; ``valid_until`` is inclusive (the whole day)."""
        if self.revoked_at is not None or now < self.valid_from:
            return False
        return self.valid_until is None or now.date() <= self.valid_until

    def covers(self, study: StudyRef) -> bool:
        if study.person_id != self.person_id:
            return False
        if self.study_uids is not None:
            return study.study_uid in self.study_uids
        return self.include_future or study.indexed_at <= self.created_at


@dataclass(frozen=True)
class Principal:
    """Who is asking: a user, a share-link session, a DICOM node, or nobody."""

    kind: str  # user | share | node | anonymous
    user_id: int | None = None
    username: str = ""
    role: Role | None = None
    own_person_id: int | None = None
    acting_for: frozenset[int] = field(default_factory=frozenset)
    share_grant_id: int | None = None
    node_sees_all: bool = False
    node_issuers: frozenset[str] = frozenset()  # a node sees studies of these hospitals

    @property
    def unrestricted(self) -> bool:
        return self.role in (Role.ADMIN, Role.OPERATOR) or (self.kind == "node" and self.node_sees_all)


ANONYMOUS = Principal(kind="anonymous")


@dataclass(frozen=True)
class StudyRef:
    """A study as the policy sees it: whose it is (if linked to a person) and when it arrived."""

    study_uid: str
    person_id: int | None
    indexed_at: datetime
    issuer: str = ""  # the IssuerOfPatientID of the study's patient record


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str
    grant_id: int | None = None
    on_behalf_of: int | None = None
    person_id: int | None = None  # whose study it is (for the audit), when linked


def _own(principal: Principal, person_id: int | None) -> Decision | None:
    if person_id is None:
        return None
    if principal.role is Role.PATIENT and principal.own_person_id == person_id:
        return Decision(True, "own data")
    if person_id in principal.acting_for:
        return Decision(True, "caregiver for the patient", on_behalf_of=person_id)
    return None


def _granting(principal: Principal, grants: Iterable[Grant]) -> list[Grant]:
    if principal.kind == "share":
        return [g for g in grants if g.id == principal.share_grant_id]
    if principal.role is Role.PHYSICIAN:
        return [g for g in grants
                if g.audience is Audience.PHYSICIAN and g.physician_user_id == principal.user_id]
    return []


def decide(principal: Principal, permission: Permission, study: StudyRef,
           grants: Iterable[Grant], now: datetime) -> Decision:
    """May ``principal`` exercise ``permission`` on ``study``? The only place that decides."""
    if principal.kind == "anonymous":
        return Decision(False, "not authenticated")
    if principal.unrestricted:
        return Decision(True, f"{principal.role or 'node'} access")
    if principal.kind == "node":
        if study.issuer and study.issuer in principal.node_issuers \
                and permission is not Permission.UPLOAD:
            return Decision(True, "a study of the node's own hospital")
        return Decision(False, "the node's configuration does not cover this study")
    own = _own(principal, study.person_id)
    if own is not None:
        return own
    for grant in _granting(principal, grants):
        if grant.active(now) and grant.covers(study) and permission in grant.permissions:
            return Decision(True, "granted", grant_id=grant.id)
    return Decision(False, "no grant covers this study")


def may_act_for(principal: Principal, person_id: int) -> bool:
    """Managing a person's folder (shares, caregivers, uploads): the patient or their caregiver."""
    return _own(principal, person_id) is not None or principal.role is Role.ADMIN


def may_export_research(principal: Principal) -> bool:
    """Making a de-identified research export (PS3.15 Annex E): researchers and admins."""
    return principal.kind == "user" and principal.role in (Role.RESEARCHER, Role.ADMIN)


def may_read_research_export(principal: Principal, creator_user_id: int | None) -> bool:
    """Reading one: only its creator, or an admin."""
    if not may_export_research(principal):
        return False
    return principal.role is Role.ADMIN or (principal.user_id is not None
                                            and principal.user_id == creator_user_id)


def may_upload_into(principal: Principal, person_id: int, grants: Iterable[Grant],
                    now: datetime) -> bool:
    """Naming a folder to upload into: its patient or caregiver, an admin or operator, or a
    holder of an active grant with the upload permission on that person."""
    if principal.unrestricted or _own(principal, person_id) is not None:
        return True
    return any(g.person_id == person_id and Permission.UPLOAD in g.permissions
               and g.active(now) for g in _granting(principal, grants))


@dataclass(frozen=True)
class Scope:
    """What a principal may see, for filtering lists and queries (and their counts)."""

    everything: bool = False
    person_ids: frozenset[int] = frozenset()
    studies: frozenset[tuple[int, str]] = frozenset()  # (person, study): a grant is bound to its person
    timelines_until: tuple[tuple[int, datetime], ...] = ()  # (person, arrived no later than)
    issuers: frozenset[str] = frozenset()  # every study whose patient record has this issuer

    @property
    def nothing(self) -> bool:
        return not (self.everything or self.person_ids or self.studies or self.timelines_until
                    or self.issuers)


def visible_scope(principal: Principal, grants: Iterable[Grant], now: datetime,
                  permission: Permission = Permission.VIEW) -> Scope:
    """The union of everything ``decide`` would allow, as sets a query can use."""
    if principal.kind == "anonymous":
        return Scope()
    if principal.unrestricted:
        return Scope(everything=True)
    if principal.kind == "node":
        if permission is Permission.UPLOAD:
            return Scope()
        return Scope(issuers=frozenset(i for i in principal.node_issuers if i))
    persons = set(principal.acting_for)
    if principal.role is Role.PATIENT and principal.own_person_id is not None:
        persons.add(principal.own_person_id)
    studies: set[tuple[int, str]] = set()
    timelines: list[tuple[int, datetime]] = []
    for grant in _granting(principal, grants):
        if not grant.active(now) or permission not in grant.permissions:
            continue
        if grant.study_uids is not None:
            studies |= {(grant.person_id, uid) for uid in grant.study_uids}
        elif grant.include_future:
            persons.add(grant.person_id)
        else:
            timelines.append((grant.person_id, grant.created_at))
    return Scope(False, frozenset(persons), frozenset(studies), tuple(timelines))
