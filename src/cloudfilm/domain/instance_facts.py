"""What ingest learns about one instance, independent of how it was read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class InvalidInstance(ValueError):
    """The file can't be stored; ``code`` is the STOW FailureReason (PS3.18 Table 10.5.3-1)."""

    def __init__(self, reason: str, code: int = 0xC000) -> None:
        super().__init__(reason)
        self.code = code


@dataclass(frozen=True)
class InstanceFacts:
    """Everything ingest records about one instance."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax_uid: str
    patient: dict[str, Any]
    study: dict[str, Any]
    series: dict[str, Any]
    instance: dict[str, Any]
    patient_attrs: dict[str, Any]
    study_attrs: dict[str, Any]
    series_attrs: dict[str, Any]
    metadata: bytes
    frames: list[list[list[int]]] | None
