"""Who may associate, and the association log.

pynetdicom's ``AE.require_calling_aet`` is a fixed list that can't look at the peer's
address or at the node registry, so the decision is made in an ``EVT_REQUESTED``
handler instead: it runs after the A-ASSOCIATE-RQ arrives and before negotiation,
and may answer with an A-ASSOCIATE-RJ itself (pynetdicom then skips negotiation).

The log names the calling AE, its address and the outcome, never patient data.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

from pynetdicom.events import Event

from cloudfilm.services.archive import Archive

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 §9.3.4 Table 9-21.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user: calling AE not recognised
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # permanent, service user: no reason given
REJECT_TRANSIENT = (0x02, 0x01, 0x01)  # transient, service user: no reason given


class CallerPolicy(str, Enum):
    """``CLOUDFILM_DIMSE_ALLOW``: which calling AEs may associate."""

    LOOPBACK = "loopback"  # any AE from this machine; from elsewhere only known nodes
    KNOWN = "known"  # only AE titles registered as nodes, from any address
    ANY = "any"  # anyone who can reach the port

    @classmethod
    def parse(cls, value: str) -> "CallerPolicy":
        text = value.strip().lower() or cls.LOOPBACK.value
        try:
            return cls(text)
        except ValueError:
            raise ValueError(
                f"CLOUDFILM_DIMSE_ALLOW={value!r}: use loopback, known or any") from None


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``)."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host == "localhost"
    mapped = getattr(address, "ipv4_mapped", None)
    return bool(address.is_loopback or (mapped is not None and mapped.is_loopback))


def caller_allowed(policy: CallerPolicy, calling_aet: str, host: str,
                   is_known: Callable[[str], bool]) -> bool:
    """The policy decision alone, so it can be tested without a network."""
    if policy is CallerPolicy.ANY:
        return True
    if policy is CallerPolicy.LOOPBACK and is_loopback(host):
        return True
    return is_known(calling_aet)


def _reject(event: Event, rsd: tuple[int, int, int], why: str) -> None:
    """Send A-ASSOCIATE-RJ from EVT_REQUESTED, as pynetdicom's own ACSE rejection does."""
    assoc = event.assoc
    log.warning("association from %s at %s rejected: %s", _calling(event), _address(event), why)
    assoc.acse.send_reject(*rsd)
    assoc.kill()


def _calling(event: Event) -> str:
    primitive = event.assoc.requestor.primitive
    return str(getattr(primitive, "calling_ae_title", "") or "").strip()


def _address(event: Event) -> str:
    requestor = event.assoc.requestor
    return f"{requestor.address}:{requestor.port}"


def _requested_contexts(event: Event) -> list[Any]:
    primitive = event.assoc.requestor.primitive
    return list(getattr(primitive, "presentation_context_definition_list", None) or [])


def _any_supported(event: Event) -> bool:
    """Whether at least one proposed context could be accepted (abstract + transfer syntax)."""
    supported = {cx.abstract_syntax: set(cx.transfer_syntax)
                 for cx in event.assoc.acceptor.supported_contexts}
    return any(supported.get(cx.abstract_syntax, set()).intersection(cx.transfer_syntax)
               for cx in _requested_contexts(event))


def prefer_requestor_order(event: Event) -> None:
    """Accept each context's transfer syntax in the requestor's order of preference.

    pynetdicom picks the first of *our* list that the requestor offers; reordering this
    association's copy of the supported contexts makes it pick the requestor's first
    choice instead (a sender offering JPEG first keeps its JPEG, PS3.8 §9.3.2.2).
    """
    offered: dict[str, list[str]] = {}
    for cx in _requested_contexts(event):
        offered.setdefault(str(cx.abstract_syntax), [str(ts) for ts in cx.transfer_syntax])
    for cx in event.assoc.acceptor.supported_contexts:
        order = offered.get(str(cx.abstract_syntax))
        if order and len(cx.transfer_syntax) > 1:
            rank = {ts: i for i, ts in enumerate(order)}
            cx.transfer_syntax = sorted(cx.transfer_syntax,
                                        key=lambda ts: rank.get(str(ts), len(rank)))


def on_requested(event: Event, archive: Archive, policy: CallerPolicy) -> None:
    """EVT_REQUESTED: reject disallowed callers and hopeless proposals, else tune the order.

    An association whose every proposed context would be rejected is refused outright
    (as dcmtk's SCPs do) rather than accepted with nothing usable. A registry lookup
    that fails rejects transiently: an error never lets a caller in.
    """
    calling, host = _calling(event), str(event.assoc.requestor.address)
    try:
        allowed = caller_allowed(policy, calling, host,
                                 lambda aet: bool(archive.nodes.by_ae_title(aet)))
    except Exception:
        log.exception("could not check calling AE %s against the node registry", calling)
        _reject(event, REJECT_TRANSIENT, "node registry unavailable")
        return
    if not allowed:
        _reject(event, REJECT_CALLING_AE, f"calling AE not allowed (policy {policy.value})")
        return
    if not _any_supported(event):
        _reject(event, REJECT_NO_REASON, "no proposed presentation context is supported")
        return
    prefer_requestor_order(event)


def on_accepted(event: Event) -> None:
    accepted = len(event.assoc.accepted_contexts)
    rejected = len(event.assoc.rejected_contexts)
    log.info("association from %s at %s accepted (%d contexts accepted, %d rejected)",
             event.assoc.requestor.ae_title, _address(event), accepted, rejected)


def on_rejected(event: Event) -> None:
    """pynetdicom's own rejections (e.g. too many associations)."""
    log.warning("association from %s at %s rejected by the DICOM stack",
                _calling(event), _address(event))


def on_released(event: Event) -> None:
    log.info("association from %s at %s released", event.assoc.requestor.ae_title,
             _address(event))


def on_aborted(event: Event) -> None:
    log.info("association from %s at %s aborted", event.assoc.requestor.ae_title,
             _address(event))
