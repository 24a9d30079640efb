"""C-MOVE and C-GET SCPs (PS3.4 C.4.2, C.4.3): select instances, then send them stored.

Selection uses the unique keys at and above the Query/Retrieve Level (PS3.4
C.4.2.2.1: PatientID, StudyInstanceUID, SeriesInstanceUID, SOPInstanceUID, each a
single value or a UID list) and runs them through the same QueryService as QIDO-RS;
the blobs come from the RetrieveService. pynetdicom runs the C-STORE sub-operations
and builds the Pending/final responses and their counts (PS3.4 C.4.2.3, C.4.3.3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import build_context
from pynetdicom.association import Association
from pynetdicom.events import Event
from pynetdicom.presentation import PresentationContext

from cloudfilm.dimse import caller
from cloudfilm.dimse.caller import restricted, visible_to
from cloudfilm.dimse.identifiers import (
    CANCELLED,
    IDENTIFIER_MISMATCH,
    PENDING,
    UNABLE_TO_PROCESS,
    VERIFICATION,
    Refused,
    all_pages,
    first_value,
    model_levels,
    query_level,
    read_identifier,
)
from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Kind, Query, QueryError, query_from_identifier
from cloudfilm.domain.nodes import Node
from cloudfilm.services.archive.retrieve import NotStored, StoredInstance
from cloudfilm.services.context import Archive
from cloudfilm.storage.index.queries import Visible

log = logging.getLogger(__name__)

UNIQUE_KEYS = {Level.PATIENT: "PatientID", Level.STUDY: "StudyInstanceUID",
               Level.SERIES: "SeriesInstanceUID", Level.IMAGE: "SOPInstanceUID"}
STUDY_UID, SOP_UID = 0x0020000D, 0x00080018
MAX_CONTEXTS = 128  # PS3.8 §9.3.2.2: odd context IDs 1-255


# -- selection ---------------------------------------------------------------------------


def selection_query(event: Event, identifier: Dataset) -> Query:
    """The unique keys at and above the level, as an instance-level `Query`.

    The key of the level itself is required: an identifier without it would select
    everything above it, which no retrieve should do by accident.
    """
    level = query_level(event, identifier)
    levels = model_levels(event)
    keys = Dataset()
    for above in levels[: levels.index(level) + 1]:
        keyword = UNIQUE_KEYS[above]
        if keyword in identifier and str(identifier[keyword].value or "").strip():
            keys[keyword] = identifier[keyword]
    if UNIQUE_KEYS[level] not in keys:
        raise Refused(IDENTIFIER_MISMATCH,
                      f"{UNIQUE_KEYS[level]} is required at {level.value} level")
    try:
        query = query_from_identifier(keys, Level.IMAGE)
    except QueryError as exc:
        raise Refused(IDENTIFIER_MISMATCH, str(exc)) from exc
    if any(c.kind not in (Kind.SINGLE, Kind.LIST) for c in query.conditions):
        raise Refused(IDENTIFIER_MISMATCH, "unique keys take single values or UID lists")
    return replace(query, includefields=frozenset({STUDY_UID, SOP_UID}))


def select_instances(archive: Archive, query: Query,
                     visible: Visible = None) -> list[StoredInstance]:
    """Matching instances the caller may see, with their blobs, in study/series/instance order."""
    by_study: dict[str, set[str]] = {}
    for item in all_pages(restricted(archive.query.search_instances, visible), query):
        by_study.setdefault(first_value(item, f"{STUDY_UID:08X}"), set()).add(
            first_value(item, f"{SOP_UID:08X}"))
    selected: list[StoredInstance] = []
    for study, sops in by_study.items():
        try:
            selected += [i for i in archive.retrieve.instances(study) if i.sop_uid in sops]
        except NotStored:  # deleted since the search: nothing to send
            continue
    return selected


def _selection(event: Event, archive: Archive) -> list[StoredInstance]:
    query = selection_query(event, read_identifier(event))
    try:
        selected = select_instances(archive, query, visible_to(event, archive))
        caller.audit(event, archive, "download", sorted({i.study_uid for i in selected}),
                     operation="C-MOVE" if event.event.name == "EVT_C_MOVE" else "C-GET",
                     destination=getattr(event, "move_destination", "") or "")
        return selected
    except Exception as exc:  # e.g. the database is down: a reason, not a traceback
        log.exception("retrieve selection failed")
        raise Refused(UNABLE_TO_PROCESS, f"selection failed: {exc}") from exc


# -- sending -----------------------------------------------------------------------------


def load(archive: Archive, instance: StoredInstance) -> Dataset:
    """The stored file; an unreadable one becomes a stub that fails its sub-operation.

    The stub has the UIDs but no file meta, so pynetdicom's send_c_store raises, counts
    a failure and lists the SOP Instance UID as failed (PS3.4 C.4.2.1.4.2).
    """
    try:
        with archive.retrieve.open(instance) as stream:
            return pydicom.dcmread(stream)
    except Exception:
        log.exception("cannot read stored instance %s (blob %s)", instance.sop_uid,
                      instance.blob_key)
        stub = Dataset()
        stub.SOPClassUID = instance.sop_class_uid
        stub.SOPInstanceUID = instance.sop_uid
        return stub


def sub_operations(event: Event, archive: Archive, instances: list[StoredInstance],
                   prepare: Callable[[Dataset], Dataset] = lambda ds: ds) -> Iterator[Any]:
    """The count, then one Pending (status, dataset) per instance; Cancel on C-CANCEL."""
    yield len(instances)
    for instance in instances:
        if event.is_cancelled:
            yield CANCELLED, None
            return
        yield PENDING, prepare(load(archive, instance))


def destination_contexts(instances: list[StoredInstance]) -> list[PresentationContext]:
    """One context per stored (SOP class, transfer syntax): instances go as stored.

    Native ones also offer the little-endian syntaxes pynetdicom converts to.
    """
    contexts = []
    for sop_class, ts in dict.fromkeys((i.sop_class_uid, i.transfer_syntax_uid) for i in instances):
        syntaxes = [ts] if UID(ts).is_compressed else list(
            dict.fromkeys([ts, ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
        contexts.append(build_context(sop_class, syntaxes))
    if len(contexts) > MAX_CONTEXTS:
        log.warning("C-MOVE needs %d presentation contexts; proposing the first %d",
                    len(contexts), MAX_CONTEXTS)
    return contexts[:MAX_CONTEXTS] or [build_context(VERIFICATION)]


def _destination(archive: Archive, ae_title: str) -> Node | None:
    nodes = archive.nodes.by_ae_title(ae_title) if ae_title.strip() else []
    return nodes[0] if nodes else None


def handle_move(event: Event, archive: Archive) -> Iterator[Any]:
    """EVT_C_MOVE (PS3.4 C.4.2.3.1): a known destination, then the sub-operations.

    pynetdicom wants the destination first, so a refused identifier is reported as the
    single sub-operation's failure status; an unknown destination gets 0xA801.
    """
    destination = _destination(archive, event.move_destination or "")
    refused: Refused | None = None
    instances: list[StoredInstance] = []
    try:
        instances = _selection(event, archive)
    except Refused as exc:
        refused = exc
    if destination is None:
        log.warning("C-MOVE to unknown destination %r refused", event.move_destination)
        yield None, None  # pynetdicom answers 0xA801, Move Destination unknown
        return
    yield destination.host, destination.port, {"contexts": destination_contexts(instances)}
    if refused is not None:
        yield 1
        yield refused.as_status(), None
        return
    log.info("C-MOVE of %d instance(s) to %s", len(instances), destination.ae_title)
    yield from sub_operations(event, archive, instances)


def _accepts(assoc: Association, sop_class: str, ts: str) -> bool:
    return any(cx.abstract_syntax == sop_class and cx.as_scu and cx.transfer_syntax[0] == ts
               for cx in assoc.accepted_contexts)


def _accepts_native(assoc: Association, sop_class: str) -> bool:
    return any(cx.abstract_syntax == sop_class and cx.as_scu
               and not UID(cx.transfer_syntax[0]).is_compressed
               for cx in assoc.accepted_contexts)


def fit_to_association(ds: Dataset, assoc: Association) -> Dataset:
    """C-GET: decompress an instance the requestor took only uncompressed.

    The SOP Instance UID stays: a transfer syntax change is not a new instance.
    """
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(getattr(meta, "TransferSyntaxUID", "") or ""))
    sop_class = str(ds.get("SOPClassUID", ""))
    if not ts or not ts.is_compressed or _accepts(assoc, sop_class, ts):
        return ds
    if _accepts_native(assoc, sop_class):
        try:
            ds.decompress(generate_instance_uid=False)
        except Exception as exc:  # noqa: BLE001 - no codec: the sub-operation fails and is counted
            log.warning("cannot decompress %s for C-GET: %s", ds.get("SOPInstanceUID"), exc)
    return ds


def handle_get(event: Event, archive: Archive) -> Iterator[Any]:
    """EVT_C_GET (PS3.4 C.4.3.3.1): C-STORE sub-operations on the same association."""
    try:
        instances = _selection(event, archive)
    except Refused as exc:
        yield 1
        yield exc.as_status(), None
        return
    log.info("C-GET of %d instance(s) by %s", len(instances), event.assoc.requestor.ae_title)
    yield from sub_operations(event, archive, instances,
                              lambda ds: fit_to_association(ds, event.assoc))
