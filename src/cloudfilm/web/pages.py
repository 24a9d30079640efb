"""The patient and physician portal: server-rendered pages in English and Chinese.

Why server-rendered: the pages must work on old phones, on slow networks and with screen
readers; every page is plain HTML with forms (small scripts only for upload progress).
Every page asks the same policy as the API (services/access/policy.py): a study or person the
caller may not see is "not found", exactly like a missing one. Forms post back here
and call the same services as the JSON API (sharing, caregivers); the authentication
middleware has already checked the session's CSRF token on every unsafe request.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from cloudfilm.api.access import audit_view, require_study
from cloudfilm.api.audit import ACTIONS
from cloudfilm.api.authn import client_ip, principal
from cloudfilm.api.urls import site_base
from cloudfilm.domain.access import Permission, Principal, Role, may_act_for
from cloudfilm.domain.clock import utcnow
from cloudfilm.i18n import N_, Localizer, localizer
from cloudfilm.services.access import portal
from cloudfilm.services.access.people import (
    CAREGIVER_ROLES,
    CaregiverService,
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    PeopleService,
    ServiceError,
    TimelineStudy,
    audit_entry,
)
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.access.sharing import ShareInfo, SharingService, parse_share_request
from cloudfilm.services.access.signup import SignupService
from cloudfilm.services.access.study_detail import StudyDetail, pdf_bytes, study_detail
from cloudfilm.services.context import Archive
from cloudfilm.services.notify.notifications import list_in_app, mark_read
from cloudfilm.web import downloads, labels, message_text, nodule_views, report_text
from cloudfilm.web.guides import guide
from cloudfilm.web.ohif import BASENAME, ohif_url
from cloudfilm.web.templating import STATIC_DIR, render

T = TypeVar("T")
PERSON_COOKIE = "cf_person"  # which patient a caregiver acts for
VALIDITY_DAYS = {"30": 30, "90": 90, "365": 365}
DONE_MESSAGES = {
    "created": N_("The share was created. Give the link or QR code to your doctor."),
    "renewed": N_("The share was renewed. The link and QR code stay the same."),
    "revoked": N_("The share was stopped. The link no longer works."),
    "invited": N_("The invitation was sent. It works once they accept it."),
    "withdrawn": N_("The invitation link was withdrawn and no longer works."),
    "removed": N_("The family helper was removed and can no longer see your images."),
    "accepted": N_("You accepted the invitation. You can now see their images."),
}


def archive_of(request: Request) -> Archive:
    return request.app.state.archive  # type: ignore[no-any-return]


async def thread(function: Callable[..., T], *args: Any) -> T:
    return await run_in_threadpool(function, *args)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def message_page(request: Request, status: int, heading: str, text: str = "",
                 link: tuple[str, str] | None = None, anonymous: bool = False) -> Response:
    """A page with one heading and one sentence (errors, "not found")."""
    return render(request, "message.html", {"title": heading, "heading": heading, "text": text,
                                            "link": link}, status=status, anonymous=anonymous)


def not_found(request: Request) -> Response:
    loc = localizer(request)
    return message_page(request, 404, loc.gettext("Not found"),
                        loc.gettext("This page does not exist, or you may not see it."),
                        ("/", loc.gettext("Back to the start page")))


def bad_request(request: Request, text: str) -> Response:
    loc = localizer(request)
    return message_page(request, 400, loc.gettext("This request cannot be answered"), text,
                        ("/", loc.gettext("Back to the start page")))


def parse_id(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit() or len(value.strip()) > 12:
        return None
    return int(value.strip())


def is_user(who: Principal, *roles: Role) -> bool:
    return who.kind == "user" and (not roles or who.role in roles)


def home_for(who: Principal) -> str:
    """Where each kind of caller starts."""
    if who.kind == "share":
        return "/shared"
    if who.role is Role.PHYSICIAN:
        return "/shared-with-me"
    if who.role in (Role.OPERATOR, Role.ADMIN):
        return "/admin"
    if who.role is Role.RESEARCHER:  # no identified page at all: only their exports
        return "/api/research/exports"
    return "/timeline"


async def home(request: Request) -> Response:
    """``/``: the right start page for the caller's role."""
    return redirect(home_for(principal(request)))


# -- view models ------------------------------------------------------------------------


def study_card(loc: Localizer, study: TimelineStudy | StudyDetail,
               href: str) -> dict[str, Any]:
    images = study.instances if isinstance(study, TimelineStudy) else \
        sum(s.images for s in study.series)
    return {
        "uid": study.study_uid, "href": href, "date": study.date,
        "date_text": loc.date(study.date), "hospital": study.hospital,
        "kind": labels.modalities(loc, list(study.modalities)) or loc.gettext("Images"),
        "description": study.description,
        "images": loc.ngettext("%(num)s image", "%(num)s images", images),
        "year": (study.date or "")[:4],
    }


def person_label(loc: Localizer, name: str, person_id: int) -> str:
    return name or loc.gettext("Person %(id)s", id=person_id)


# -- whose folder -----------------------------------------------------------------------


def chosen_person(request: Request, who: Principal) -> int | None:
    """The folder a patient or caregiver manages: ``?person=``, else their own, else the
    patient a caregiver picked (cookie) or cares for alone. None when it is not theirs."""
    raw = request.query_params.get("person")
    if raw is not None:
        wanted = parse_id(raw)
        return wanted if wanted is not None and may_act_for(who, wanted) else None
    if who.role is Role.PATIENT and who.own_person_id is not None:
        return who.own_person_id
    picked = parse_id(request.cookies.get(PERSON_COOKIE))
    if picked is not None and picked in who.acting_for:
        return picked
    if len(who.acting_for) == 1:
        return next(iter(who.acting_for))
    return None


async def share_person(request: Request, who: Principal) -> int | None:
    """The person a share session's grant is about (None for any other caller)."""
    scope = await thread(portal.share_scope, archive_of(request), who)
    return scope.person_id if scope is not None else None


async def share_grant_studies(request: Request, who: Principal) -> tuple[str, ...] | None:
    """The studies a share session's grant names (None: a timeline grant)."""
    scope = await thread(portal.share_scope, archive_of(request), who)
    return scope.study_uids if scope is not None else None


async def _audited_timeline(request: Request, who: Principal,
                            person_id: int) -> list[TimelineStudy] | None:
    """The person's studies as ``who`` may see them; None when ``who`` may see nothing of
    them (no person, or a physician or link without a live grant). Audited like the API."""
    archive = archive_of(request)
    if not await thread(portal.person_exists, archive, person_id):
        return None
    manages = who.unrestricted or (who.kind == "user" and may_act_for(who, person_id))
    studies = await thread(PeopleService(archive).timeline, who, person_id)
    if not studies and not manages:
        return None
    if who.own_person_id != person_id:
        await thread(archive.audit.record, audit_entry(
            who, "query", person_id=person_id, source=client_ip(request),
            detail={"what": "timeline", "studies": len(studies)}))
    return studies


# -- timeline, case folder ----------------------------------------------------------------


async def timeline(request: Request) -> Response:
    """All of a person's studies, newest first, grouped by year."""
    who = principal(request)
    if who.kind == "share":
        return await render_timeline(request, who, await share_person(request, who),
                                     shared=True)
    if not is_user(who):
        return not_found(request)
    raw = request.query_params.get("person")
    if raw is not None:
        person_id = parse_id(raw)
        if person_id is None:
            return not_found(request)
    elif who.role in (Role.PATIENT, Role.CAREGIVER):
        person_id = chosen_person(request, who)
        if person_id is None:
            return redirect("/caregivers")
    else:
        return redirect(home_for(who))
    return await render_timeline(request, who, person_id)


async def render_timeline(request: Request, who: Principal, person_id: int | None, *,
                          shared: bool = False) -> Response:
    """The timeline page (also what a timeline share link lands on)."""
    if person_id is None:
        return not_found(request)
    studies = await _audited_timeline(request, who, person_id)
    if studies is None or (shared and not studies):
        return not_found(request)
    loc = localizer(request)
    name = await thread(portal.person_name, archive_of(request), person_id)
    own = who.own_person_id == person_id
    cards = [study_card(loc, s, f"/studies/{quote(s.study_uid)}") for s in studies]
    hospitals = sorted({s.hospital for s in studies if s.hospital})
    manages = who.kind == "user" and may_act_for(who, person_id)
    return render(request, "timeline.html", {
        "title": loc.gettext("My images") if own else loc.gettext(
            "Images of %(name)s", name=person_label(loc, name, person_id)),
        "own": own, "cards": cards, "hospitals": hospitals, "person_id": person_id,
        "manages": manages, "shared": shared, "guide": guide("shared" if shared else "timeline",
                                                             loc),
        "caring_for_many": who.role is Role.CAREGIVER and len(who.acting_for) > 1,
    }, active="shared" if shared else "timeline")


async def case_folder(request: Request) -> Response:
    """One person's folder: studies, reports, documents, nodule growth charts and tracking."""
    who = principal(request)
    person_id = parse_id(request.path_params["person_id"])
    if person_id is None or who.kind not in ("user", "share"):
        return not_found(request)
    if who.kind == "share" and await share_person(request, who) != person_id:
        return not_found(request)
    studies = await _audited_timeline(request, who, person_id)
    if studies is None:
        return not_found(request)
    archive, loc = archive_of(request), localizer(request)
    name = await thread(portal.person_name, archive, person_id)
    details = [d for d in [await thread(study_detail, archive, s.study_uid)
                           for s in studies if s.documents] if d is not None]
    reports, photos = [], []
    for detail in details:
        photos += [{"doc": doc, "date_text": loc.date(detail.date),
                    "kind": labels.translate(loc, labels.DOCUMENT_KINDS, doc.kind)}
                   for doc in detail.documents if doc.kind == "secondary-capture"]
        for entry in report_text.report_entries(loc, who, detail.study_uid,
                                                   detail.documents):
            reports.append(entry | {
                "date_text": loc.date(detail.date), "hospital": detail.hospital,
                "study_href": f"/studies/{quote(detail.study_uid)}",
                "kind": labels.translate(loc, labels.DOCUMENT_KINDS, entry["doc"].kind)})
    manages = who.kind == "user" and may_act_for(who, person_id)
    records = await thread(PeopleService(archive).records, person_id) if (
        manages or who.unrestricted) else []
    return render(request, "folder.html", {
        "title": loc.gettext("Case folder of %(name)s", name=person_label(loc, name, person_id)),
        "person_id": person_id, "cards": [study_card(loc, s, f"/studies/{quote(s.study_uid)}")
                                          for s in studies],
        "reports": reports, "photos": photos, "records": records, "manages": manages,
        "download": await thread(downloads.folder_download, archive, loc, who, person_id),
        "guide": guide("folder", loc),
        "tracking": await thread(nodule_views.folder_trajectories, archive, loc, who, person_id),
    }, active="timeline")


# -- one study ----------------------------------------------------------------------------


async def study_page(request: Request) -> Response:
    return await render_study(request, request.path_params["study"])


async def render_study(request: Request, study_uid: str) -> Response:
    """A study: series pictures, the report, open viewer / compare / OHIF; 404 if hidden."""
    who = principal(request)
    try:
        decision = await require_study(request, Permission.VIEW, study_uid)
    except HTTPException:
        return not_found(request)
    archive, loc = archive_of(request), localizer(request)
    detail = await thread(study_detail, archive, study_uid)
    if detail is None:
        return not_found(request)
    await audit_view(request, decision, study_uid)
    prior = await thread(portal.prior_study, archive, who, study_uid)
    prior_detail = await thread(study_detail, archive, prior) if prior else None
    person_id = detail.person_id
    manages = person_id is not None and who.kind == "user" and may_act_for(who, person_id)
    clinician = nodule_views.is_clinician(who)
    uid = quote(study_uid)
    series = [{"info": s, "thumb": f"/dicomweb/studies/{uid}/series/{quote(s.series_uid)}"
                                   f"/thumbnail?viewport=192,192",
               "label": labels.modality(loc, s.modality),
               "images": loc.ngettext("%(num)s image", "%(num)s images", s.images)}
              for s in detail.series if clinician or not s.ai_result]
    single_share = who.kind == "share" and len(
        await share_grant_studies(request, who) or ()) == 1
    back = None if single_share else "/shared" if who.kind == "share" else (
        f"/timeline?person={person_id}" if person_id is not None and (manages or
                                                                      who.role is Role.PHYSICIAN
                                                                      or who.unrestricted)
        else "/")
    whose = ""  # a family helper always sees whose folder this is
    if manages and person_id is not None and person_id != who.own_person_id:
        whose = person_label(loc, await thread(portal.person_name, archive, person_id), person_id)
    film = await thread(SignupService(archive).film_of_link, who) if who.kind == "share" \
        else None  # issue 12: a film's link offers to keep the film
    return render(request, "study.html", {
        "title": f"{loc.date(detail.date)} · {labels.modalities(loc, detail.modalities)}",
        "card": study_card(loc, detail, f"/studies/{uid}"), "detail": detail, "series": series,
        "reports": report_text.report_entries(loc, who, study_uid, detail.documents),
        "download": await thread(downloads.study_download, archive, loc, who, study_uid),
        "photos": [d for d in detail.documents if d.kind == "secondary-capture"],
        "viewer_url": f"/view/{uid}",
        "compare_url": f"/view/{uid}/compare/{quote(prior)}" if prior else None,
        "prior_text": (loc.date(prior_detail.date) + (f" · {prior_detail.hospital}"
                                                      if prior_detail.hospital else ""))
        if prior_detail else "",
        "ohif_url": ohif_url(study_uid, prior) if clinician else None,
        "share_url": f"/share?{urlencode({'person': person_id, 'study': study_uid})}"
        if manages else None,
        "folder_url": f"/patients/{person_id}" if person_id is not None and who.kind == "user"
        else None,
        "whose": whose, "keep_url": "/keep" if film else None,
        "back_url": back, "glossary": labels.glossary(loc, detail.modalities),
        "guide": guide("study", loc), "study_uid": study_uid,
        "nodules": await thread(nodule_views.study_panel, archive, loc, who, study_uid, person_id),
        # Clinicians get the record's identity and the guideline's wording, not the
        # patient's plain-language text.
        "patient_header": await thread(nodule_views.clinician_header, archive, loc, who,
                                       study_uid, detail.hospital),
        "explanation": None if clinician else await thread(
            nodule_views.study_explanation, archive, loc, study_uid),
    }, active="shared" if who.kind == "share" else "timeline")


async def study_document(request: Request) -> Response:
    """An Encapsulated PDF as a PDF the phone can open (VIEW needed; audited as a view)."""
    study = request.path_params["study"]
    try:
        decision = await require_study(request, Permission.VIEW, study)
    except HTTPException:
        return not_found(request)
    body = await thread(pdf_bytes, archive_of(request), study,
                        request.path_params["series"], request.path_params["sop"])
    if body is None:
        return not_found(request)
    await audit_view(request, decision, study)
    return Response(body, media_type="application/pdf", headers={
        "Content-Disposition": 'inline; filename="document.pdf"', "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"})


# -- sharing ------------------------------------------------------------------------------


def _validity(choice: str, today: date) -> date | str | None:
    """The form's "how long" choice → an end date, None (no end), or "" when invalid."""
    if choice == "none":
        return None
    days = VALIDITY_DAYS.get(choice)
    return today + timedelta(days=days) if days else ""


def _share_view(loc: Localizer, info: ShareInfo, studies: dict[str, TimelineStudy],
                base: str, highlight: int | None) -> dict[str, Any]:
    scope = info.scope
    if "studies" in scope:
        named = [studies[u] for u in scope["studies"] if u in studies]
        what = loc.ngettext("%(num)s scan", "%(num)s scans", len(scope["studies"]))
        items = [f"{loc.date(s.date)} · {s.hospital}".strip(" ·") for s in named]
    elif scope.get("include_future"):
        what, items = loc.gettext("All scans, also future ones"), []
    else:
        what, items = loc.gettext("All scans up to the day it was made"), []
    if info.audience == "physician":
        who = loc.gettext("Doctor %(name)s", name=info.physician or "?")
    elif info.has_pin:
        who = loc.gettext("Anyone with the link and the PIN")
    else:
        who = loc.gettext("Anyone with the link")
    return {
        "id": info.id, "what": what, "listed": items, "who": who, "status": info.status,
        "status_text": labels.translate(loc, labels.SHARE_STATUS, info.status),
        "until": loc.date(info.valid_until) if info.valid_until else loc.gettext("No end date"),
        "opens": loc.ngettext("Opened %(num)s time", "Opened %(num)s times", info.open_count),
        "url": f"{base}{info.link_path}" if info.link_path else None,
        "download": "download" in info.permissions, "write": "upload" in info.permissions,
        "new": info.id == highlight,
        "active": info.status == "active", "revoked": info.status == "revoked",
    }


def _access_view(loc: Localizer, record: Any, studies: dict[str, TimelineStudy],
                 names: dict[int, str]) -> dict[str, Any]:
    entry = record.entry
    if entry.actor.startswith("share-link:"):
        actor = loc.gettext("Someone with share link #%(id)s", id=entry.actor.split(":", 1)[1])
    else:
        role = labels.translate(loc, labels.ROLES, entry.actor_role) if entry.actor_role else ""
        actor = f"{entry.actor} ({role})" if role else entry.actor
    study = studies.get(entry.study_uid or "")
    return {"when": loc.datetime(record.at) + " UTC", "when_iso": record.at.isoformat(),
            "actor": actor,
            "what": labels.translate(loc, ACTIONS, entry.action),
            "study": f"{loc.date(study.date)} · {study.hospital}".strip(" ·") if study else "",
            "failed": entry.outcome != "success", "source": entry.source,
            "for": names.get(entry.person_id or -1, "")}


def managed_folder(request: Request, who: Principal) -> int | Response:
    """Whose folder a patient, caregiver or admin is managing (?person=ID), or the page to
    show instead: caregivers without a choice go to /caregivers, anyone else gets 404."""
    if not is_user(who, Role.PATIENT, Role.CAREGIVER, Role.ADMIN):
        return not_found(request)
    person_id = chosen_person(request, who) if "person" in request.query_params or \
        who.role is not Role.ADMIN else None
    if person_id is None:
        if who.role is Role.CAREGIVER and "person" not in request.query_params:
            return redirect("/caregivers")
        return not_found(request)
    return person_id


async def share_page(request: Request) -> Response:
    """The owner's shares (QR code, card, renew, stop), a form for a new one, and who looked."""
    who = principal(request)
    folder = managed_folder(request, who)
    if isinstance(folder, Response):
        return folder
    return await render_share(request, who, folder)


async def render_share(request: Request, who: Principal, person_id: int, *, status: int = 200,
                       error: str = "", form: dict[str, Any] | None = None) -> Response:
    archive, loc = archive_of(request), localizer(request)
    studies = await thread(PeopleService(archive).timeline, who, person_id)
    by_uid = {s.study_uid: s for s in studies}
    shares = [s for s in await thread(SharingService(archive).list, who)
              if s.person_id == person_id]
    base = site_base(request)
    highlight = parse_id(request.query_params.get("new"))
    log = await thread(portal.access_log, archive, {person_id})
    name = await thread(portal.person_name, archive, person_id)
    done = request.query_params.get("done", "")
    preselected = request.query_params.get("study") if form is None else None
    return render(request, "share.html", {
        "title": loc.gettext("Share my images") if who.own_person_id == person_id else
        loc.gettext("Share the images of %(name)s", name=person_label(loc, name, person_id)),
        "person_id": person_id,
        "shares": [_share_view(loc, s, by_uid, base, highlight) for s in shares],
        "cards": [study_card(loc, s, f"/studies/{quote(s.study_uid)}") for s in studies],
        "log": [_access_view(loc, r, by_uid, {}) for r in log
                if r.entry.actor != who.username][:50],
        "done": loc.gettext(DONE_MESSAGES[done]) if done in DONE_MESSAGES else "",
        "error": error, "form": form or {
            "scope": "studies", "audience": "link+pin", "valid": "90",
            "studies": [preselected] if preselected else [s.study_uid for s in studies[:1]]},
        "guide": guide("share", loc),
    }, status=status, active="share")


def _share_body(form: Any, person_id: int, today: date) -> tuple[dict[str, Any] | None, str]:
    """The JSON body of POST /api/shares from the page's form, or a message id saying why not."""
    scope = str(form.get("scope", "studies"))
    uids = [str(u) for u in form.getlist("study") if str(u)]
    if scope == "studies" and not uids:
        return None, N_("Tick at least one scan to share.")
    audience, pin = str(form.get("audience", "link+pin")), str(form.get("pin", "")).strip()
    body: dict[str, Any] = {
        "scope": {"studies": uids, "patient": person_id} if scope == "studies"
        else {"patient": person_id, "include_future": True},
        "permissions": ["view"] + (["download"] if form.get("download") else [])
        + (["upload"] if form.get("write") else []),
    }
    if audience == "link+pin":
        if not (pin.isdigit() and 6 <= len(pin) <= 12):
            return None, N_("The PIN must be 6 to 12 digits.")
        body |= {"audience": "link+pin", "pin": pin}
    elif audience == "physician":
        doctor = str(form.get("physician", "")).strip().lower()
        if not doctor:
            return None, N_("Type the doctor's username.")
        body["audience"] = {"physician": doctor}
    else:
        body["audience"] = "link"
    until = _validity(str(form.get("valid", "90")), today)
    if until == "":
        return None, N_("Choose how long the share should last.")
    body["valid_until"] = until.isoformat() if isinstance(until, date) else None
    return body, ""


def _service_message(loc: Localizer, exc: ServiceError, **names: str) -> str:
    """A service refusal in the page's language (the service speaks English)."""
    text = str(exc)
    if "not a physician" in text:
        return loc.gettext("There is no doctor with the username %(name)s.",
                           name=names.get("doctor", ""))
    if isinstance(exc, NotFound) and "no user named" in text:
        return loc.gettext("There is no account with the username %(name)s.",
                           name=names.get("user", ""))
    if isinstance(exc, Conflict) and "already this patient's family helper" in text:
        return loc.gettext("You are already their family helper.")
    if isinstance(exc, Conflict) and "already a caregiver" in text:
        return loc.gettext("%(name)s is already your family helper.", name=names.get("user", ""))
    if isinstance(exc, Invalid) and "own caregiver" in text:
        return loc.gettext("You cannot invite yourself.")
    if isinstance(exc, Forbidden):
        return loc.gettext("Your account may not do this.")
    return loc.gettext("This did not work: %(reason)s", reason=text)


async def share_create(request: Request) -> Response:
    who = principal(request)
    form = await request.form()
    person_id = parse_id(str(form.get("person", "")))
    if not is_user(who) or person_id is None or not may_act_for(who, person_id):
        return not_found(request)
    loc = localizer(request)
    kept = {"scope": form.get("scope"), "audience": form.get("audience"),
            "valid": form.get("valid"), "studies": form.getlist("study"),
            "physician": form.get("physician", ""), "download": bool(form.get("download")),
            "write": bool(form.get("write"))}
    body, problem = _share_body(form, person_id, utcnow().date())
    if body is None:
        return await render_share(request, who, person_id, status=400,
                                  error=loc.gettext(problem), form=kept)
    sharing = SharingService(archive_of(request))
    try:
        share = await thread(lambda: sharing.create(who, parse_share_request(
            body, utcnow().date())))
    except ServiceError as exc:
        doctor = str(form.get("physician", ""))
        return await render_share(request, who, person_id, status=400, form=kept,
                                  error=_service_message(loc, exc, doctor=doctor))
    return redirect(f"/share?{urlencode({'person': person_id, 'done': 'created', 'new': share.id})}"
                    f"#share-{share.id}")


async def _owned_share(request: Request) -> tuple[Principal, int, ShareInfo] | None:
    who = principal(request)
    share_id = parse_id(request.path_params["id"])
    if not is_user(who) or share_id is None:
        return None
    try:
        share = await thread(SharingService(archive_of(request)).get, who, share_id)
    except ServiceError:
        return None
    return who, share_id, share


async def share_renew(request: Request) -> Response:
    owned = await _owned_share(request)
    if owned is None:
        return not_found(request)
    who, share_id, share = owned
    form = await request.form()
    until = _validity(str(form.get("valid", "90")), utcnow().date())
    loc = localizer(request)
    if until == "":
        return bad_request(request, loc.gettext("Choose how long the share should last."))
    try:
        await thread(SharingService(archive_of(request)).renew, who, share_id, until)
    except ServiceError as exc:
        return message_page(request, exc.status, loc.gettext("The share was not renewed"),
                            _service_message(loc, exc), (f"/share?person={share.person_id}",
                                                         loc.gettext("Back to sharing")))
    return redirect(f"/share?person={share.person_id}&done=renewed#share-{share_id}")


async def share_revoke(request: Request) -> Response:
    owned = await _owned_share(request)
    if owned is None:
        return not_found(request)
    who, share_id, share = owned
    await thread(SharingService(archive_of(request)).revoke, who, share_id)
    return redirect(f"/share?person={share.person_id}&done=revoked#share-{share_id}")


# -- caregivers ---------------------------------------------------------------------------


async def caregivers_page(request: Request, *, status: int = 200, error: str = "",
                          invite_url: str = "") -> Response:
    """A patient's family helpers (invite, remove); a helper's invitations and patients."""
    who = principal(request)
    if not is_user(who, Role.PATIENT, Role.CAREGIVER):
        return not_found(request)
    archive, loc = archive_of(request), localizer(request)
    service = CaregiverService(archive)
    mine = await thread(service.for_person, who.own_person_id) \
        if who.role is Role.PATIENT and who.own_person_id is not None else []
    caring = await thread(service.caring_for, who)
    names = {c.person_id: person_label(loc, c.person_name, c.person_id) for c in caring}
    current = chosen_person(request, who) if who.acting_for else None
    done = request.query_params.get("done", "")
    return render(request, "caregivers.html", {
        "title": loc.gettext("Family helpers"), "is_patient": who.role is Role.PATIENT,
        "mine": [{"link": c, "status": labels.translate(loc, labels.CAREGIVER_STATUS, c.status)}
                 for c in mine],
        "invitations": [c for c in caring if c.status == "invited"],
        "patients": [{"link": c, "name": names[c.person_id], "current": c.person_id == current}
                     for c in caring if c.status == "active"],
        "done": loc.gettext(DONE_MESSAGES[done]) if done in DONE_MESSAGES else "",
        "error": error, "invite_url": invite_url, "guide": guide("caregivers", loc),
    }, status=status, active="caregivers")


async def caregiver_invite(request: Request) -> Response:
    """A new invitation link, shown once on the page (it names nobody; issue 11)."""
    who = principal(request)
    if not is_user(who, Role.PATIENT):
        return not_found(request)
    try:
        invitation = await thread(CaregiverService(archive_of(request)).invite, who)
    except ServiceError as exc:
        return await caregivers_page(request, status=400,
                                     error=_service_message(localizer(request), exc))
    response = await caregivers_page(request, invite_url=site_base(request) + invitation.path)
    response.headers["Cache-Control"] = "no-store"
    return response


async def caregiver_withdraw(request: Request) -> Response:
    who = principal(request)
    invite_id = parse_id(request.path_params["invite_id"])
    if not is_user(who, Role.PATIENT) or invite_id is None:
        return not_found(request)
    try:
        await thread(CaregiverService(archive_of(request)).withdraw, who, invite_id)
    except ServiceError:
        return not_found(request)
    return redirect("/caregivers?done=withdrawn")


async def caregiver_join(request: Request) -> Response:
    """An invitation link: who asks, and a button to accept (POST to the same URL)."""
    who, loc = principal(request), localizer(request)
    secret = request.path_params["secret"]
    if who.kind == "share":
        return not_found(request)
    if is_user(who) and who.role not in CAREGIVER_ROLES:
        return message_page(request, 403, loc.gettext("Staff accounts cannot be family helpers"),
                            loc.gettext("Open this link signed in to your own personal account."))
    try:
        name = await thread(CaregiverService(archive_of(request)).invitation_person, secret)
    except ServiceError:
        return message_page(request, 404, loc.gettext("This invitation is not available"),
                            loc.gettext("It may have been used, withdrawn or be older than 14 "
                                        "days. Ask for a new one."))
    signed_out = not is_user(who)  # issue 12: a new helper signs up (or in) from here
    response = render(request, "caregiver_join.html", {
        "title": loc.gettext("Become a family helper"), "name": name or loc.gettext("A patient"),
        "action": f"/caregivers/join/{quote(secret)}", "signed_out": signed_out,
        "signup_url": "/signup?" + urlencode({"invite": secret}),
        "login_url": "/login?" + urlencode({"next": f"/caregivers/join/{secret}"}),
    }, active="caregivers", anonymous=signed_out)
    response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    return response


async def caregiver_join_accept(request: Request) -> Response:
    who = principal(request)
    if not is_user(who):
        return not_found(request)
    try:
        link = await thread(CaregiverService(archive_of(request)).join, who,
                            request.path_params["secret"])
    except ServiceError as exc:
        loc = localizer(request)
        return message_page(request, exc.status, loc.gettext("The invitation was not accepted"),
                            _service_message(loc, exc),
                            ("/caregivers", loc.gettext("Back to family helpers")))
    response = redirect("/caregivers?done=accepted")
    if len(who.acting_for) == 0:
        response.set_cookie(PERSON_COOKIE, str(link.person_id), path="/", samesite="lax",
                            httponly=True)
    return response


async def caregiver_remove(request: Request) -> Response:
    who = principal(request)
    user_id = parse_id(request.path_params["user_id"])
    if not is_user(who, Role.PATIENT) or user_id is None:
        return not_found(request)
    try:
        await thread(CaregiverService(archive_of(request)).remove, who, user_id)
    except ServiceError:
        return not_found(request)
    return redirect("/caregivers?done=removed")


async def caregiver_accept(request: Request) -> Response:
    who = principal(request)
    invite_id = parse_id(request.path_params["invite_id"])
    if not is_user(who) or invite_id is None:
        return not_found(request)
    try:
        link = await thread(CaregiverService(archive_of(request)).accept, who, invite_id)
    except ServiceError:
        return not_found(request)
    response = redirect("/caregivers?done=accepted")
    if len(who.acting_for) == 0:
        response.set_cookie(PERSON_COOKIE, str(link.person_id), path="/", samesite="lax",
                            httponly=True)
    return response


async def caregiver_act(request: Request) -> Response:
    """A helper picks which patient to act for: remembered in a cookie, then their images."""
    who = principal(request)
    person_id = parse_id(str((await request.form()).get("person", "")))
    if not is_user(who) or person_id is None or person_id not in who.acting_for:
        return not_found(request)
    response = redirect(f"/timeline?person={person_id}")
    response.set_cookie(PERSON_COOKIE, str(person_id), path="/", samesite="lax", httponly=True)
    return response


# -- upload -------------------------------------------------------------------------------


async def upload_page(request: Request) -> Response:
    """Upload a zip, a CD/USB folder, or a PDF/photo (the script posts to the JSON API)."""
    who = principal(request)
    folder = managed_folder(request, who)
    if isinstance(folder, Response):
        return folder
    person_id = folder
    archive, loc = archive_of(request), localizer(request)
    studies = await thread(PeopleService(archive).timeline, who, person_id)
    name = await thread(portal.person_name, archive, person_id)
    strings = {key: loc.gettext(text) for key, text in UPLOAD_STRINGS.items()} | {
        f"group_{form}": loc.ngettext("%(num)s image: %(reason)s", "%(num)s images: %(reason)s",
                                      number, num="%(num)s", reason="%(reason)s")
        for form, number in (("one", 1), ("many", 2))}
    return render(request, "upload.html", {
        "title": loc.gettext("Upload images and documents"), "person_id": person_id,
        "name": person_label(loc, name, person_id), "own": who.own_person_id == person_id,
        "cards": [study_card(loc, s, f"/studies/{quote(s.study_uid)}") for s in studies],
        "strings": strings, "guide": guide("upload", loc),
    }, active="upload")


UPLOAD_STRINGS = {
    "choose": N_("Choose a zip file, a folder or a document first."),
    "sending": N_("Sending… %(done)s of %(total)s"),
    "processing": N_("Sent. The archive is checking the files…"),
    "finished": N_("Finished."),
    "stored": N_("stored"), "duplicate": N_("already there"), "failed": N_("failed"),
    "skipped": N_("skipped (not an image)"),
    "summary": N_("Stored: %(stored)s · Already there: %(duplicate)s · Failed: %(failed)s"),
    "network": N_("The connection was lost. Please try again."),
    "login": N_("You were signed out. Please sign in again and retry."),
    "too_large": N_("This is too large to upload at once."),
    "error": N_("The upload did not work: %(reason)s"),
    "document_done": N_("The document was added to the scan."),
    "pick_study": N_("Choose the scan the document belongs to."),
}


# -- physicians, administrators ----------------------------------------------------------


async def shared_with_me(request: Request) -> Response:
    """Patients whose shares name this physician, with the studies those shares cover."""
    who = principal(request)
    if not is_user(who, Role.PHYSICIAN):
        return not_found(request)
    archive, loc = archive_of(request), localizer(request)
    people = await thread(portal.shared_with_physician, archive, who)
    return render(request, "shared_with_me.html", {
        "title": loc.gettext("Patients shared with me"),
        "people": [{"id": p.person_id, "name": person_label(loc, p.name, p.person_id),
                    "until": loc.gettext("No end date") if p.forever or p.valid_until is None
                    else loc.date(p.valid_until),
                    "cards": [study_card(loc, s, f"/studies/{quote(s.study_uid)}")
                              for s in p.studies]} for p in people],
        "guide": guide("shared-with-me", loc),
    }, active="shared-with-me")


async def admin_home(request: Request) -> Response:
    who = principal(request)
    if not is_user(who, Role.ADMIN, Role.OPERATOR):
        return not_found(request)
    loc = localizer(request)
    return render(request, "admin.html", {
        "title": loc.gettext("Administration"), "is_admin": who.role is Role.ADMIN,
        "ohif_home": f"{BASENAME}/",
        "guide": guide("admin", loc),
    }, active="admin")


# -- IHE Invoke Image Display ----------------------------------------------------------------


async def messages_page(request: Request) -> Response:
    """The signed-in user's in-app messages (follow-up reminders, shares about to end, ...)."""
    who = principal(request)
    if who.kind != "user" or who.user_id is None:
        return not_found(request)
    loc = localizer(request)
    items = [_in_reader_language(loc, item)
             for item in await thread(list_in_app, archive_of(request).index, who.user_id)]
    return render(request, "messages.html", {"title": loc.gettext("Messages"), "items": items},
                  active="messages")


def _in_reader_language(loc: Localizer, item: dict[str, Any]) -> dict[str, Any]:
    """A queued message's texts in the reader's language (web/message_text.py)."""
    return item | {"subject": message_text.in_reader_language(loc, item["subject"]),
                   "body": message_text.in_reader_language(loc, item["body"])}


async def message_read(request: Request) -> Response:
    who = principal(request)
    notification_id = parse_id(request.path_params["id"])
    if who.kind != "user" or who.user_id is None or notification_id is None:
        return not_found(request)
    if await thread(mark_read, archive_of(request).index, who.user_id, notification_id) is None:
        return not_found(request)
    return redirect("/messages")


async def invoke_image_display(request: Request) -> Response:
    """IHE IID: ``requestType=STUDY&studyUID=`` opens the viewer; ``requestType=PATIENT&
    patientID=`` (``issuerOfPatientID``) the person's timeline. Hidden is not found."""
    who = principal(request)
    params, loc = request.query_params, localizer(request)
    kind = (params.get("requestType") or "").upper()
    if kind == "STUDY":
        uids = [u.strip() for u in (params.get("studyUID") or "").split(",") if u.strip()]
        if not uids:
            return bad_request(request, loc.gettext("studyUID is missing."))
        decisions = await thread(Policy(archive_of(request)).check_many, who, Permission.VIEW,
                                 uids)
        if not all(d.allowed for d in decisions.values()):
            return not_found(request)
        target = f"/view/{quote(uids[0], safe='')}"
        return redirect(target + (f"/compare/{quote(uids[1], safe='')}" if len(uids) > 1
                                  else ""))
    if kind == "PATIENT":
        patient_id = (params.get("patientID") or "").strip()
        if not patient_id:
            return bad_request(request, loc.gettext("patientID is missing."))
        persons = await thread(portal.persons_for_record, archive_of(request), patient_id,
                               params.get("issuerOfPatientID"))
        visible = []
        for person_id in persons:
            manages = who.unrestricted or (who.kind == "user" and may_act_for(who, person_id))
            studies = [] if manages else await thread(
                PeopleService(archive_of(request)).timeline, who, person_id)
            if manages or studies:
                visible.append(person_id)
        if not visible:
            return not_found(request)
        if len(visible) > 1:
            return bad_request(request, loc.gettext(
                "This patient ID is used by more than one hospital; add issuerOfPatientID."))
        if who.kind == "share":
            return redirect("/shared")
        return redirect(f"/timeline?person={visible[0]}")
    return bad_request(request, loc.gettext("requestType must be STUDY or PATIENT."))


routes: list[BaseRoute] = [
    Route("/", home, methods=["GET"]),
    Route("/timeline", timeline, methods=["GET"]),
    Route("/patients/{person_id}", case_folder, methods=["GET"]),
    Route("/studies/{study}", study_page, methods=["GET"]),
    Route("/studies/{study}/documents/{series}/{sop}", study_document, methods=["GET"]),
    Route("/share", share_page, methods=["GET"]),
    Route("/share", share_create, methods=["POST"]),
    Route("/share/{id}/renew", share_renew, methods=["POST"]),
    Route("/share/{id}/revoke", share_revoke, methods=["POST"]),
    Route("/caregivers", caregivers_page, methods=["GET"]),
    Route("/caregivers/invite", caregiver_invite, methods=["POST"]),
    Route("/caregivers/act", caregiver_act, methods=["POST"]),
    Route("/caregivers/{user_id}/remove", caregiver_remove, methods=["POST"]),
    Route("/caregivers/invitations/{invite_id}/accept", caregiver_accept, methods=["POST"]),
    Route("/caregivers/invitations/{invite_id}/withdraw", caregiver_withdraw, methods=["POST"]),
    Route("/caregivers/join/{secret}", caregiver_join, methods=["GET"]),
    Route("/caregivers/join/{secret}", caregiver_join_accept, methods=["POST"]),
    Route("/upload", upload_page, methods=["GET"]),
    Route("/shared-with-me", shared_with_me, methods=["GET"]),
    Route("/admin", admin_home, methods=["GET"]),
    Route("/IHEInvokeImageDisplay", invoke_image_display, methods=["GET"]),
    Route("/messages", messages_page, methods=["GET"]),
    Route("/messages/{id}/read", message_read, methods=["POST"]),
    Mount("/static/portal", app=StaticFiles(directory=str(STATIC_DIR)), name="portal-static"),
]
