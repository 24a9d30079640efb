"""Pages to keep a cloud film for life (issue 12): sign up, keep, claim.

- ``/keep`` (from the film's study page, or ``?film=URL``): signed in, one confirmation
  with the birth date; not signed in, the sign-up page.
- ``/signup`` (``?film=``, ``?invite=SECRET`` for a family helper, else with a claim
  code): name, login (phone or e-mail), password and, for a patient, the birth date.
  Protected like the login form (pre-session CSRF token, web/login_pages.py).
- ``/claim``: a signed-in patient types the printed claim code; not signed in, the
  sign-up page with the claim code field.
Service reasons are English; the visitor reads them here, in their language.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import client_ip, principal
from cloudfilm.api.signup import start_session
from cloudfilm.domain.access import Principal, Role, may_act_for
from cloudfilm.i18n import N_, localizer
from cloudfilm.services.access import signup as reasons
from cloudfilm.services.access.accounts import MIN_PASSWORD
from cloudfilm.services.access.films import FilmService
from cloudfilm.services.access.people import (
    CAREGIVER_ROLES,
    RECORD_HELD,
    CaregiverService,
    PeopleService,
    ServiceError,
    TooManyAttempts,
)
from cloudfilm.services.access.signup import NewAccount, SignedUp, SignupService
from cloudfilm.web.login_pages import presession_csrf, presession_csrf_ok, set_presession_cookie
from cloudfilm.web.templating import render

PERSON_COOKIE = "cf_person"  # as web/pages.py: the patient a family helper acts for
REASONS = {
    reasons.FILM_UNKNOWN: N_("This cloud film link does not work any more. Please ask the "
                             "hospital for a new one."),
    reasons.CODE_UNKNOWN: N_("This code does not work. Check it, or ask the hospital for a "
                             "new one."),
    reasons.BIRTH_WRONG: N_("The birth date does not match the hospital's record. Check it "
                            "and try again."),
    reasons.BIRTH_MISSING: N_("The hospital's record has no birth date to check. Please ask "
                              "the hospital for help."),
    reasons.USERNAME_TAKEN: N_("This login is already taken. Choose another one, or sign in."),
    reasons.NO_POSSESSION: N_("Please type the claim code from the hospital."),
    RECORD_HELD: N_("These images are already in another person's account. If they are "
                    "yours, please ask the hospital."),
    reasons.BAD_LOGIN: N_("Your login must be a phone number or an e-mail address."),
    reasons.BAD_BIRTH_DATE: N_("Please give the birth date as year-month-day, for example "
                               "1960-01-31."),
    reasons.BAD_NAME: N_("Please give your name."),
    "this invitation is unknown, used or expired": N_(
        "This invitation is not available. Please ask for a new one."),
    "a patient cannot be their own caregiver": N_("You cannot be your own family helper."),
}
TOO_MANY = N_("Too many wrong tries. Please wait 15 minutes and try again.")
SHORT_PASSWORD = N_("The password needs at least %(num)s characters.")


def reason_text(request: Request, exc: ServiceError) -> str:
    loc = localizer(request)
    if isinstance(exc, TooManyAttempts):
        return loc.gettext(TOO_MANY)
    if str(exc).startswith("the password needs"):
        return loc.gettext(SHORT_PASSWORD, num=MIN_PASSWORD)
    known = REASONS.get(str(exc))
    return loc.gettext(known) if known else loc.gettext("This did not work. Please try again.")


def archive_of(request: Request) -> Any:
    return request.app.state.archive


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def keeps(who: Principal) -> bool:
    """A patient or family helper keeps records; staff never do."""
    return who.kind == "user" and who.role in CAREGIVER_ROLES


# -- sign-up ------------------------------------------------------------------------------


def signup_form(request: Request, fields: dict[str, str], *, status: int = 200,
                message: str = "") -> Response:
    """The sign-up form: a film (hidden), a claim code (typed) or an invitation (hidden)."""
    nonce, token = presession_csrf(request)
    loc = localizer(request)
    who = principal(request)
    film_here = who.kind == "share" and not fields.get("film")
    response = render(request, "signup.html", {
        "title": loc.gettext("Keep your images"), "token": token, "fields": fields,
        "message": message, "mode": "invite" if fields.get("invite") else (
            "film" if fields.get("film") or film_here else "code"),
        "login_url": "/login?" + urlencode({"next": request.url.path + (
            f"?{request.url.query}" if request.url.query else "")}),
    }, status=status, anonymous=who.kind == "anonymous")
    set_presession_cookie(response, request, nonce)
    response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
    return response


async def signup_page(request: Request) -> Response:
    who = principal(request)
    film, invite = request.query_params.get("film", ""), request.query_params.get("invite", "")
    if who.kind == "user":
        if invite:
            return redirect(f"/caregivers/join/{quote(invite)}")
        return redirect("/keep?" + urlencode({"film": film}) if film else "/claim")
    return signup_form(request, {"film": film, "invite": invite})


async def signup_submit(request: Request) -> Response:
    form = await request.form()
    fields = {k: str(form.get(k, "")) for k in ("film", "invite", "code", "username",
                                                  "display_name", "birth_date")}
    if not presession_csrf_ok(request, str(form.get("csrf", ""))):
        return signup_form(request, fields, status=403, message=localizer(request).gettext(
            "This form expired. Please fill it in again."))
    account = NewAccount(fields["username"], str(form.get("password", "")),
                         fields["display_name"])
    service, source = SignupService(archive_of(request)), client_ip(request)
    try:
        if fields["invite"]:
            done = await _run(service.sign_up_caregiver, account, fields["invite"], source)
        else:
            done = await _run(service.sign_up, account, fields["film"], fields["code"],
                              fields["birth_date"], source, principal(request))
    except ServiceError as exc:
        return signup_form(request, fields, status=exc.status, message=reason_text(request, exc))
    return await _signed_in(request, done)


async def _run(function: Any, *args: Any) -> Any:
    return await run_in_threadpool(function, *args)


async def _signed_in(request: Request, done: SignedUp) -> Response:
    """The new account is signed in; a family helper lands in the patient's images."""
    response = redirect("/timeline?done=kept" if done.role is Role.PATIENT else "/timeline")
    await start_session(request, response, done)
    if done.role is Role.CAREGIVER:
        joined = await _run(CaregiverService(archive_of(request)).caring_for,
                            Principal(kind="user", user_id=done.user_id))
        if joined:
            response.set_cookie(PERSON_COOKIE, str(joined[0].person_id), path="/",
                                samesite="lax", httponly=True)
    return response


# -- keep (signed in) --------------------------------------------------------------------


def keep_form(request: Request, film: str, *, status: int = 200, message: str = "") -> Response:
    loc = localizer(request)
    return render(request, "keep.html", {
        "title": loc.gettext("Keep in my folder"), "film": film, "message": message,
    }, status=status, active="timeline",
        headers={"Referrer-Policy": "no-referrer", "Cache-Control": "no-store"})


async def film_when_signed_in(request: Request, secret: str) -> Response | None:
    """A signed-in patient (or family helper) opens a cloud film: straight to the study when
    its record is already in a folder they look after, else the one-question keep form
    (the secret rides in the form body, never in a URL). None for anyone else and for links
    that are not films: they get the "you are signed in" page."""
    who = principal(request)
    if not keeps(who):
        return None
    ref = await _run(FilmService(archive_of(request)).resolve, secret)
    if ref is None:
        return None
    if may_act_for(who, ref.person_id):
        return redirect(f"/studies/{quote(ref.study_uid)}")
    return keep_form(request, secret)


def _acting_person(who: Principal) -> int | None:
    """Whose folder a kept record joins: the patient's own, or the one person a family
    helper looks after (with several, the service asks which)."""
    if who.own_person_id is not None:
        return who.own_person_id
    return next(iter(who.acting_for)) if len(who.acting_for) == 1 else None


async def keep_page(request: Request) -> Response:
    who, film = principal(request), request.query_params.get("film", "")
    if not keeps(who):
        if who.kind == "user":
            return staff_page(request)
        return signup_form(request, {"film": film, "invite": ""})
    return keep_form(request, film)


def staff_page(request: Request) -> Response:
    loc = localizer(request)
    return render(request, "message.html", {
        "title": loc.gettext("Only patients keep images"),
        "heading": loc.gettext("Only patients keep images"),
        "text": loc.gettext("Staff accounts have no folder of their own."),
        "link": ("/", loc.gettext("Back to the start page"))}, status=403)


async def keep_submit(request: Request) -> Response:
    who = principal(request)
    form = await request.form()
    film = str(form.get("film", ""))
    if not keeps(who):
        return staff_page(request) if who.kind == "user" else redirect("/signup")
    try:
        await _run(SignupService(archive_of(request)).keep, who, film, "",
                   str(form.get("birth_date", "")), client_ip(request), _acting_person(who))
    except ServiceError as exc:
        return keep_form(request, film, status=exc.status, message=reason_text(request, exc))
    return redirect("/timeline?done=kept")


# -- claim codes -------------------------------------------------------------------------


def claim_form(request: Request, *, status: int = 200, message: str = "",
               code: str = "") -> Response:
    loc = localizer(request)
    return render(request, "claim.html", {
        "title": loc.gettext("Enter a claim code"), "message": message, "code": code,
    }, status=status, active="timeline")


async def claim_page(request: Request) -> Response:
    who = principal(request)
    if who.kind != "user":
        return signup_form(request, {"film": "", "invite": ""})
    if not keeps(who):
        return staff_page(request)
    return claim_form(request)


async def claim_submit(request: Request) -> Response:
    who = principal(request)
    if not keeps(who):
        return staff_page(request) if who.kind == "user" else redirect("/signup")
    code = str((await request.form()).get("code", ""))
    try:
        await _run(PeopleService(archive_of(request)).claim, who, code, _acting_person(who))
    except ServiceError as exc:
        return claim_form(request, status=exc.status, message=reason_text(request, exc),
                          code=code)
    return redirect("/timeline?done=kept")


routes = [
    Route("/signup", signup_page, methods=["GET"]),
    Route("/signup", signup_submit, methods=["POST"]),
    Route("/keep", keep_page, methods=["GET"]),
    Route("/keep", keep_submit, methods=["POST"]),
    Route("/claim", claim_page, methods=["GET"]),
    Route("/claim", claim_submit, methods=["POST"]),
]
