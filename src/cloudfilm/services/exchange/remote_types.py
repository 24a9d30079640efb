"""Typed values shared by the remote use cases (find, fetch, send) and their two transports.

Kept apart from the transports so the DIMSE (pynetdicom) and DICOMweb (httpx) clients
and the command line share one vocabulary without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

VIA = ("move", "get", "dicomweb")
METHOD = {"move": "C-MOVE", "get": "C-GET", "dicomweb": "WADO-RS"}


class RemoteError(RuntimeError):
    """The remote node can't be reached or refused the request; the message says which and why."""


class RemoteUnreachable(RemoteError):
    """No usable connection (refused, timed out, rejected): retrying other instances is futile."""


@dataclass(frozen=True)
class StudyQuery:
    """Study-level matching keys (PS3.4 C.2.2.2: single value, range and wildcard matching)."""

    patient_id: str = ""
    study_date: str = ""
    modality: str = ""


@dataclass(frozen=True)
class RemoteStudy:
    """One study as the remote node describes it (PS3.4 C.6.2.1.2 study-level keys)."""

    study_uid: str
    study_date: str = ""
    patient_id: str = ""
    patient_name: str = ""
    modalities: tuple[str, ...] = ()
    description: str = ""
    number_of_instances: int | None = None


@dataclass(frozen=True)
class RemoteInstance:
    """One instance of a remote study: the unique keys a hierarchical retrieve needs."""

    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str = ""


@dataclass(frozen=True)
class LocalAE:
    """Our own DIMSE node (the running ``cloudfilm serve``): C-MOVE sends instances there."""

    ae_title: str = "CLOUDFILM"
    port: int = 11112
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class InstanceResult:
    """What happened to one instance; ``detail`` explains failures and warnings."""

    sop_uid: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    """A step of a transfer: ``done`` of ``total``; ``sop_uid`` empty when the peer only counts."""

    done: int
    total: int
    sop_uid: str = ""
    ok: bool = True
    detail: str = ""


ProgressCallback = Callable[[Progress], None]


def no_progress(_: Progress) -> None:
    """The default callback: report nothing."""


@dataclass(frozen=True)
class FetchPlan:
    """What a fetch will do: the remote study's instances minus those already stored here."""

    node: str
    study_uid: str
    via: str
    remote: tuple[RemoteInstance, ...]
    present: frozenset[str]

    @property
    def missing(self) -> list[RemoteInstance]:
        return [i for i in self.remote if i.sop_uid not in self.present]

    @property
    def already_present(self) -> int:
        return sum(1 for i in self.remote if i.sop_uid in self.present)


@dataclass
class FetchReport:
    """The outcome of a fetch; complete when every remote instance is now stored here."""

    plan: FetchPlan
    results: list[InstanceResult] = field(default_factory=list)
    still_missing: list[str] = field(default_factory=list)
    error: str = ""

    @property
    def fetched(self) -> int:
        return sum(1 for r in self.results if r.ok)

    @property
    def failures(self) -> list[InstanceResult]:
        return [r for r in self.results if not r.ok]

    @property
    def complete(self) -> bool:
        return not self.still_missing


@dataclass
class SendReport:
    """Per-instance C-STORE outcomes of a send."""

    node: str
    study_uid: str
    results: list[InstanceResult] = field(default_factory=list)

    @property
    def failures(self) -> list[InstanceResult]:
        return [r for r in self.results if not r.ok]

    @property
    def complete(self) -> bool:
        return bool(self.results) and not self.failures
