"""Audit records and their keyed hash chain (tamper evidence).

Each record's hash covers its canonical JSON *including the previous record's
hash*, so editing, removing or reordering any record breaks every hash after it.
Chain version 2 (``KEYED``) is HMAC-SHA256 under the audit key, so a person
without the key cannot recompute the chain after a rewrite; version 1 (``PLAIN``)
is the plain SHA-256 of records written before issue 11, still verified as such.
The audit key is derived from the server key (RFC 5869 HKDF-Expand, one block,
with its own label), so the raw server key is never used for two purposes.

Actions name what happened in the words of IHE ATNA / DICOM PS3.15 A.5
and map to its event IDs (110103 instances accessed, 110104 transferred, 110106
export, 110107 import, 110112 query, 110114 user authentication, 110113 security alert).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

GENESIS = "0" * 64
PLAIN, KEYED = 1, 2  # chain versions: plain SHA-256 (before issue 11), HMAC-SHA256
AUDIT_KEY_LABEL = b"cloudfilm audit chain v2"

# action -> (DICOM PS3.15 A.5 EventID code, display)
EVENT_CODES: dict[str, tuple[str, str]] = {
    "login": ("110114", "User Authentication"),
    "login-failed": ("110114", "User Authentication"),
    "logout": ("110114", "User Authentication"),
    "view": ("110103", "DICOM Instances Accessed"),
    "download": ("110106", "Export"),
    "research-export": ("110106", "Export"),  # a de-identified research export (issue 15)
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
    "access-denied": ("110113", "Security Alert"),  # a refused request (401/403)
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


def audit_key(server_key: bytes) -> bytes:
    """RFC 5869 HKDF-Expand(PRK=server key, info=label, L=32): one HMAC block."""
    return hmac.new(server_key, AUDIT_KEY_LABEL + b"\x01", hashlib.sha256).digest()


def chain_hash(entry: AuditEntry, at: datetime, prev_hash: str, *,
               key: bytes | None = None) -> str:
    """HMAC-SHA256 under ``key`` (chain version 2), else plain SHA-256 (version 1)."""
    body = canonical(entry, at, prev_hash)
    if key is None:
        return hashlib.sha256(body).hexdigest()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """"The chain had ``count`` records and the newest, ``head_id``, hashed to ``head``":
    kept outside the index (anchor file, syslog) so truncation shows."""

    count: int
    head_id: int
    head: str
    at: str

    def body(self) -> bytes:
        fields = {"count": self.count, "head_id": self.head_id, "head": self.head, "at": self.at}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("ascii")

    def mac(self, key: bytes) -> str:
        return hmac.new(key, b"checkpoint:" + self.body(), hashlib.sha256).hexdigest()

    def line(self, key: bytes) -> str:
        """One JSON line for the anchor file, signed with the audit key."""
        fields = json.loads(self.body()) | {"mac": self.mac(key)}
        return json.dumps(fields, sort_keys=True, separators=(",", ":"))

    @classmethod
    def parse(cls, line: str, key: bytes) -> Checkpoint:
        """The checkpoint in ``line``; ValueError if it is malformed or its MAC is wrong."""
        try:
            fields = json.loads(line)
            point = cls(int(fields["count"]), int(fields["head_id"]), str(fields["head"]),
                        str(fields["at"]))
            presented = str(fields["mac"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"unreadable checkpoint ({exc})") from exc
        if not hmac.compare_digest(point.mac(key), presented):
            raise ValueError("checkpoint signature does not match (forged, or another key)")
        return point
