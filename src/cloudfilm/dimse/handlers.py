"""The pynetdicom event handlers of the DIMSE node, bound to one archive.

Each handler is thin and calls the services DICOMweb uses:

| event | handler | service |
|---|---|---|
| EVT_REQUESTED | `access.on_requested` (who calls: node + address, policy; A-ASSOCIATE-RJ) | NodeService |
| EVT_ACCEPTED | `access.on_accepted` (log), `settle_socket` (read timeout) | - |
| EVT_C_ECHO | `handle_echo` (PS3.4 A.4) | - |
| EVT_C_STORE | `handle_store_if_permitted` → `store.handle_store` (PS3.4 B.2.2) | IngestService, like STOW-RS |
| EVT_C_FIND | `find.handle_find` (PS3.4 C.4.1) | QueryService, like QIDO-RS |
| EVT_C_MOVE | `retrieve.handle_move` (PS3.4 C.4.2) | QueryService + RetrieveService |
| EVT_C_GET | `retrieve.handle_get` (PS3.4 C.4.3) | QueryService + RetrieveService |
"""

from __future__ import annotations

from typing import Any

from pydicom import Dataset
from pynetdicom import evt
from pynetdicom.events import Event

from cloudfilm.dimse import access
from cloudfilm.dimse.access import CallerPolicy
from cloudfilm.dimse.find import handle_find
from cloudfilm.dimse.retrieve import handle_get, handle_move
from cloudfilm.dimse.store import handle_store
from cloudfilm.services.context import Archive

__all__ = ["handle_echo", "handle_find", "handle_get", "handle_move", "handle_store",
           "handle_store_if_permitted", "handlers_for"]


def handle_echo(event: Event) -> int:
    """C-ECHO (PS3.4 A.4, PS3.7 §9.1.5): Success, the association is usable."""
    return 0x0000


def settle_socket(event: Event) -> None:
    """EVT_ACCEPTED: the whole A-ASSOCIATE-RQ is in, so reads may now wait as long as the
    association may idle (``network_timeout``) instead of the request timeout."""
    transport = event.assoc.dul.socket
    if transport is not None and transport.socket is not None:
        transport.socket.settimeout(event.assoc.network_timeout)


def handle_store_if_permitted(event: Event, archive: Archive) -> int | Dataset:
    """EVT_C_STORE: refused (0124H) unless the caller may store, else stored."""
    refusal = access.store_refusal(event, archive)
    return refusal if refusal is not None else handle_store(event, archive)


def handlers_for(archive: Archive, ae_title: str, policy: CallerPolicy) -> list[Any]:
    """``evt_handlers`` for `AE.start_server`: (event, handler[, extra args])."""
    return [
        (evt.EVT_REQUESTED, access.on_requested, [archive, policy]),
        (evt.EVT_ACCEPTED, access.on_accepted),
        (evt.EVT_ACCEPTED, settle_socket),
        (evt.EVT_REJECTED, access.on_rejected, [archive]),
        (evt.EVT_RELEASED, access.on_released),
        (evt.EVT_ABORTED, access.on_aborted),
        (evt.EVT_C_ECHO, handle_echo),
        (evt.EVT_C_STORE, handle_store_if_permitted, [archive]),
        (evt.EVT_C_FIND, handle_find, [archive, ae_title]),
        (evt.EVT_C_MOVE, handle_move, [archive]),
        (evt.EVT_C_GET, handle_get, [archive]),
    ]
