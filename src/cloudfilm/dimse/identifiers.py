"""What C-FIND, C-MOVE and C-GET share: the information model, the level, refusals, paging."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from pydicom import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID
from pynetdicom.events import Event

from cloudfilm.domain.dataset_limits import DatasetLimits, check_dataset, inflate
from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Query
from cloudfilm.services.archive.query import SearchResult

# SOP Class UIDs (PS3.4 C.6.1.3, C.6.2.3, A.4); pynetdicom.sop_class makes its names at run time.
VERIFICATION = UID("1.2.840.10008.1.1")
PATIENT_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.1.1")
PATIENT_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.1.2")
PATIENT_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.1.3")
STUDY_ROOT_FIND = UID("1.2.840.10008.5.1.4.1.2.2.1")
STUDY_ROOT_MOVE = UID("1.2.840.10008.5.1.4.1.2.2.2")
STUDY_ROOT_GET = UID("1.2.840.10008.5.1.4.1.2.2.3")
PATIENT_ROOT = frozenset({PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET})
QUERY_RETRIEVE_MODELS = (PATIENT_ROOT_FIND, PATIENT_ROOT_MOVE, PATIENT_ROOT_GET,
                         STUDY_ROOT_FIND, STUDY_ROOT_MOVE, STUDY_ROOT_GET)
# PS3.4 C.6.1.1 (Patient Root) and C.6.2.1 (Study Root): the levels of each model.
PATIENT_ROOT_LEVELS = (Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE)
STUDY_ROOT_LEVELS = (Level.STUDY, Level.SERIES, Level.IMAGE)

IDENTIFIER_MISMATCH = 0xA900  # PS3.4 C.4.1.1.4 / C.4.2.1.5: Identifier does not match SOP Class
UNABLE_TO_PROCESS = 0xC000  # PS3.4 C.4.1.1.4: Failure, Unable to process (Cxxx)
CANCELLED = 0xFE00
# A query names a few dozen attributes; sequence matching (PS3.4 C.2.2.2.6) nests a level or two.
IDENTIFIER_LIMITS = DatasetLimits(max_depth=16, max_elements=10_000, max_inline_bytes=1 << 20,
                                  max_inflated_bytes=16 << 20)
PENDING = 0xFF00


class Refused(Exception):
    """A request answered with a failure status and an Error Comment (PS3.7 §C.4)."""

    def __init__(self, status: int, comment: str) -> None:
        super().__init__(comment)
        self.status = status
        self.comment = comment

    def as_status(self) -> Dataset:
        """Status plus Error Comment (0000,0902), an LO: at most 64 characters."""
        ds = Dataset()
        ds.Status = self.status
        ds.ErrorComment = self.comment[:64]
        return ds


def model_levels(event: Event) -> tuple[Level, ...]:
    """The levels of the request's information model, from its Affected SOP Class."""
    if getattr(event.request, "AffectedSOPClassUID", None) in PATIENT_ROOT:
        return PATIENT_ROOT_LEVELS
    return STUDY_ROOT_LEVELS


def read_identifier(event: Event) -> Dataset:
    """Decode the Identifier fully now, so a malformed one fails here with a reason."""
    raw = getattr(event.request, "Identifier", None)  # C-FIND, C-MOVE and C-GET carry one
    syntax = event.context.transfer_syntax
    return decode_identifier(raw.getvalue() if raw is not None else b"", syntax.is_implicit_VR,
                             syntax.is_little_endian, syntax.is_deflated)


def decode_identifier(raw: bytes, implicit: bool, little: bool, deflated: bool = False) -> Dataset:
    """The Identifier as a data set; its depth, size and lengths are bounded *before* pydicom
    recurses into it (domain/dataset_limits.py), and any decoding error is a Refused."""
    try:
        if deflated:
            raw, implicit, little = inflate(raw, IDENTIFIER_LIMITS.max_inflated_bytes), False, True
        check_dataset(io.BytesIO(raw), len(raw), implicit=implicit, little=little,
                      limits=IDENTIFIER_LIMITS)
        identifier = read_dataset(io.BytesIO(raw), implicit, little)
        for _ in identifier.iterall():
            pass
    except Exception as exc:  # pydicom raises many types for undecodable data
        raise Refused(UNABLE_TO_PROCESS, f"cannot decode the identifier: {exc}") from exc
    return identifier


def query_level(event: Event, identifier: Dataset) -> Level:
    """Query/Retrieve Level (0008,0052) must name a level of the model (PS3.4 C.4.1.2.1)."""
    text = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    levels = model_levels(event)
    for level in levels:
        if level.value == text:
            return level
    names = "/".join(level.value for level in levels)
    raise Refused(IDENTIFIER_MISMATCH, f"QueryRetrieveLevel {text!r} is not {names}")


def all_pages(search: Callable[[Query], SearchResult], query: Query) -> Iterator[dict[str, Any]]:
    """Every match, page after page: a DIMSE response has no limit (unlike QIDO's page)."""
    offset = 0
    while True:
        result = search(replace(query, limit=None, offset=offset))
        yield from result.items
        if not result.truncated or not result.items:
            return
        offset += len(result.items)


def first_value(item: dict[str, Any], key: str) -> str:
    """The first value of a DICOM JSON attribute, or ''."""
    values = item.get(key, {}).get("Value") or [""]
    return str(values[0])
