"""Audit JSON API: the export for auditors and "who accessed my images" for patients.

``GET /api/audit?format=fhir|dicom|json&since=&until=&person=&limit=``
    FHIR R4 Bundle of AuditEvents (IHE BALP), DICOM PS3.15 A.5 XML (one AuditMessage
    per record inside ``AuditMessages``), or the readable JSON of the access log;
    oldest first. Admin only; a refusal is audited by the authentication layer.
``GET /api/me/access-log?limit=&person=``
    Records about the caller's own person, and the persons they act for, newest first.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.authn import require_user
from cloudfilm.api.errors import BadParameter
from cloudfilm.domain.access import Role
from cloudfilm.domain.audit import EVENT_CODES
from cloudfilm.domain.clock import as_utc
from cloudfilm.i18n import N_, Localizer, localizer
from cloudfilm.services.audit.export import dicom_audit_messages_xml, fhir_bundle
from cloudfilm.services.audit.record import AuditRecord
from cloudfilm.services.context import Archive

FORMATS = {"fhir": "application/fhir+json", "dicom": "application/xml", "json": "application/json"}
DEFAULT_LIMIT, MAX_LIMIT = 1000, 10_000
# What each action means to a patient, in the access log (JSON here, and the share page).
ACTIONS = {
    "view": N_("looked at images"), "download": N_("downloaded images"),
    "query": N_("looked at the list of scans"), "upload": N_("uploaded images"),
    "store": N_("received images"), "delete": N_("deleted images"),
    "share-create": N_("shared images"), "share-renew": N_("renewed a share"),
    "share-revoke": N_("stopped a share"), "share-open": N_("opened a shared link"),
    "link": N_("added a hospital record"), "unlink": N_("removed a hospital record"),
    "admin": N_("changed settings"), "login": N_("signed in"),
    "login-failed": N_("failed to sign in"), "logout": N_("signed out"),
    "access-denied": N_("was refused access"),
    "caregiver-invite": N_("invited a family helper"),
    "caregiver-add": N_("added a family helper"),
    "caregiver-accept": N_("became a family helper"),
    "caregiver-withdraw": N_("took back an invitation"),
    "caregiver-remove": N_("removed a family helper"),
    "measure": N_("measured a nodule"),
}


def _archive(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


def _json(body: Any, status: int = 200, media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media_type)


def parse_instant(name: str, value: str, *, end: bool = False) -> datetime:
    """An ISO date (a whole day; ``end`` makes it exclusive at the next midnight) or date-time."""
    try:
        if len(value) == 10:
            day = date.fromisoformat(value) + timedelta(days=1 if end else 0)
            return datetime.combine(day, time(), UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadParameter(name, "expected an ISO 8601 date or date-time") from exc
    return as_utc(moment)


def parse_int(request: Request, name: str, default: int | None, *, low: int = 1,
              high: int | None = None) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise BadParameter(name, "expected an integer") from exc
    if value < low or (high is not None and value > high):
        raise BadParameter(name, f"must be between {low} and {high}")
    return value


def readable(record: AuditRecord, loc: Localizer) -> dict[str, Any]:
    """A record as an access log line: when, who, role, on behalf of, what (in the reader's
    language, the same words as the access-log page), study, from where."""
    entry = record.entry
    return {"id": record.id, "when": record.at.isoformat(), "who": entry.actor,
            "role": entry.actor_role, "on_behalf_of": entry.on_behalf_of,
            "what": loc.gettext(ACTIONS[entry.action]) if entry.action in ACTIONS else entry.action,
            "action": entry.action,
            "event": EVENT_CODES[entry.action][1], "person_id": entry.person_id,
            "study": entry.study_uid, "from": entry.source, "outcome": entry.outcome}


async def export_audit(request: Request) -> Response:
    require_user(request, [Role.ADMIN])
    params = request.query_params
    kind = params.get("format", "fhir")
    if kind not in FORMATS:
        raise BadParameter("format", f"must be one of {', '.join(FORMATS)}")
    since = parse_instant("since", params["since"]) if params.get("since") else None
    until = parse_instant("until", params["until"], end=True) if params.get("until") else None
    person = parse_int(request, "person", None, low=0)
    limit = parse_int(request, "limit", DEFAULT_LIMIT, high=MAX_LIMIT) or DEFAULT_LIMIT
    records = await run_in_threadpool(
        _archive(request).audit.query, since=since, until=until,
        person_ids=None if person is None else [person], limit=limit)
    if kind == "dicom":
        return Response(dicom_audit_messages_xml(records), media_type=FORMATS["dicom"])
    if kind == "json":
        return _json([readable(r, localizer(request)) for r in records])
    return _json(fhir_bundle(records), media_type=FORMATS["fhir"])


def caller_persons(request: Request) -> set[int]:
    """The persons whose log the caller may read: their own and those they act for (401 if
    nobody is signed in)."""
    principal = getattr(request.state, "principal", None)
    if principal is None or getattr(principal, "kind", "anonymous") == "anonymous":
        raise HTTPException(401, "sign in to see who accessed your images")
    persons = set(getattr(principal, "acting_for", ()) or ())
    if getattr(principal, "own_person_id", None) is not None:
        persons.add(principal.own_person_id)
    return persons


async def my_access_log(request: Request) -> Response:
    persons = caller_persons(request)
    wanted = parse_int(request, "person", None, low=0)
    if wanted is not None:
        if wanted not in persons:
            raise HTTPException(403, "you may only read the access log of your own images")
        persons = {wanted}
    limit = parse_int(request, "limit", 200, high=MAX_LIMIT) or 200
    if not persons:
        return _json([])
    records = await run_in_threadpool(_archive(request).audit.query, person_ids=persons,
                                      limit=limit, newest_first=True)
    return _json([readable(r, localizer(request)) for r in records])


routes = [
    Route("/audit", export_audit, methods=["GET"]),
    Route("/me/access-log", my_access_log, methods=["GET"]),
]
