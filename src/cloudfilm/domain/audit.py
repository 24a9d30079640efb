"""Audit records and their hash chain (tamper evidence).

Each record's hash is SHA-256 over its canonical JSON *including the previous
record's hash*, so editing, removing or reordering any record breaks every hash
after it. Actions name what happened in the words of IHE ATNA / DICOM PS3.15 A.5
and map to its event IDs (110103 instances accessed, 110104 transferred, 110106
export, 110107 import, 110112 query, 110114 user authentication, 110113 security alert).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

GENESIS = "0" * 64

# action -> (DICOM PS3.15 A.5 EventID code, display)
EVENT_CODES: dict[str, tuple[str, str]] = {
    "login": ("110114", "User Authentication"),
    "login-failed": ("110114", "User Authentication"),
    "logout": ("110114", "User Authentication"),
    "view": ("110103", "DICOM Instances Accessed"),
    "download": ("110106", "Export"),
    "query": ("110112", "Query"),
    "upload": ("110107", "Import"),
    "store": ("110104", "DICOM Instances Transferred"),
    "delete": ("110103", "DICOM Instances Accessed"),
    "measure": ("110103", "DICOM Instances Accessed"),  # nodule measurements: create/update
    "share-create": ("110113", "Security Alert"),
    "share-renew": ("110113", "Security Alert"),
    "share-revoke": ("110113", "Security Alert"),
    "share-open": ("110103", "DICOM Instances Accessed"),
    "link": ("110113", "Security Alert"),
    "unlink": ("110113", "Security Alert"),
    "admin": ("110113", "Security Alert"),
}


@dataclass(frozen=True)
class AuditEntry:
    """Who, on whose behalf, did what, to which patient and study, when, from where, with what outcome."""

    actor: str
    action: str
    outcome: str = "success"  # success | failure
    actor_role: str = ""
    on_behalf_of: str = ""
    person_id: int | None = None
    patient_ref: str = ""
    study_uid: str = ""
    source: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action not in EVENT_CODES:
            raise ValueError(f"action {self.action!r} is not an audited action")
        if self.outcome not in ("success", "failure"):
            raise ValueError(f"outcome {self.outcome!r} must be success or failure")


def canonical(entry: AuditEntry, at: datetime, prev_hash: str) -> bytes:
    body = asdict(entry) | {"at": at.isoformat(), "prev_hash": prev_hash}
    return json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def chain_hash(entry: AuditEntry, at: datetime, prev_hash: str) -> str:
    return hashlib.sha256(canonical(entry, at, prev_hash)).hexdigest()
