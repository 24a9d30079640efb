"""Form posts of the study page's "Nodules" panel (clinicians who may write into the study).

Why forms and not only the JSON API: the portal works without JavaScript; each form
posts here, the change goes through `NoduleService` (which refreshes the guideline
result and the SR), and the browser returns to the panel.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from cloudfilm.api.access import audit, require_upload
from cloudfilm.api.authn import principal
from cloudfilm.domain.access import Decision
from cloudfilm.i18n import localizer
from cloudfilm.services.nodules.model import NoduleError, NotFound
from cloudfilm.services.nodules.service import NoduleService
from cloudfilm.web.nodule_views import is_clinician
from cloudfilm.web.pages import archive_of, bad_request, message_page, not_found


def _back(study: str) -> RedirectResponse:
    return RedirectResponse(f"/studies/{quote(study)}#nodules", status_code=303)


async def _allowed(request: Request, study: str) -> Decision | Response:
    """A clinician who may write into the study (the JSON API's rule), else the page a
    missing study gets, or "may not do this" when they may only look at it."""
    if not is_clinician(principal(request)):
        return not_found(request)
    try:
        return await require_upload(request, study, action="measure")
    except HTTPException as refused:
        if refused.status_code != 403:
            return not_found(request)
    loc = localizer(request)
    return message_page(request, 403, loc.gettext("This request cannot be answered"),
                        loc.gettext("Your account may not do this."),
                        ("/", loc.gettext("Back to the start page")))


async def _apply(request: Request, study: str, function: Any, *args: Any) -> Response:
    decision = await _allowed(request, study)
    if isinstance(decision, Response):
        return decision
    try:
        await run_in_threadpool(function, *args)
    except NoduleError as error:
        return bad_request(request, str(error))
    except NotFound:
        return not_found(request)
    await audit(request, "measure", decision, study, detail={"path": request.url.path})
    return _back(study)


def _measurement_in(service: NoduleService, study: str, raw: str) -> int:
    try:
        measurement_id = int(raw)
        row, _ = service.get(measurement_id)
    except (ValueError, NotFound):
        raise NotFound(f"measurement {raw}") from None
    if row.study_uid != study:
        raise NotFound(f"measurement {raw}")
    return measurement_id


async def tracking_action(request: Request) -> Response:
    study, action = request.path_params["study"], request.path_params["action"]
    service = NoduleService(archive_of(request))
    form = await request.form()

    def run() -> None:
        measurement_id = _measurement_in(service, study, request.path_params["id"])
        if action == "link":
            try:
                nodule_id = int(str(form.get("nodule_id", "")))
            except ValueError:
                raise NoduleError("choose the nodule to link to") from None
            service.link(measurement_id, nodule_id)
        elif action == "confirm":
            service.confirm(measurement_id)
        elif action == "new":
            service.mark_new(measurement_id)
        elif action == "unlink":
            service.unlink(measurement_id)
        elif action == "edit":
            solid = str(form.get("solid_component_mm") or "").strip()
            try:
                solid_value = float(solid) if solid else None
            except ValueError:
                raise NoduleError("the solid part must be a number of mm") from None
            kind = str(form.get("type") or "solid")
            service.update(measurement_id, {
                "nodule_type": kind,
                "solid_component_mm": solid_value if kind == "part-solid" else None,
                "lobe": str(form.get("lobe") or "") or None,
                "calcification": str(form.get("calcification") or "none"),
                "spiculated": form.get("spiculated") is not None,
                "juxtapleural": form.get("juxtapleural") is not None})
        else:
            raise NotFound(action)
    return await _apply(request, study, run)


async def assess(request: Request) -> Response:
    study = request.path_params["study"]
    form = await request.form()
    service = NoduleService(archive_of(request))
    guideline, risk = str(form.get("guideline") or "") or None, str(form.get("risk") or "") or None
    return await _apply(request, study, service.assess, study, guideline, risk)


routes: list[BaseRoute] = [
    Route("/studies/{study}/nodules/assess", assess, methods=["POST"]),
    Route("/studies/{study}/nodules/{id}/{action}", tracking_action, methods=["POST"]),
]
