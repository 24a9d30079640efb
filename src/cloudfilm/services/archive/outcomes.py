"""What ingest reports per object, and the parsed instance it carries until then.

Shared by ingest (services/archive/ingest.py), the index writes of a group commit
(services/archive/group_index.py) and the callers that turn outcomes into STOW-RS,
C-STORE and upload answers.
"""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field

from cloudfilm.domain.instance_facts import InstanceFacts
from cloudfilm.storage.blobs import StagedBlob

STORED, DUPLICATE, FAILED = "stored", "duplicate", "failed"
CONFLICT = 0xA900  # PS3.18 Table 10.5.3-1: the data set does not match what is stored
PROCESSING_FAILURE = 0x0110
OUT_OF_RESOURCES = 0xA700  # PS3.18 Table 10.5.3-1 and PS3.4 B.2.3: the blob store did not confirm
NOT_AUTHORIZED = 0x0124  # PS3.7 Annex C.4: Refused, Not Authorized
# Issue 11: one reason for every refusal that would tell an uploader whether another
# patient's record, study, series or instance is stored here.
NOT_ADDABLE_HERE = "this hospital record cannot be added here; ask the hospital for its claim code"


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one submitted object; failures carry a reason and a STOW code."""

    status: str
    sop_instance_uid: str = ""
    sop_class_uid: str = ""
    study_uid: str = ""
    series_uid: str = ""
    reason: str = ""
    code: int | None = None

    @property
    def ok(self) -> bool:
        return self.status != FAILED


@dataclass
class PreparedInstance:
    """A staged blob after parsing: facts to index, or the reason it failed."""

    staged: StagedBlob
    facts: InstanceFacts | None = None
    outcome: IngestOutcome | None = None
    publish: bool = False
    replaces: str = ""  # the key of the row this one overwrites, when it differs
    in_doubt: bool = False  # its row may or may not be committed: left staged for recover()
    # fsyncs of its staged file still running (C-STORE): the group commit waits for them
    # before its transaction commits, so they overlap the index statements
    syncing: list[Future[object]] = field(default_factory=list)


def failure(facts: InstanceFacts | None, reason: str, code: int) -> IngestOutcome:
    if facts is None:
        return IngestOutcome(FAILED, reason=reason, code=code)
    return IngestOutcome(FAILED, facts.sop_instance_uid, facts.sop_class_uid, facts.study_uid,
                         facts.series_uid, reason, code)


def success(status: str, facts: InstanceFacts) -> IngestOutcome:
    return IngestOutcome(status, facts.sop_instance_uid, facts.sop_class_uid, facts.study_uid,
                         facts.series_uid)


def not_addable_here(facts: InstanceFacts) -> IngestOutcome:
    """The uniform refusal (0124H) of an instance that would join what is not the uploader's."""
    return failure(facts, NOT_ADDABLE_HERE, NOT_AUTHORIZED)
