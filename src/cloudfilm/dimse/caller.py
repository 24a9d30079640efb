"""Who is calling, decided once per association, and what that caller may see.

`dimse.access.on_requested` identifies the caller when its A-ASSOCIATE-RQ arrives and
keeps a `Caller` for the association; every handler reads it back with `caller_of`.
A caller is either a registered node (its AE title *and* its address match a node) or
an AE admitted only by ``CLOUDFILM_DIMSE_ALLOW`` (loopback or any).

C-FIND, C-MOVE and C-GET filter their matches with the same ``visible=`` clause that
QIDO-RS uses for web callers, built from `services.policy.node_principal`: a known
node sees all, its own hospital's studies (its IssuerOfPatientID), or nothing; a
caller that is not a registered node sees nothing. Queries and retrieves are audited
per request, stores once per association and study.
"""

from __future__ import annotations

import threading
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

from pynetdicom.association import Association
from pynetdicom.events import Event

from cloudfilm.domain.access import Principal
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.matching import Query
from cloudfilm.domain.nodes import Node
from cloudfilm.services.access.policy import Policy, node_principal
from cloudfilm.services.archive.query import SearchResult
from cloudfilm.services.context import Archive
from cloudfilm.storage.index.queries import Visible

AdmittedBy = Literal["node", "loopback", "any", "none"]


@dataclass(frozen=True)
class Caller:
    """The calling AE of one association.

    ``node`` is the registered node whose AE title and host both match, else None;
    ``admitted_by`` says why the association was accepted: ``node``, or the
    ``CLOUDFILM_DIMSE_ALLOW`` policy (``loopback``, ``any``) for an AE that is no node.
    """

    ae_title: str
    address: str
    node: Node | None
    admitted_by: AdmittedBy
    association_key: str = field(default_factory=lambda: uuid.uuid4().hex)  # for audit dedupe

    @property
    def is_registered_node(self) -> bool:
        """A hospital source: may store, and its stored demographics count (issue 11)."""
        return self.node is not None

    @property
    def may_store(self) -> bool:
        """C-STORE needs a registered node, or ``CLOUDFILM_DIMSE_ALLOW=any``."""
        return self.node is not None or self.admitted_by == "any"

    @property
    def principal(self) -> Principal:
        return node_principal(self.ae_title, self.node)


_callers: weakref.WeakKeyDictionary[Association, Caller] = weakref.WeakKeyDictionary()
_callers_lock = threading.Lock()


def remember(event: Event, caller: Caller) -> None:
    """Keep the caller for the rest of its association (dropped with the association)."""
    with _callers_lock:
        _callers[event.assoc] = caller


def caller_of(event: Event) -> Caller:
    """The association's caller; one never identified is no node and admitted by nothing."""
    with _callers_lock:
        known = _callers.get(event.assoc)
    if known is not None:
        return known
    requestor = event.assoc.requestor
    return Caller(str(requestor.ae_title or "").strip(), str(requestor.address), None, "none")


def calling_ae(event: Event) -> str:
    return str(event.assoc.requestor.ae_title or "").strip()


def visible_to(event: Event, archive: Archive) -> Visible:
    """The QIDO ``visible=`` clause for this association's caller (its node's ``sees``)."""
    return Policy(archive).visible_clause(caller_of(event).principal)


def restricted(search: Callable[..., SearchResult],
               visible: Visible) -> Callable[[Query], SearchResult]:
    """A QueryService search bound to the caller's visibility."""
    return partial(search, visible=visible)


def _entry(event: Event, action: str, study: str, detail: dict[str, object],
           outcome: str = "success") -> AuditEntry:
    return AuditEntry(actor=f"aet:{calling_ae(event)}", action=action, actor_role="node",
                      outcome=outcome, study_uid=study, source=str(event.assoc.requestor.address),
                      detail={k: str(v) for k, v in detail.items()})


def audit_once(event: Event, archive: Archive, action: str, study: str) -> None:
    """One record per association and study (a C-STORE of 500 images leaves one line)."""
    archive.audit.record_once(_entry(event, action, study, {}),
                              f"assoc:{caller_of(event).association_key}")


def audit(event: Event, archive: Archive, action: str, studies: Iterable[str] = ("",),
          **detail: object) -> None:
    """One record per study (or one without a study, for a query)."""
    for study in studies:
        archive.audit.record(_entry(event, action, study, detail))


def audit_refused_once(event: Event, archive: Archive, action: str, reason: str) -> None:
    """One failure record per association for a refused operation (e.g. every C-STORE)."""
    archive.audit.record_once(_entry(event, action, "", {"reason": reason}, "failure"),
                              f"assoc:{caller_of(event).association_key}")
