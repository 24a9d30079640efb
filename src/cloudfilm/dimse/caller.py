"""What a calling AE may see: the node's ``sees`` setting, through the one policy.

C-FIND, C-MOVE and C-GET filter their matches with the same ``visible=`` clause that
QIDO-RS uses for web callers, built from `services.policy.node_principal`: a known
node sees all, its own hospital's studies (its IssuerOfPatientID), or nothing; a
caller admitted only by ``CLOUDFILM_DIMSE_ALLOW`` (loopback or any) that is not a
known node sees nothing. Queries and retrieves are audited per request, stores once
per association and study.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial

from pynetdicom.events import Event

from cloudfilm.domain.access import Principal
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.domain.matching import Query
from cloudfilm.services.archive import Archive
from cloudfilm.services.policy import Policy, node_principal
from cloudfilm.services.query import SearchResult, Visible


def calling_ae(event: Event) -> str:
    return str(event.assoc.requestor.ae_title or "").strip()


def caller_principal(event: Event, archive: Archive) -> Principal:
    ae_title = calling_ae(event)
    nodes = archive.nodes.by_ae_title(ae_title) if ae_title else []
    return node_principal(ae_title, nodes[0] if nodes else None)


def visible_to(event: Event, archive: Archive) -> Visible:
    return Policy(archive).visible_clause(caller_principal(event, archive))


def restricted(search: Callable[..., SearchResult],
               visible: Visible) -> Callable[[Query], SearchResult]:
    """A QueryService search bound to the caller's visibility."""
    return partial(search, visible=visible)


def _entry(event: Event, action: str, study: str, detail: dict[str, object]) -> AuditEntry:
    return AuditEntry(actor=f"aet:{calling_ae(event)}", action=action, actor_role="node",
                      study_uid=study, source=str(event.assoc.requestor.address),
                      detail={k: str(v) for k, v in detail.items()})


def audit_once(event: Event, archive: Archive, action: str, study: str) -> None:
    """One record per association and study (a C-STORE of 500 images leaves one line)."""
    archive.audit.record_once(_entry(event, action, study, {}), f"assoc:{id(event.assoc)}")


def audit(event: Event, archive: Archive, action: str, studies: Iterable[str] = ("",),
          **detail: object) -> None:
    """One record per study (or one without a study, for a query)."""
    for study in studies:
        archive.audit.record(_entry(event, action, study, detail))
