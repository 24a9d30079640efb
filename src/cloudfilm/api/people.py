"""JSON API for persons, their hospital records, claim codes, timelines and caregivers.

Issue "People, access and sharing" (one person across hospitals; caregivers):
- operators link/unlink records and confirm suggestions: ``/api/persons/{id}/...``;
- a patient claims a record with a code: ``POST /api/me/claim``;
- the timeline: ``GET /api/me/timeline`` (own, or ``?person=`` for a caregiver) and
  ``GET /api/patients/{id}/timeline`` (physicians with a grant, operators, admins,
  caregivers), always filtered by the policy;
- caregivers: ``/api/me/caregivers`` (list; ``POST`` makes an invitation link, which
  names nobody: a ``username`` gets the same refusal whether or not it exists),
  ``DELETE /api/me/caregivers/invitations/{invite_id}`` (withdraw an unused link),
  ``POST /api/caregiving/join`` with ``{"invitation": SECRET}`` (accept a link; staff
  accounts are refused), ``/api/caregiving/{invite_id}/accept`` (older invitations),
  ``/api/persons/{id}/caregivers`` (operators).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import client_ip, require_user
from cloudfilm.api.urls import site_base
from cloudfilm.domain.access import Principal, Role, may_act_for
from cloudfilm.services.access.people import (
    CaregiverService,
    PeopleService,
    ServiceError,
    audit_entry,
)
from cloudfilm.services.context import Archive

T = TypeVar("T")
OPERATORS = (Role.OPERATOR, Role.ADMIN)
NO_STORE = {"Cache-Control": "no-store"}


def archive_of(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a service call off the event loop; its errors become JSON errors."""
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except ServiceError as exc:
        raise HTTPException(exc.status, str(exc)) from exc


async def json_body(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise HTTPException(400, f"the body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


def int_param(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise HTTPException(400, f"{name} must be a number") from exc


def respond(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers=NO_STORE)


# -- persons and records (operators) -----------------------------------------------------


async def create_person(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    body = await json_body(request)
    person_id = await call(PeopleService(archive_of(request)).create_person, who,
                           str(body.get("display_name", "")), str(body.get("birth_date", "")),
                           str(body.get("sex", "")), body.get("username"))
    return respond({"id": person_id}, 201)


async def get_person(request: Request) -> Response:
    """A person with their linked records: operators, admins, the patient, their caregivers."""
    who = require_user(request)
    person_id = int_param(request.path_params["id"], "person id")
    if not (who.unrestricted or may_act_for(who, person_id)):
        raise HTTPException(404, f"person {person_id} not found")
    people = PeopleService(archive_of(request))
    person = await call(people.person_info, person_id)
    records = await call(people.records, person_id)
    return respond({"id": person.id, "display_name": person.display_name,
                    "birth_date": person.birth_date, "sex": person.sex,
                    "records": [r.as_dict() for r in records]})


async def link_record(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    body = await json_body(request)
    record = await call(PeopleService(archive_of(request)).link, who,
                        int_param(request.path_params["id"], "person id"),
                        str(body.get("patient_id") or ""), str(body.get("issuer") or ""),
                        str(body.get("method") or "operator"))
    return respond(record.as_dict(), 201)


async def unlink_record(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    patient_id = request.query_params.get("patient_id")
    if not patient_id:
        raise HTTPException(400, "the query parameter patient_id is required")
    await call(PeopleService(archive_of(request)).unlink, who,
               int_param(request.path_params["id"], "person id"), patient_id,
               request.query_params.get("issuer", ""))
    return Response(status_code=204)


async def suggestions(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    found = await call(PeopleService(archive_of(request)).suggestions, who,
                       int_param(request.path_params["id"], "person id"))
    return respond([r.as_dict() for r in found])


# -- claim codes -------------------------------------------------------------------------


async def claim(request: Request) -> Response:
    """The patient types the code from their hospital: that study's record joins their folder."""
    who = require_user(request)
    body = await json_body(request)
    person = body.get("person")
    record = await call(PeopleService(archive_of(request)).claim, who, str(body.get("code", "")),
                        int_param(person, "person") if person is not None else None)
    return respond(record.as_dict())


# -- timelines ---------------------------------------------------------------------------


async def _timeline(request: Request, who: Principal, person_id: int) -> Response:
    people = PeopleService(archive_of(request))
    manages = who.unrestricted or may_act_for(who, person_id)
    await call(people.person_info, person_id)  # 404 when there is no such person
    studies = await call(people.timeline, who, person_id)
    if not studies and not manages:  # no grant covers anything: say nothing about the person
        raise HTTPException(404, f"person {person_id} not found")
    if who.own_person_id != person_id:
        await run_in_threadpool(archive_of(request).audit.record, audit_entry(
            who, "query", person_id=person_id, source=client_ip(request),
            detail={"what": "timeline", "studies": len(studies)}))
    return respond({"person": person_id, "studies": [s.as_dict() for s in studies]})


async def my_timeline(request: Request) -> Response:
    """The caller's own case folder, or ``?person=ID`` for someone they care for."""
    who = require_user(request)
    raw = request.query_params.get("person")
    person_id = int_param(raw, "person") if raw else who.own_person_id
    if person_id is None:
        raise HTTPException(404, "you have no case folder of your own; use ?person=ID")
    if not may_act_for(who, person_id):
        raise HTTPException(404, f"person {person_id} not found")
    return await _timeline(request, who, person_id)


async def patient_timeline(request: Request) -> Response:
    """A person's timeline as the caller may see it (physicians: only what grants cover)."""
    who = require_user(request, allow_share=True)
    return await _timeline(request, who, int_param(request.path_params["id"], "person id"))


# -- caregivers --------------------------------------------------------------------------


async def my_caregivers(request: Request) -> Response:
    who = require_user(request)
    if who.own_person_id is None:
        return respond([])
    found = await call(CaregiverService(archive_of(request)).for_person, who.own_person_id)
    return respond([c.as_dict() for c in found])


async def invite_caregiver(request: Request) -> Response:
    """A single-use invitation link (shown once); no account is named or looked up."""
    who = require_user(request)
    body = await json_body(request) if await request.body() else {}
    if "username" in body:
        raise HTTPException(400, "caregivers are invited by link: send {} and pass the link "
                                 "on; usernames are not looked up")
    invitation = await call(CaregiverService(archive_of(request)).invite, who)
    return respond({"invite_id": invitation.invite_id, "status": "invited",
                    "url": f"{site_base(request)}{invitation.path}",
                    "expires_at": invitation.expires_at.isoformat()}, 201)


async def withdraw_invitation(request: Request) -> Response:
    who = require_user(request)
    await call(CaregiverService(archive_of(request)).withdraw, who,
               int_param(request.path_params["invite_id"], "invite id"))
    return Response(status_code=204)


async def join_as_caregiver(request: Request) -> Response:
    """Accept an invitation link: the caller becomes the patient's caregiver."""
    who = require_user(request)
    body = await json_body(request)
    link = await call(CaregiverService(archive_of(request)).join, who,
                      str(body.get("invitation") or ""))
    return respond(link.as_dict())


async def remove_caregiver(request: Request) -> Response:
    who = require_user(request)
    await call(CaregiverService(archive_of(request)).remove, who,
               int_param(request.path_params["user_id"], "user id"))
    return Response(status_code=204)


async def caring_for(request: Request) -> Response:
    """The caller's invitations and the patients they care for."""
    who = require_user(request)
    found = await call(CaregiverService(archive_of(request)).caring_for, who)
    return respond([c.as_dict() for c in found])


async def accept_invite(request: Request) -> Response:
    who = require_user(request)
    link = await call(CaregiverService(archive_of(request)).accept, who,
                      int_param(request.path_params["invite_id"], "invite id"))
    return respond(link.as_dict())


async def add_caregiver(request: Request) -> Response:
    who = require_user(request, OPERATORS)
    body = await json_body(request)
    link = await call(CaregiverService(archive_of(request)).add_direct, who,
                      int_param(request.path_params["id"], "person id"),
                      str(body.get("username", "")))
    return respond(link.as_dict(), 201)


routes = [
    Route("/persons", create_person, methods=["POST"]),
    Route("/persons/{id}", get_person, methods=["GET"]),
    Route("/persons/{id}/records", link_record, methods=["POST"]),
    Route("/persons/{id}/records", unlink_record, methods=["DELETE"]),
    Route("/persons/{id}/suggestions", suggestions, methods=["GET"]),
    Route("/persons/{id}/caregivers", add_caregiver, methods=["POST"]),
    Route("/me/claim", claim, methods=["POST"]),
    Route("/me/timeline", my_timeline, methods=["GET"]),
    Route("/patients/{id}/timeline", patient_timeline, methods=["GET"]),
    Route("/me/caregivers", my_caregivers, methods=["GET"]),
    Route("/me/caregivers", invite_caregiver, methods=["POST"]),
    Route("/me/caregivers/invitations/{invite_id}", withdraw_invitation, methods=["DELETE"]),
    Route("/me/caregivers/{user_id}", remove_caregiver, methods=["DELETE"]),
    Route("/caregiving", caring_for, methods=["GET"]),
    Route("/caregiving/join", join_as_caregiver, methods=["POST"]),
    Route("/caregiving/{invite_id}/accept", accept_invite, methods=["POST"]),
]
