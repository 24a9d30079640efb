"""JSON API for nodule care (issue "Nodule care").

Reading needs VIEW on the study (a hidden study answers 404 like a missing one);
changing measurements, links and the guideline needs a physician (or operator/admin)
who may write into the study (UPLOAD: a physician's grant must allow it; 403 otherwise):
patients and caregivers read, clinicians measure.

GET    /api/studies/{study}/nodules                  measurements, assessment, explanation data
POST   /api/studies/{study}/nodules/measure          {series_uid, instance_uid, x, y}: segment
POST   /api/studies/{study}/nodules                  a manual measurement (axes in mm)
POST   /api/studies/{study}/nodules/assess           {guideline?, risk?}: re-run the guideline
POST   /api/studies/{study}/nodules/track            re-run matching with the prior study (202)
GET    /api/studies/{study}/nodules/fhir             FHIR R4 Bundle of Observations
PATCH  /api/nodule-measurements/{id}                 type, lobe, calcification, morphology
DELETE /api/nodule-measurements/{id}
POST   /api/nodule-measurements/{id}/link            {nodule_id}: same nodule as that one
POST   /api/nodule-measurements/{id}/confirm | /new | /unlink
GET    /api/persons/{id}/nodules                     trajectories (growth chart, tracking table)

A new or changed measurement is stored at once; registration and tracking (seconds) run
in the folder's ``nodules.settle`` job. Answers carry ``"tracking": "pending"`` until it
has run (the measurement's nodule and label, the assessment and the SR follow), then
``"done"``.
"""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cloudfilm.api.access import archive_of, audit, require_study, require_upload, view_study
from cloudfilm.api.authn import principal, require_user
from cloudfilm.api.people import int_param, json_body, respond
from cloudfilm.domain.access import Decision, Permission, Role
from cloudfilm.services.access.people import PeopleService, actor_name
from cloudfilm.services.nodules.model import NewMeasurement, NoduleError, NotFound, measurement_dict
from cloudfilm.services.nodules.service import NoduleService

CLINICIANS = (Role.PHYSICIAN, Role.OPERATOR, Role.ADMIN)


def _nodules(request: Request) -> NoduleService:
    return NoduleService(archive_of(request))


async def _run(function: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args, **kwargs)
    except NoduleError as error:
        raise HTTPException(422, str(error)) from error
    except NotFound as error:
        raise HTTPException(404, f"{error.args[0]} not found") from error


async def _clinician_on(request: Request, study: str) -> Decision:
    """A clinician who may write into the study: measurements become an SR in it, so a
    physician needs a grant with the upload permission (view-only is read-only)."""
    require_user(request, CLINICIANS)
    return await require_upload(request, study, action="measure")


def _number(body: dict[str, Any], key: str) -> float:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise HTTPException(400, f"{key} must be a number")
    return float(value)


def _optional_number(body: dict[str, Any], key: str) -> float | None:
    return None if body.get(key) is None else _number(body, key)


def _tracking(nodules: NoduleService, study: str) -> str:
    return "pending" if nodules.tracking_pending(study) else "done"


async def study_nodules(request: Request) -> Response:
    study = request.path_params["study"]
    await view_study(request, study)
    nodules = _nodules(request)
    await _run(nodules.sync, study)
    measurements = await _run(nodules.study_measurements, study)
    assessment = await _run(nodules.assessment, study)
    tracking = await _run(_tracking, nodules, study)
    return respond({"study_uid": study, "measurements": measurements, "assessment": assessment,
                    "tracking": tracking})


async def measure(request: Request) -> Response:
    """Segment the nodule under a click: the viewer's "measure nodule" tool."""
    study = request.path_params["study"]
    decision = await _clinician_on(request, study)
    body = await json_body(request)
    for key in ("series_uid", "instance_uid"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise HTTPException(400, f"{key} is required")
    x, y = _number(body, "x"), _number(body, "y")
    who = principal(request)
    nodules = _nodules(request)
    try:
        row, nodule = await run_in_threadpool(
            nodules.measure_click, study, body["series_uid"], body["instance_uid"],
            x, y, actor_name(who))
    except NoduleError as error:
        return JSONResponse({"error": str(error)}, status_code=422)
    except NotFound as error:
        raise HTTPException(404, f"{error.args[0]} not found") from error
    await audit(request, "measure", decision, study, detail={"nodule_measurement": row.id})
    data = measurement_dict(row, nodule.label if nodule else None)
    data["suggested_type"] = row.nodule_type
    return respond({"measurement": data, "nodule": None if nodule is None else
                    {"id": nodule.id, "label": nodule.label},
                    "tracking": await _run(_tracking, nodules, study)}, 201)


async def add_manual(request: Request) -> Response:
    study = request.path_params["study"]
    decision = await _clinician_on(request, study)
    body = await json_body(request)
    centre = body.get("center_patient_mm")
    if not (isinstance(centre, list) and len(centre) == 3
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in centre)):
        raise HTTPException(400, "center_patient_mm must be [x, y, z] in mm")
    fields = {k: body[k] for k in ("nodule_type", "calcification", "spiculated", "juxtapleural",
                                   "airway", "lobe") if body.get(k) is not None}
    m = NewMeasurement(
        series_uid=str(body.get("series_uid") or ""), instance_uid=str(body.get("instance_uid") or ""),
        centre_mm=(float(centre[0]), float(centre[1]), float(centre[2])),
        long_axis_mm=_number(body, "long_axis_mm"), short_axis_mm=_number(body, "short_axis_mm"),
        volume_mm3=_optional_number(body, "volume_mm3"),
        solid_component_mm=_optional_number(body, "solid_component_mm"), **fields)
    if not m.series_uid or not m.instance_uid:
        raise HTTPException(400, "series_uid and instance_uid are required")
    nodules = _nodules(request)
    row, nodule = await _run(nodules.add, study, m, actor_name(principal(request)))
    await audit(request, "measure", decision, study, detail={"nodule_measurement": row.id})
    return respond({"measurement": measurement_dict(row, nodule.label if nodule else None),
                    "tracking": await _run(_tracking, nodules, study)}, 201)


async def assess(request: Request) -> Response:
    study = request.path_params["study"]
    decision = await _clinician_on(request, study)
    body = await json_body(request)
    result = await _run(_nodules(request).assess, study, body.get("guideline"), body.get("risk"))
    await audit(request, "measure", decision, study, detail={"nodule_assessment": True})
    return respond({"assessment": result})


async def track(request: Request) -> Response:
    study = request.path_params["study"]
    await _clinician_on(request, study)
    nodules = _nodules(request)
    await _run(nodules.retrack, study)
    return respond({"study_uid": study, "tracking": await _run(_tracking, nodules, study)}, 202)


async def fhir(request: Request) -> Response:
    from cloudfilm.services.nodules.reports import study_fhir_bundle
    study = request.path_params["study"]
    decision = await require_study(request, Permission.DOWNLOAD, study)
    bundle = await _run(study_fhir_bundle, _nodules(request), study)
    await audit(request, "download", decision, study, detail={"format": "fhir"})
    return JSONResponse(bundle, media_type="application/fhir+json",
                        headers={"Cache-Control": "no-store"})


async def _measurement_study(request: Request) -> tuple[int, str, Decision]:
    measurement_id = int_param(request.path_params["id"], "measurement id")
    require_user(request, CLINICIANS)
    try:
        row, _ = await run_in_threadpool(_nodules(request).get, measurement_id)
    except NotFound:
        raise HTTPException(404, f"measurement {measurement_id} not found") from None
    decision = await require_upload(request, row.study_uid, action="measure")
    return measurement_id, row.study_uid, decision


async def update_measurement(request: Request) -> Response:
    measurement_id, study, decision = await _measurement_study(request)
    body = await json_body(request)
    if "type" in body:
        body["nodule_type"] = body.pop("type")
    row = await _run(_nodules(request).update, measurement_id, body)
    await audit(request, "measure", decision, study, detail={"nodule_measurement": measurement_id})
    return respond({"measurement": measurement_dict(row)})


async def delete_measurement(request: Request) -> Response:
    measurement_id, study, decision = await _measurement_study(request)
    await _run(_nodules(request).remove, measurement_id)
    await audit(request, "delete", decision, study, detail={"nodule_measurement": measurement_id})
    return Response(status_code=204)


async def relink(request: Request) -> Response:
    measurement_id, study, decision = await _measurement_study(request)
    action = request.path_params["action"]
    nodules = _nodules(request)
    if action == "link":
        body = await json_body(request)
        await _run(nodules.link, measurement_id, int_param(body.get("nodule_id"), "nodule_id"))
    elif action == "confirm":
        await _run(nodules.confirm, measurement_id)
    elif action == "new":
        await _run(nodules.mark_new, measurement_id)
    elif action == "unlink":
        await _run(nodules.unlink, measurement_id)
    else:
        raise HTTPException(404, f"no action {action!r}")
    await audit(request, "measure", decision, study,
                detail={"nodule_measurement": measurement_id, "tracking": action})
    row, nodule = await _run(nodules.get, measurement_id)
    return respond({"measurement": measurement_dict(row, nodule.label if nodule else None),
                    "tracking": await _run(_tracking, nodules, study)})


async def person_nodules(request: Request) -> Response:
    """404 unless the caller may view at least one of the person's studies."""
    who = require_user(request, allow_share=True)
    person_id = int_param(request.path_params["id"], "person id")
    visible = await run_in_threadpool(PeopleService(archive_of(request)).timeline, who, person_id)
    if not visible:
        raise HTTPException(404, f"person {person_id} not found")
    data = await _run(_nodules(request).visible_trajectories, who, person_id)
    return respond({"person_id": person_id, "nodules": data})


routes = [
    Route("/studies/{study}/nodules", study_nodules, methods=["GET"]),
    Route("/studies/{study}/nodules", add_manual, methods=["POST"]),
    Route("/studies/{study}/nodules/measure", measure, methods=["POST"]),
    Route("/studies/{study}/nodules/assess", assess, methods=["POST"]),
    Route("/studies/{study}/nodules/track", track, methods=["POST"]),
    Route("/studies/{study}/nodules/fhir", fhir, methods=["GET"]),
    Route("/nodule-measurements/{id}", update_measurement, methods=["PATCH"]),
    Route("/nodule-measurements/{id}", delete_measurement, methods=["DELETE"]),
    Route("/nodule-measurements/{id}/{action}", relink, methods=["POST"]),
    Route("/persons/{id}/nodules", person_nodules, methods=["GET"]),
]
