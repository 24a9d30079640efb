"""Who may associate, who may store, and the association log.

pynetdicom's ``AE.require_calling_aet`` is a fixed list that can't look at the peer's
address or at the node registry, so the decision is made in an ``EVT_REQUESTED``
handler instead: it runs after the A-ASSOCIATE-RQ arrives and before negotiation,
and may answer with an A-ASSOCIATE-RJ itself (pynetdicom then skips negotiation).

A calling AE title that is a registered node's is accepted only from an address its
host names, under every policy; an AE that is no node is admitted by the policy, and
may C-STORE only under ``any``. Every refusal is audited (``access-denied`` for an
association, ``store`` for a C-STORE) and logged with the calling AE, its address and
the reason, never patient data.
"""

from __future__ import annotations

import ipaddress
import logging
from enum import Enum
from typing import Any

from pydicom import Dataset
from pynetdicom.events import Event

from cloudfilm.dimse import caller
from cloudfilm.dimse.caller import Caller
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.nodes import CallingNode

log = logging.getLogger(__name__)

# A-ASSOCIATE-RJ (result, source, diagnostic), PS3.8 §9.3.4 Table 9-21.
REJECT_CALLING_AE = (0x01, 0x01, 0x03)  # permanent, service user: calling AE not recognised
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # permanent, service user: no reason given
REJECT_TRANSIENT = (0x02, 0x01, 0x01)  # transient, service user: no reason given
NOT_AUTHORIZED = 0x0124  # "Refused: Not Authorized" (PS3.7 Annex C, failure statuses)


class CallerPolicy(str, Enum):
    """``CLOUDFILM_DIMSE_ALLOW``: which calling AEs may associate."""

    LOOPBACK = "loopback"  # any AE from this machine; from elsewhere only known nodes
    KNOWN = "known"  # only AE titles registered as nodes, from any address
    ANY = "any"  # anyone who can reach the port

    @classmethod
    def parse(cls, value: str) -> CallerPolicy:
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


def identify(policy: CallerPolicy, calling_aet: str, host: str,
             nodes: CallingNode) -> Caller | str:
    """The association decision alone: who the caller is, or why it is refused.

    A registered AE title from an address its nodes' hosts do not name is refused under
    every policy: the title is only a claim, and the caller would otherwise pass as the
    hospital (PS3.8 §9.3.4, calling AE title not recognised).
    """
    if nodes.matched is not None:
        return Caller(calling_aet, host, nodes.matched, "node")
    if nodes.impersonated:
        hosts = ", ".join(sorted({node.host for node in nodes.registered}))
        return f"calling AE {calling_aet} is a registered node at {hosts}, not at {host}"
    if policy is CallerPolicy.ANY:
        return Caller(calling_aet, host, None, "any")
    if policy is CallerPolicy.LOOPBACK and is_loopback(host):
        return Caller(calling_aet, host, None, "loopback")
    return f"calling AE {calling_aet!r} is not a registered node (policy {policy.value})"


def _reject(event: Event, archive: Archive, rsd: tuple[int, int, int], why: str) -> None:
    """Send A-ASSOCIATE-RJ from EVT_REQUESTED, as pynetdicom's own ACSE rejection does."""
    assoc = event.assoc
    log.warning("association from %s at %s rejected: %s", _calling(event), _address(event), why)
    assoc.acse.send_reject(*rsd)
    assoc.kill()
    audit_refusal(archive, _calling(event), str(assoc.requestor.address), why)


def _refusal_entry(calling_aet: str, address: str, why: str) -> AuditEntry:
    return AuditEntry(actor=f"aet:{calling_aet}" if calling_aet else f"peer:{address}",
                      action="access-denied", outcome="failure", actor_role="node",
                      source=address, detail={"protocol": "DICOM", "reason": why})


def audit_refusal(archive: Archive, calling_aet: str, address: str, why: str) -> None:
    """An association refused: one audit record (a failing audit never lets anyone in)."""
    try:
        archive.audit.record(_refusal_entry(calling_aet, address, why))
    except Exception:
        log.exception("could not audit the refused association from %s", address)


def audit_refusal_once(archive: Archive, calling_aet: str, address: str, why: str) -> None:
    """A refusal repeated in a flood (connections over the cap, a full server): one record
    per address, reason and hour, so refusing stays cheap."""
    try:
        archive.audit.record_once(_refusal_entry(calling_aet, address, why),
                                  f"flood:{address}:{why}")
    except Exception:
        log.exception("could not audit the refused connection from %s", address)


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
    """EVT_REQUESTED: identify the caller, reject the refused and hopeless, else tune the order.

    An association whose every proposed context would be rejected is refused outright
    (as dcmtk's SCPs do) rather than accepted with nothing usable. A registry lookup
    that fails rejects transiently: an error never lets a caller in.
    """
    calling, host = _calling(event), str(event.assoc.requestor.address)
    try:
        decided = identify(policy, calling, host, archive.nodes.calling_node(calling, host))
    except Exception:
        log.exception("could not check calling AE %s against the node registry", calling)
        _reject(event, archive, REJECT_TRANSIENT, "node registry unavailable")
        return
    if isinstance(decided, str):
        _reject(event, archive, REJECT_CALLING_AE, decided)
        return
    if not _any_supported(event):
        _reject(event, archive, REJECT_NO_REASON, "no proposed presentation context is supported")
        return
    caller.remember(event, decided)
    prefer_requestor_order(event)


def store_refusal(event: Event, archive: Archive) -> Dataset | None:
    """Why this association may not C-STORE, as a Refused status; None when it may.

    An AE that is no registered node stores only under ``CLOUDFILM_DIMSE_ALLOW=any``:
    otherwise any program on the machine could write into patients' records.
    """
    who = caller.caller_of(event)
    if who.may_store:
        return None
    reason = f"{who.ae_title or 'this AE'} is not a registered node"
    caller.audit_refused_once(event, archive, "store", reason)
    status = Dataset()
    status.Status = NOT_AUTHORIZED
    status.ErrorComment = reason[:64]  # Error Comment (0000,0902) is an LO
    return status


def on_accepted(event: Event) -> None:
    accepted = len(event.assoc.accepted_contexts)
    rejected = len(event.assoc.rejected_contexts)
    log.info("association from %s at %s accepted (%d contexts accepted, %d rejected)",
             event.assoc.requestor.ae_title, _address(event), accepted, rejected)


def on_rejected(event: Event, archive: Archive) -> None:
    """pynetdicom's own rejections (e.g. too many associations), audited once per address."""
    log.warning("association from %s at %s rejected by the DICOM stack",
                _calling(event), _address(event))
    audit_refusal_once(archive, _calling(event), str(event.assoc.requestor.address),
                       "rejected by the DICOM stack (e.g. too many associations)")


def on_released(event: Event) -> None:
    log.info("association from %s at %s released", event.assoc.requestor.ae_title,
             _address(event))


def on_aborted(event: Event) -> None:
    log.info("association from %s at %s aborted", event.assoc.requestor.ae_title,
             _address(event))
