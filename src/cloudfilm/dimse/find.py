"""C-FIND SCP (PS3.4 C.4.1): the identifier becomes the same `Query` QIDO-RS builds.

The QueryService returns DICOM JSON holding exactly the identifier's keys (PS3.4
C.4.1.1.3.2: return keys are the keys present in the identifier), which is turned
back into a Dataset per match and sent as a Pending response.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from pydicom import Dataset
from pynetdicom.events import Event

from cloudfilm.dimse import caller
from cloudfilm.dimse.caller import restricted, visible_to
from cloudfilm.dimse.identifiers import (
    CANCELLED,
    IDENTIFIER_MISMATCH,
    PENDING,
    UNABLE_TO_PROCESS,
    Refused,
    all_pages,
    query_level,
    read_identifier,
)
from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Query, QueryError, query_from_identifier
from cloudfilm.services.archive.query import QueryService, SearchResult
from cloudfilm.services.context import Archive

log = logging.getLogger(__name__)

INSTANCE_AVAILABILITY = 0x00080056
Status = int | Dataset
FindResponse = tuple[Status, Dataset | None]


def _search(service: QueryService, level: Level) -> Callable[[Query], SearchResult]:
    return {
        Level.PATIENT: service.search_patients,
        Level.STUDY: service.search_studies,
        Level.SERIES: service.search_series,
        Level.IMAGE: service.search_instances,
    }[level]


def parse_find(event: Event) -> tuple[Dataset, Level, Query]:
    """Identifier → (identifier, level, Query); a bad key refuses with its reason."""
    identifier = read_identifier(event)
    level = query_level(event, identifier)
    try:
        query = query_from_identifier(identifier, level)
    except QueryError as exc:
        raise Refused(IDENTIFIER_MISMATCH, str(exc)) from exc
    return identifier, level, query


def response_dataset(item: dict[str, Any], requested: frozenset[int], level: Level,
                     ae_title: str) -> Dataset:
    """One match as an identifier: the requested keys, the level and where to retrieve.

    Non-ASCII values are sent as UTF-8 with Specific Character Set ISO_IR 192
    (PS3.4 C.4.1.1.3.2 and PS3.5 §6.1.2.5.3).
    """
    kept = {key: value for key, value in item.items() if int(key, 16) in requested}
    ds = Dataset.from_json(kept)
    if not orjson.dumps(kept).isascii():
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level.value
    ds.RetrieveAETitle = ae_title
    if INSTANCE_AVAILABILITY in requested and level is not Level.PATIENT:
        ds.InstanceAvailability = "ONLINE"  # every stored instance is on line (PS3.4 C.4.1.1.3.2)
    return ds


def handle_find(event: Event, archive: Archive, ae_title: str) -> Iterator[FindResponse]:
    """EVT_C_FIND: a Pending response per match; pynetdicom adds the final Success.

    A C-CANCEL-FIND ends the matches with Cancel (PS3.4 C.4.1.3.2).
    """
    try:
        identifier, level, query = parse_find(event)
    except Refused as exc:
        log.info("C-FIND refused: 0x%04X %s", exc.status, exc.comment)
        yield exc.as_status(), None
        return
    requested = frozenset(int(element.tag) for element in identifier)
    matches = 0
    try:
        search = restricted(_search(archive.query, level), visible_to(event, archive))
        for item in all_pages(search, query):
            if event.is_cancelled:
                yield CANCELLED, None
                return
            matches += 1
            yield PENDING, response_dataset(item, requested, level, ae_title)
        caller.audit(event, archive, "query", level=level.value, results=matches)
    except Exception as exc:  # the association stays usable; the reason goes to the peer
        log.exception("C-FIND at %s level failed", level.value)
        yield Refused(UNABLE_TO_PROCESS, f"query failed: {exc}").as_status(), None
