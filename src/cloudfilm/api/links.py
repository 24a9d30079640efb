"""Opening a share link: ``/s/{secret}`` and the minimal ``/shared`` pages.

Issue "People, access and sharing" (link opening):
- no account needed; every bad secret (unknown, expired, revoked, malformed, used up)
  gets the same 404 page;
- a PIN-protected link shows a small accessible PIN form (POST to the same URL); a
  wrong PIN counts against ``pin:<grant id>``: 5 lock the link for 15 minutes;
- otherwise the secret is exchanged for a share session (cookie ``cf_session``,
  HttpOnly, SameSite=Lax) and the browser is sent (303) to ``/shared``, a URL
  without the secret; the policy re-checks the grant on every later request.
Secrets are never logged; responses carry ``Referrer-Policy: no-referrer`` so the
secret does not leak to other sites either.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select
from starlette.routing import Route

from cloudfilm.api.authn import SESSION_COOKIE, client_ip, principal, set_session_cookies
from cloudfilm.api.people import archive_of
from cloudfilm.domain.access import Permission, Principal
from cloudfilm.services.accounts import accounts_of
from cloudfilm.services.people import PeopleService, TimelineStudy, TooManyAttempts
from cloudfilm.services.policy import Policy
from cloudfilm.services.sharing import SharingService, WrongPin
from cloudfilm.storage.index.access_models import GrantRow
from cloudfilm.storage.index.models import InstanceRow, SeriesRow, StudyRow

HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; "
                               "form-action 'self'; frame-ancestors 'none'",
}
STYLE = ("body{font:1.1rem/1.5 system-ui,sans-serif;max-width:48rem;margin:2rem auto;"
         "padding:0 1rem}label{display:block;margin-top:1rem;font-weight:600}"
         "input{font:inherit;padding:.5rem;width:12rem}button{font:inherit;margin-top:1rem;"
         "padding:.5rem 1.5rem}.error{color:#8b0000;border-left:4px solid #8b0000;"
         "padding-left:.75rem}li{margin:1rem 0}img{max-width:128px;display:block}")
LOCKED = ('<h1>Too many wrong PINs</h1><p role="alert" class="error">This link is locked '
          "for 15 minutes after 5 wrong PINs. Please wait, then try again, or ask the person "
          "who shared it to check the PIN.</p>")
NOT_AVAILABLE = ("<h1>This link is not available</h1><p>The link may be mistyped, or it "
                 "has expired or been withdrawn. Ask the person who shared it for a new one.</p>")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """A minimal, accessible page (works without JavaScript)."""
    return HTMLResponse(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · cloudfilm</title><style>{STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>", status_code=status, headers=HEADERS)


def not_available() -> HTMLResponse:
    """The one answer for every bad secret, so none can be told apart."""
    return page("Link not available", NOT_AVAILABLE, 404)


def _cross_site(request: Request) -> bool:
    """A form posted from another site (browsers send Origin on cross-site POSTs)."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null"
    public = archive_of(request).settings.public_url
    ours = {request.headers.get("host", ""), urlsplit(public).netloc if public else ""}
    return urlsplit(origin).netloc not in ours


def locked_page() -> HTMLResponse:
    response = page("Link locked", LOCKED, 429)
    response.headers["Retry-After"] = str(15 * 60)
    return response


# -- /s/{secret} -------------------------------------------------------------------------


def _pin_form(request: Request, message: str = "") -> str:
    csrf = getattr(request.state, "csrf_token", None)
    hidden = (f'<input type="hidden" name="csrf" value="{html.escape(csrf, quote=True)}">'
              if csrf else "")
    error = (f'<p id="pin-error" class="error" role="alert">{html.escape(message)}</p>'
             if message else "")
    described = ' aria-describedby="pin-error"' if message else ""
    return (
        "<h1>Enter the PIN</h1><p>These medical images are protected by a PIN. "
        "The person who shared them has told you the PIN separately.</p>" + error +
        '<form method="post">' + hidden +
        '<label for="pin">PIN</label>'
        '<input id="pin" name="pin" type="password" inputmode="numeric" pattern="[0-9]*"'
        f' autocomplete="one-time-code" required autofocus{described}>'
        '<button type="submit">Open</button></form>')


async def _start_share_session(request: Request, sharing: SharingService,
                               row: GrantRow) -> Response:
    """Count the open, then swap the secret for a session cookie and leave the secret URL."""
    source = client_ip(request)
    if not await run_in_threadpool(sharing.record_open, row, source):
        return not_available()
    accounts = accounts_of(archive_of(request))
    old = request.cookies.get(SESSION_COOKIE)
    if old and principal(request).kind == "share":
        await run_in_threadpool(accounts.revoke_session, old)
    session_id, csrf = await run_in_threadpool(
        lambda: accounts.create_session(grant_id=row.id, source=source))
    response = RedirectResponse("/shared", status_code=303, headers=HEADERS)
    set_session_cookies(response, request, session_id, csrf)
    return response


async def open_link(request: Request) -> Response:
    """GET /s/{secret}: the PIN form, or straight into a share session."""
    sharing = SharingService(archive_of(request))
    row = await run_in_threadpool(sharing.find_link, request.path_params["secret"])
    if row is None:
        return not_available()
    if row.pin_hash:
        if await run_in_threadpool(sharing.pin_locked, row):
            return locked_page()
        return page("Enter the PIN", _pin_form(request))
    return await _start_share_session(request, sharing, row)


async def submit_pin(request: Request) -> Response:
    """POST /s/{secret} with ``pin``: a wrong PIN is counted; 5 lock the link for 15 minutes."""
    sharing = SharingService(archive_of(request))
    row = await run_in_threadpool(sharing.find_link, request.path_params["secret"])
    if row is None:
        return not_available()
    if _cross_site(request):
        return page("Enter the PIN", _pin_form(request, "Please open the link again."), 403)
    if row.pin_hash:
        pin = str((await request.form()).get("pin", ""))
        try:
            await run_in_threadpool(sharing.check_pin, row, pin)
        except TooManyAttempts:
            return locked_page()
        except WrongPin as exc:
            return page("Enter the PIN", _pin_form(request, f"Wrong PIN. {exc.remaining} "
                                                            "attempt(s) left before the link "
                                                            "locks for 15 minutes."), 403)
    return await _start_share_session(request, sharing, row)


# -- /shared -----------------------------------------------------------------------------


def _share_principal(request: Request) -> Principal | None:
    who = principal(request)
    return who if who.kind == "share" and who.share_grant_id is not None else None


def _grant_person(request: Request, grant_id: int) -> int | None:
    with archive_of(request).index.session() as session:
        row = session.get(GrantRow, grant_id)
        return row.person_id if row is not None else None


def _study_item(study: TimelineStudy) -> str:
    uid = html.escape(study.study_uid, quote=True)
    facts = " · ".join(html.escape(p) for p in (
        study.date, study.hospital, "/".join(study.modalities), study.description) if p)
    documents = "".join(f"<li>{html.escape(d.title or d.kind)} ({html.escape(d.kind)})</li>"
                        for d in study.documents)
    return (f'<li><a href="/shared/studies/{uid}"><img src="/dicomweb/studies/{uid}/thumbnail"'
            f' alt="Preview of the study of {html.escape(study.date or "unknown date")}">'
            f"{facts or 'Study'}</a> — {study.series} series, {study.instances} images"
            + (f"<ul>{documents}</ul>" if documents else "") + "</li>")


async def shared(request: Request) -> Response:
    """The studies a share session may see (the viewer portal comes later)."""
    who = _share_principal(request)
    if who is None or who.share_grant_id is None:
        return not_available()
    person_id = await run_in_threadpool(_grant_person, request, who.share_grant_id)
    if person_id is None:
        return not_available()
    studies = await run_in_threadpool(PeopleService(archive_of(request)).timeline, who, person_id)
    if not studies:
        return not_available()
    items = "".join(_study_item(s) for s in studies)
    return page("Shared images", f"<h1>Shared medical images</h1><ul>{items}</ul>")


def _series_of(request: Request, who: Principal, study_uid: str) -> list[Any]:
    visible = Policy(archive_of(request)).visible_clause(who, Permission.VIEW)
    statement = (select(SeriesRow.series_uid, SeriesRow.modality, SeriesRow.description)
                 .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
                 .where(StudyRow.study_uid == study_uid)
                 .order_by(SeriesRow.series_number, SeriesRow.id))
    if visible is not None:
        statement = statement.where(SeriesRow.id.in_(
            select(InstanceRow.series_pk).where(visible)))
    with archive_of(request).index.session() as session:
        return list(session.execute(statement).all())


async def shared_study(request: Request) -> Response:
    """One shared study's series; any study the grant does not cover is simply not found."""
    who = _share_principal(request)
    study_uid = request.path_params["study"]
    if who is None:
        return not_available()
    decision = await run_in_threadpool(Policy(archive_of(request)).check, who,
                                       Permission.VIEW, study_uid)
    if not decision.allowed:
        return page("Not found", "<h1>Not found</h1><p>This study is not part of the share.</p>"
                    '<p><a href="/shared">Back to the shared studies</a></p>', 404)
    series = await run_in_threadpool(_series_of, request, who, study_uid)
    uid = html.escape(study_uid, quote=True)
    items = "".join(
        f'<li><img src="/dicomweb/studies/{uid}/series/{html.escape(s.series_uid, quote=True)}'
        f'/thumbnail" alt="Preview of series {html.escape(s.description or s.modality)}">'
        f"{html.escape(s.modality)} {html.escape(s.description)}</li>" for s in series)
    return page("Shared study", f'<p><a href="/shared">All shared studies</a></p>'
                f"<h1>Study</h1><ul>{items}</ul>")


page_routes = [
    Route("/s/{secret:path}", open_link, methods=["GET"]),
    Route("/s/{secret:path}", submit_pin, methods=["POST"]),
    Route("/shared", shared, methods=["GET"]),
    Route("/shared/studies/{study}", shared_study, methods=["GET"]),
]
