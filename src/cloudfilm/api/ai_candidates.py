"""AI candidates (issue 15): findings of AI services and of the built-in detector, for a
clinician to accept, correct or reject. Nothing here reaches a patient.

GET  /api/studies/{study}/ai-candidates      the study's candidates and where its latest
                                             detection is (``detection.state``) (VIEW)
POST /api/ai-candidates/{id}/accept          {instance_uid, column, row}? measure there (UPLOAD)
POST /api/ai-candidates/{id}/reject          (UPLOAD)
POST /api/studies/{study}/nodules/detect     queue the built-in detector (VIEW), 202

A candidate: ``{id, study_uid, series_uid, source ("builtin" or the AI node), algorithm:
{name, version}, center_mm [x, y, z] (patient LPS), diameter_mm, volume_mm3, score,
instance_uid, column, row (pixel on that slice), status (pending|accepted|rejected),
measurement, result_sop_uid, decided_by, decided_at}``.

Callers: physicians with a live grant on the study, operators and admins. Everyone else
(patients, caregivers, links, AI services) gets the 404 of a missing study, 401 when
anonymous. Accepting or rejecting writes into the study (a measurement and its SR), so a
physician's grant must allow upload, as for the measure tool (403 otherwise). Every call
is audited.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from cloudfilm.api.access import archive_of, audit, require_study, require_upload
from cloudfilm.api.authn import principal
from cloudfilm.api.people import int_param, json_body, respond
from cloudfilm.domain.access import Decision, Permission, Role
from cloudfilm.services.access.people import actor_name
from cloudfilm.services.ai.candidates import AlreadyDecided, CandidateNotFound, CandidateService
from cloudfilm.services.ai.detect import detection_state, enqueue_detect
from cloudfilm.services.nodules.model import NoduleError

CLINICIANS = (Role.PHYSICIAN, Role.OPERATOR, Role.ADMIN)


def _service(request: Request) -> CandidateService:
    return CandidateService(archive_of(request))


async def _clinician(request: Request, study: str | None, action: str, *, write: bool,
                     missing: str) -> Decision:
    """A clinician who may see (``write``: add to) the study; else the 404 ``missing``
    (after auditing the refusal), the same as for what does not exist."""
    who = principal(request)
    if who.kind != "user" or who.role not in CLINICIANS or study is None:
        if study is not None:
            await audit(request, action, Decision(False, "AI candidates are for clinicians"),
                        study, outcome="failure")
        raise HTTPException(404, missing)
    try:
        if write:
            return await require_upload(request, study, action=action)
        return await require_study(request, Permission.VIEW, study)
    except HTTPException as error:
        if error.status_code == 404:
            raise HTTPException(404, missing) from None
        raise


async def _on_candidate(request: Request) -> tuple[int, str, Decision]:
    """The candidate, its study and the caller's right to decide on it (UPLOAD)."""
    candidate_id = int_param(request.path_params["id"], "candidate id")
    try:
        study: str | None = await run_in_threadpool(_service(request).study_of, candidate_id)
    except CandidateNotFound:
        study = None
    decision = await _clinician(request, study, "measure", write=True,
                                missing=f"AI candidate {candidate_id} not found")
    assert study is not None
    return candidate_id, study, decision


async def study_candidates(request: Request) -> Response:
    study = request.path_params["study"]
    decision = await _clinician(request, study, "view", write=False,
                                missing=f"study {study} not found")
    found = await run_in_threadpool(_service(request).study_candidates, study)
    detection = await run_in_threadpool(detection_state, archive_of(request), study)
    await audit(request, "view", decision, study, detail={"ai_candidates": len(found)})
    return respond({"study_uid": study, "candidates": found, "detection": detection})


def _point(body: dict[str, Any]) -> tuple[str, float, float] | None:
    """The physician's corrected point, if the body gives one."""
    if not any(k in body for k in ("instance_uid", "column", "row")):
        return None
    instance = body.get("instance_uid")
    if not isinstance(instance, str) or not instance:
        raise HTTPException(400, "instance_uid is required with column and row")
    values = []
    for key in ("column", "row"):
        value = body.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise HTTPException(400, f"{key} must be a number")
        values.append(float(value))
    return instance, values[0], values[1]


async def accept(request: Request) -> Response:
    candidate_id, study, decision = await _on_candidate(request)
    raw = await request.body()
    point = _point(await json_body(request)) if raw.strip() else None
    who = actor_name(principal(request))
    try:
        answer = await run_in_threadpool(_service(request).accept, candidate_id, who, point)
    except AlreadyDecided as error:
        raise HTTPException(409, str(error)) from None
    except NoduleError as error:
        await audit(request, "measure", decision, study, outcome="failure",
                    detail={"ai_candidate": candidate_id, "reason": str(error)})
        return respond({"error": str(error)}, 422)
    await audit(request, "measure", decision, study, detail={
        "ai_candidate": candidate_id, "decision": "accepted", "edited": point is not None,
        "nodule_measurement": answer["measurement"].get("id")})
    return respond(answer)


async def reject(request: Request) -> Response:
    candidate_id, study, decision = await _on_candidate(request)
    try:
        candidate = await run_in_threadpool(_service(request).reject, candidate_id,
                                            actor_name(principal(request)))
    except AlreadyDecided as error:
        raise HTTPException(409, str(error)) from None
    await audit(request, "measure", decision, study,
                detail={"ai_candidate": candidate_id, "decision": "rejected"})
    return respond({"candidate": candidate})


async def detect(request: Request) -> Response:
    study = request.path_params["study"]
    decision = await _clinician(request, study, "measure", write=False,
                                missing=f"study {study} not found")
    job = await run_in_threadpool(enqueue_detect, archive_of(request), study)
    await audit(request, "measure", decision, study, detail={"detect": str(job)})
    return respond({"job": job, "status": "queued"}, 202)


routes = [
    Route("/studies/{study}/ai-candidates", study_candidates, methods=["GET"]),
    Route("/ai-candidates/{id}/accept", accept, methods=["POST"]),
    Route("/ai-candidates/{id}/reject", reject, methods=["POST"]),
    Route("/studies/{study}/nodules/detect", detect, methods=["POST"]),
]
