"""Which uploaded instances may enter whose folder: the patient check of every upload.

STOW-RS, ``/api/uploads`` and share links with the upload permission all pass their
parsed instances through `UploadAdmission` before indexing. Admins and operators are
hospital sources and are not screened (DICOM callers: ``dimse/store.py``, which applies
the same rule to an AE that is no registered node). Anyone else's instance is
admitted only into a folder they may upload into (``domain.access.decide`` with
UPLOAD), and only if it is that folder's patient:

- it may add to a study or record that is already that person's;
- it may create a record the index has never seen (PatientID + IssuerOfPatientID), if
  it matches the folder person's demographics (``domain.identity.mismatch``: birth date,
  a name, sex); the record is then linked to the person, audited as a ``link`` with
  method ``upload``;
- it never joins a record or study that exists and is not theirs, linked to someone
  else or to nobody (issue 11: one STOW must not take over another patient's record).
  Such an instance fails alone with one reason that tells nothing about what is stored
  (`ingest.NOT_ADDABLE_HERE`); the hospital's claim code is the way to claim a record;
- every refusal is status 0124H ("Refused: Not Authorized", PS3.7 Annex C.4), and the
  rest of the batch is stored.

A demographic mismatch is reported before existence is looked at, so the reason is the
same whether the record exists or not. Screening runs before the index transaction; the
writer checks again inside it (`WriteRights`), and a screened upload never changes a
record's stored demographics. Every admitted study gets one ``upload`` audit record per
request, and every study with refused instances one ``upload`` failure record.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from cloudfilm.domain.access import Grant, Permission, Principal, StudyRef, decide, may_upload_into
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.clock import utcnow
from cloudfilm.domain.identity import Profile, mismatch
from cloudfilm.domain.instance_facts import InstanceFacts
from cloudfilm.services.access.people import PeopleService, actor_name, audit_entry
from cloudfilm.services.access.policy import load_grants, record_owner, study_ref_in
from cloudfilm.services.archive.ingest import (
    NOT_ADDABLE_HERE,
    NOT_AUTHORIZED,
    IngestOutcome,
    PreparedInstance,
)
from cloudfilm.storage.index.access_models import GrantRow
from cloudfilm.storage.index.writer import (
    RecordKey,
    WriteRights,
    find_patient,
    study_record,
)

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive



class FolderRefused(PermissionError):
    """The caller may not upload into the folder they named (403 at the API)."""


def default_folder(archive: Archive, principal: Principal) -> int | None:
    """Whose folder an upload goes to when the caller names none."""
    if principal.kind == "share" and principal.share_grant_id is not None:
        with archive.index.session() as session:
            row = session.get(GrantRow, principal.share_grant_id)
            return row.person_id if row is not None else None
    if principal.own_person_id is not None:
        return principal.own_person_id
    if len(principal.acting_for) == 1:
        return next(iter(principal.acting_for))
    return None


class UploadAdmission:
    """One request's screening: ``screen`` before indexing, ``settle`` after publishing."""

    def __init__(self, archive: Archive, principal: Principal, folder: int | None = None,
                 source: str = "") -> None:
        self.archive, self.principal, self.source = archive, principal, source
        self.screened = not (principal.unrestricted or principal.kind == "node")
        if folder is not None and self.screened:
            with archive.index.session() as session:
                grants = load_grants(session, principal)
            if not may_upload_into(principal, folder, grants, utcnow()):
                raise FolderRefused(f"you may not upload into the folder of person {folder}")
        self.folder = folder if folder is not None or not self.screened \
            else default_folder(archive, principal)
        self.to_link: dict[RecordKey, str] = {}
        self.joinable: set[RecordKey] = set()

    def rights(self) -> WriteRights:
        """Admins and operators are hospital sources; a screened upload adds only to its own."""
        if not self.screened:
            return WriteRights(source=actor_name(self.principal))
        return WriteRights(changes_demographics=False, joinable=frozenset(self.joinable),
                           source=actor_name(self.principal))

    def screen(self, pending: list[PreparedInstance]) -> None:
        """Set a refusal outcome on each instance that may not enter (nothing is stored yet)."""
        if not self.screened:
            return
        now = utcnow()
        with self.archive.index.session() as session:
            grants = load_grants(session, self.principal)
            profile = (PeopleService(self.archive).profile_in(session, self.folder)
                       if self.folder is not None else None)
            for item in pending:
                if item.outcome is None and item.facts is not None:
                    why = self._refusal(session, item.facts, grants, profile, now)
                    if why:
                        item.outcome = IngestOutcome(
                            "failed", item.facts.sop_instance_uid, item.facts.sop_class_uid,
                            item.facts.study_uid, item.facts.series_uid, why, NOT_AUTHORIZED)

    def _refusal(self, session: Session, facts: InstanceFacts, grants: list[Grant],
                 profile: Profile | None, now: datetime) -> str | None:
        key: RecordKey = (facts.patient["patient_id"], facts.patient["issuer"])
        study = study_ref_in(session, facts.study_uid)
        if study is not None:
            joined = study_record(session, facts.study_uid) or key
        else:
            joined = key
            known = find_patient(session, key) is not None
            owner = record_owner(session, *key)
            study = StudyRef(facts.study_uid, owner, now, key[1]) \
                if known or owner is not None else None
        if study is not None and self._is_own(study, grants, now):
            self.joinable.add(joined)
            return None
        why = self._not_the_folders_patient(facts, profile)
        if why is not None or study is not None:
            return why or NOT_ADDABLE_HERE
        return self._new_record(facts, key, grants, now)

    def _is_own(self, study: StudyRef, grants: list[Grant], now: datetime) -> bool:
        """A stored study or record is the uploader's: linked to the folder's person (or,
        without a folder, to someone they may upload for)."""
        if study.person_id is None or self.folder not in (None, study.person_id):
            return False
        return decide(self.principal, Permission.UPLOAD, study, grants, now).allowed

    def _not_the_folders_patient(self, facts: InstanceFacts,
                                 profile: Profile | None) -> str | None:
        """Why these images cannot be the folder person's; said alike whether or not the
        record is stored, so the answer tells nothing about the index."""
        if self.folder is None or profile is None:
            return ("these images are not in a patient's folder; upload them from the page "
                    "of the patient they belong to")
        why = mismatch(profile, facts.patient)
        if why is not None:
            return (f"these images are of another patient ({why} from the folder's "
                    "patient); ask the hospital to link the record if they are yours")
        return None

    def _new_record(self, facts: InstanceFacts, key: RecordKey, grants: list[Grant],
                    now: datetime) -> str | None:
        """A record never seen before, matching the folder's person: it joins the folder."""
        assert self.folder is not None
        decision = decide(self.principal, Permission.UPLOAD,
                          StudyRef(facts.study_uid, self.folder, now, key[1]), grants, now)
        if not decision.allowed:
            return f"not allowed to upload here: {decision.reason}"
        self.to_link.setdefault(key, facts.study_uid)
        return None

    def settle(self, pending: list[PreparedInstance]) -> None:
        """Link the matched records of stored instances; one ``upload`` record per study."""
        stored = [i.facts for i in pending
                  if i.facts is not None and i.outcome is not None and i.outcome.ok]
        people = PeopleService(self.archive)
        linked = {(f.patient["patient_id"], f.patient["issuer"]) for f in stored}
        for (patient_id, issuer), study_uid in self.to_link.items():
            if (patient_id, issuer) in linked and self.folder is not None:
                people.link_uploaded(self.principal, self.folder, patient_id, issuer, study_uid)
        per_study = Counter(f.study_uid for f in stored)
        with self.archive.index.session() as session:
            owners = {uid: study_ref_in(session, uid) for uid in per_study}
        self.archive.audit.record_many([audit_entry(
            self.principal, "upload", person_id=ref.person_id if ref else None,
            study_uid=study_uid, source=self.source, detail={"instances": instances})
            for study_uid, instances in per_study.items() for ref in [owners[study_uid]]]
            + self._refusals(pending))

    def _refusals(self, pending: list[PreparedInstance]) -> list[AuditEntry]:
        """One ``upload`` failure record per study whose instances were refused (0124H)."""
        refused = Counter(i.outcome.study_uid for i in pending if i.outcome is not None
                          and i.outcome.code == NOT_AUTHORIZED)
        return [audit_entry(self.principal, "upload", outcome="failure", study_uid=study_uid,
                            source=self.source, detail={"refused": instances})
                for study_uid, instances in refused.items()]
