"""Which uploaded instances may enter whose folder: the patient check of every upload.

STOW-RS, ``/api/uploads`` and share links with the upload permission all pass their
parsed instances through `UploadAdmission` before indexing. Admins and operators (and
DICOM nodes, which store by the AE rules) are not screened. Anyone else's instance is
admitted only into a folder they may upload into (``domain.access.decide`` with
UPLOAD), and only if it is that folder's patient:

- an existing study, or a record already linked to a person, must be that person's;
- an unlinked record must match the folder person's demographics
  (``domain.identity.mismatch``: birth date, a name, sex); it is then linked to the
  person, audited as a ``link`` with method ``upload``;
- anything else fails alone with the reason (status 0124H, "Refused: Not Authorized",
  PS3.7 Annex C.4) and the rest of the batch is stored.

Every admitted study gets one ``upload`` audit record per request.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from cloudfilm.domain.access import Grant, Permission, Principal, StudyRef, decide, may_upload_into
from cloudfilm.domain.identity import Profile, mismatch
from cloudfilm.domain.instance_facts import InstanceFacts
from cloudfilm.services.ingest import IngestOutcome, PreparedInstance
from cloudfilm.services.people import PeopleService, audit_entry
from cloudfilm.services.policy import load_grants, record_owner, study_ref_in, utcnow
from cloudfilm.storage.index.access_models import GrantRow

if TYPE_CHECKING:
    from cloudfilm.services.archive import Archive

NOT_AUTHORIZED = 0x0124


class FolderRefused(PermissionError):
    """The caller may not upload into the folder they named (403 at the API)."""


def default_folder(archive: "Archive", principal: Principal) -> int | None:
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

    def __init__(self, archive: "Archive", principal: Principal, folder: int | None = None,
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
        self.to_link: dict[tuple[str, str], str] = {}

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
        patient_id, issuer = facts.patient["patient_id"], facts.patient["issuer"]
        existing = study_ref_in(session, facts.study_uid)
        owner = existing.person_id if existing else record_owner(session, patient_id, issuer)
        record = f"{issuer + '/' if issuer else ''}{patient_id}"
        if owner is None:
            if self.folder is None or profile is None:
                return (f"the patient record {record} is not linked to a patient folder; "
                        "upload into your own folder, or ask the hospital to link it")
            why = mismatch(profile, facts.patient)
            if why is not None:
                return (f"these images are of another patient ({why} from the folder's "
                        "patient); ask the hospital to link the record if they are yours")
            owner = self.folder
            self.to_link.setdefault((patient_id, issuer), facts.study_uid)
        elif self.folder is not None and owner != self.folder:
            return "these images belong to another patient's folder"
        study = replace(existing, person_id=owner) if existing else \
            StudyRef(facts.study_uid, owner, now, issuer)
        decision = decide(self.principal, Permission.UPLOAD, study, grants, now)
        return None if decision.allowed else f"not allowed to upload here: {decision.reason}"

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
            for study_uid, instances in per_study.items() for ref in [owners[study_uid]]])
