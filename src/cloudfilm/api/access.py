"""Route-side access checks: every study read or write asks `services.policy.Policy` here.

Why one module: DICOMweb, WADO-URI, exports and uploads must deny the same way and
audit the same way. A denied study answers exactly like a missing one (404 with the
same message), so a caller can't learn that a study exists from the difference.
Views (metadata, frames, rendered images) are audited once per session and study per
hour, queued without waiting for the index (``AuditLog.queue_view``); downloads (any
route that hands out the original Part-10 objects) and uploads once per request.

The study check of a request the middleware authenticated uses the access epoch it read
(services/access/read_access.py): a decision allowed under the same epoch is answered
from memory, on the event loop, so a frame request makes no policy query at all.
"""

from __future__ import annotations

import hashlib
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from cloudfilm.api.authn import SESSION_COOKIE, client_ip, principal
from cloudfilm.api.errors import NotFound
from cloudfilm.domain.access import Decision, Permission
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.services.access.people import audit_entry
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.access.read_access import read_access_of
from cloudfilm.services.archive.query import Visible
from cloudfilm.services.context import Archive


def archive_of(conn: HTTPConnection) -> Archive:
    return conn.app.state.archive  # type: ignore[no-any-return]


def describe(study: str, series: str | None = None, sop: str | None = None) -> str:
    """What a 404 names: the same words whether the resource is missing or hidden."""
    if sop:
        return f"instance {sop}"
    return f"series {series}" if series else f"study {study}"


def session_key(conn: HTTPConnection) -> str:
    """A stable, non-secret key for the caller's session or token (for view aggregation)."""
    who = principal(conn)
    raw = (conn.headers.get("authorization", "") or conn.cookies.get(SESSION_COOKIE, "")
           or f"{who.kind}:{who.username}:{client_ip(conn)}")
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


async def require_study(conn: HTTPConnection, permission: Permission, study: str,
                        series: str | None = None, sop: str | None = None) -> Decision:
    """Allow, or raise the 404 a missing resource would get (after auditing the refusal)."""
    decision = await _decide(conn, permission, study)
    if not decision.allowed:
        if decision.reason != "no such study":
            await audit(conn, _action(permission), decision, study, outcome="failure")
        raise NotFound(describe(study, series, sop))
    return decision


async def _decide(conn: HTTPConnection, permission: Permission, study: str) -> Decision:
    """From memory under the request's access epoch when it can, else from the index."""
    who, archive = principal(conn), archive_of(conn)
    epoch: int | None = getattr(conn.state, "access_epoch", None)
    if epoch is None:
        return await run_in_threadpool(Policy(archive).check, who, permission, study)
    checks = read_access_of(archive).studies
    remembered = checks.remembered(who, permission, study, epoch)
    if remembered is not None:
        return remembered
    return await run_in_threadpool(checks.check, who, permission, study, epoch)


def _action(permission: Permission) -> str:
    return {Permission.VIEW: "view", Permission.DOWNLOAD: "download",
            Permission.UPLOAD: "upload"}[permission]


def _entry(conn: HTTPConnection, action: str, study: str | None, *,
           person_id: int | None = None, outcome: str = "success",
           detail: dict[str, Any] | None = None) -> AuditEntry:
    """The record of ``principal(conn)`` doing ``action`` on ``study`` through this request."""
    return audit_entry(principal(conn), action, person_id=person_id, outcome=outcome,
                       study_uid=study or "", source=client_ip(conn),
                       detail={"path": conn.url.path} | (detail or {}))


async def audit(conn: HTTPConnection, action: str, decision: Decision, study: str | None,
                *, outcome: str = "success", detail: dict[str, Any] | None = None) -> None:
    """One audit record for ``principal(conn)`` doing ``action`` on ``study``."""
    entry = _entry(conn, action, study, person_id=decision.person_id, outcome=outcome,
                   detail=detail)
    await run_in_threadpool(archive_of(conn).audit.record, entry)


async def audit_view(conn: HTTPConnection, decision: Decision, study: str) -> None:
    """A ``view`` record, aggregated per session and study, queued (AuditLog.queue_view):
    no wait for the index, and none at all once the view is recorded for the hour."""
    entry = audit_entry(principal(conn), "view", person_id=decision.person_id,
                        study_uid=study, source=client_ip(conn))
    archive_of(conn).audit.queue_view(entry, session_key(conn))


async def audit_query(conn: HTTPConnection, study: str | None, detail: dict[str, Any]) -> None:
    """A search's ``query`` record, queued (AuditLog.queue): every search is recorded, and
    none waits for the index."""
    archive_of(conn).audit.queue(_entry(conn, "query", study, detail=detail))


async def view_study(conn: HTTPConnection, study: str, series: str | None = None,
                     sop: str | None = None) -> Decision:
    """Check VIEW and leave the (aggregated) view record: metadata, frames, renderings."""
    decision = await require_study(conn, Permission.VIEW, study, series, sop)
    await audit_view(conn, decision, study)
    return decision


async def download_study(conn: HTTPConnection, study: str, series: str | None = None,
                         sop: str | None = None) -> Decision:
    """Check DOWNLOAD and record the download (whole study or series as DICOM)."""
    decision = await require_study(conn, Permission.DOWNLOAD, study, series, sop)
    await audit(conn, "download", decision, study)
    return decision


async def require_upload(conn: HTTPConnection, study: str, *,
                         action: str = "upload") -> Decision:
    """Writing into an existing study (images, documents, measurements, their SR): 404 if
    the caller can't see it, 403 if they can't add (``Permission.UPLOAD``). ``action``
    names the refused attempt in the audit."""
    visible = await require_study(conn, Permission.VIEW, study)
    decision = await run_in_threadpool(Policy(archive_of(conn)).check_upload, principal(conn),
                                       study, visible.person_id)
    if not decision.allowed:
        await audit(conn, action, decision, study, outcome="failure")
        raise HTTPException(403, f"you may not add to study {study}: {decision.reason}")
    return decision


async def visible_clause(conn: HTTPConnection,
                         permission: Permission = Permission.VIEW) -> Visible:
    """The ``visible=`` filter for QueryService for this caller (None: unrestricted); the
    route hands it on without looking inside."""
    return await run_in_threadpool(Policy(archive_of(conn)).visible_clause, principal(conn),
                                   permission)
