"""Opening a share link: ``/s/{secret}`` and where it lands, ``/shared``.

Issue "People, access and sharing" (link opening):
- no account needed; every bad secret (unknown, expired, revoked, malformed, used up)
  gets the same 404 page;
- a PIN-protected link shows a small accessible PIN form (POST to the same URL); a
  wrong PIN counts against ``pin:<grant id>``: 5 lock the link for 15 minutes;
- otherwise the secret is exchanged for a share session (cookie ``cf_session``,
  HttpOnly, SameSite=Lax) and the browser is sent (303) to ``/shared``, a URL
  without the secret; the policy re-checks the grant on every later request;
- a link session never replaces a login (issue 11): a browser signed in to an account
  gets a page that says to open the link in a private window (or sign out first),
  its session is left alone, and the link is neither counted nor its PIN evaluated;
  a cloud film opened by a signed-in patient or family helper is the exception (issue
  12): the study itself when its record is in their care, else the keep form;
- ``/shared`` is the portal's page for what the grant covers: the study itself when it
  names one, else the timeline (web/pages.py); other studies are "not found".
Secrets are never logged; responses carry ``Referrer-Policy: no-referrer`` so the
secret does not leak to other sites either.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from cloudfilm.api.authn import SESSION_COOKIE, client_ip, principal, set_session_cookies
from cloudfilm.domain.access import Permission, Principal
from cloudfilm.i18n import N_, localizer
from cloudfilm.services.access.accounts import accounts_of
from cloudfilm.services.access.people import TooManyAttempts
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.access.sharing import OpenableLink, SharingService, WrongPin
from cloudfilm.web import pages, signup_pages
from cloudfilm.web.guides import guide
from cloudfilm.web.pages import archive_of
from cloudfilm.web.templating import render

HEADERS = {
    "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; "
                               "style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}
LOCKED = N_("This link is locked for 15 minutes after 5 wrong PINs. Please wait, then try "
            "again, or ask the person who shared it to check the PIN.")
SIGNED_IN = N_("This link is for looking without an account, so it does not open while "
               "you are signed in as %(name)s. Open it in a private window, or sign out and "
               "open it again.")
NOT_AVAILABLE = N_("The link may be mistyped, or it has expired or been withdrawn. Ask the "
                   "person who shared it for a new one.")


def page(request: Request, heading: str, text: str, status: int = 200) -> HTMLResponse:
    """A one-message page in the visitor's language (works without JavaScript)."""
    return render(request, "message.html", {"title": heading, "heading": heading, "text": text,
                                            "status_alert": status == 429},
                  status=status, anonymous=True, headers=HEADERS)


def not_available(request: Request) -> HTMLResponse:
    """The one answer for every bad secret, so none can be told apart."""
    loc = localizer(request)
    return page(request, loc.gettext("This link is not available"),
                loc.gettext(NOT_AVAILABLE), 404)


def cross_site(request: Request) -> bool:
    """A form posted from another site (browsers send Origin on cross-site POSTs).

    Under ``Referrer-Policy: no-referrer`` browsers send ``Origin: null`` even for the
    PIN form's own same-origin POST; ``Sec-Fetch-Site`` (which pages cannot forge)
    then tells the two apart.
    """
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin == "null" and fetch_site != "same-origin"
    public = archive_of(request).settings.public_url
    ours = {request.headers.get("host", ""), urlsplit(public).netloc if public else ""}
    return urlsplit(origin).netloc not in ours


def signed_in(request: Request) -> bool:
    """Is this browser signed in to an account (a session a link must not replace)?"""
    return principal(request).kind == "user"


def signed_in_page(request: Request) -> HTMLResponse:
    loc = localizer(request)
    return page(request, loc.gettext("You are signed in"),
                loc.gettext(SIGNED_IN, name=principal(request).username), 409)


def locked_page(request: Request) -> HTMLResponse:
    loc = localizer(request)
    response = page(request, loc.gettext("Too many wrong PINs"), loc.gettext(LOCKED), 429)
    response.headers["Retry-After"] = str(15 * 60)
    return response


# -- /s/{secret} -------------------------------------------------------------------------


def pin_page(request: Request, message: str = "", status: int = 200) -> HTMLResponse:
    """The PIN form (POST to the same URL); ``message`` says what went wrong."""
    loc = localizer(request)
    return render(request, "pin.html", {"title": loc.gettext("Enter the PIN"),
                                        "message": message, "guide": guide("pin", loc)},
                  status=status, anonymous=True, headers=HEADERS)


async def _start_share_session(request: Request, sharing: SharingService,
                               link: OpenableLink) -> Response:
    """Count the open, then swap the secret for a session cookie and leave the secret URL."""
    source = client_ip(request)
    if not await run_in_threadpool(sharing.open_link, link, source):
        return not_available(request)
    accounts = accounts_of(archive_of(request))
    old = request.cookies.get(SESSION_COOKIE)
    if old and principal(request).kind == "share":  # another link's session, never a login
        await run_in_threadpool(accounts.revoke_session, old)
    session_id, csrf = await run_in_threadpool(
        lambda: accounts.create_session(grant_id=link.grant_id, source=source))
    response = RedirectResponse("/shared", status_code=303, headers=HEADERS)
    set_session_cookies(response, request, session_id, csrf)
    return response


async def open_link(request: Request) -> Response:
    """GET /s/{secret}: the PIN form, or straight into a share session."""
    sharing = SharingService(archive_of(request))
    link = await run_in_threadpool(sharing.openable, request.path_params["secret"])
    if link is None:
        return not_available(request)
    if signed_in(request):
        kept = await signup_pages.film_when_signed_in(request, request.path_params["secret"])
        return kept or signed_in_page(request)
    if link.has_pin:
        if await run_in_threadpool(sharing.link_locked, link):
            return locked_page(request)
        return pin_page(request)
    return await _start_share_session(request, sharing, link)


async def submit_pin(request: Request) -> Response:
    """POST /s/{secret} with ``pin``: a wrong PIN is counted; 5 lock the link for 15 minutes."""
    sharing = SharingService(archive_of(request))
    link = await run_in_threadpool(sharing.openable, request.path_params["secret"])
    if link is None:
        return not_available(request)
    if cross_site(request):
        return pin_page(request, localizer(request).gettext("Please open the link again."), 403)
    if signed_in(request):
        return signed_in_page(request)
    if link.has_pin:
        pin = str((await request.form()).get("pin", ""))
        try:
            await run_in_threadpool(sharing.try_pin, link, pin)
        except TooManyAttempts:
            return locked_page(request)
        except WrongPin as exc:
            return pin_page(request, localizer(request).gettext(
                "Wrong PIN. %(remaining)s attempt(s) left before the link locks for 15 "
                "minutes.", remaining=exc.remaining), 403)
    return await _start_share_session(request, sharing, link)


# -- /shared ----------------------------------------------------------------------------


def _share_principal(request: Request) -> Principal | None:
    who = principal(request)
    return who if who.kind == "share" and who.share_grant_id is not None else None


async def shared(request: Request) -> Response:
    """Where a link lands: the one study it names, else the timeline it covers."""
    who = _share_principal(request)
    if who is None:
        return not_available(request)
    named = await pages.share_grant_studies(request, who)
    if named is not None and len(named) == 1:
        decision = await run_in_threadpool(Policy(archive_of(request)).check, who,
                                           Permission.VIEW, named[0])
        if not decision.allowed:
            return not_available(request)
        return _share_headers(await pages.render_study(request, named[0]))
    person_id = await pages.share_person(request, who)
    if person_id is None:
        return not_available(request)
    response = await pages.render_timeline(request, who, person_id, shared=True)
    if response.status_code == 404:
        return not_available(request)
    return _share_headers(response)


async def shared_study(request: Request) -> Response:
    """One shared study; any study the grant does not cover is simply not found."""
    if _share_principal(request) is None:
        return not_available(request)
    return _share_headers(await pages.render_study(request, request.path_params["study"]))


def _share_headers(response: Response) -> Response:
    """Share pages never send a Referer and are never indexed."""
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Robots-Tag"] = "noindex"
    return response


routes = [
    Route("/s/{secret:path}", open_link, methods=["GET"]),
    Route("/s/{secret:path}", submit_pin, methods=["POST"]),
    Route("/shared", shared, methods=["GET"]),
    Route("/shared/studies/{study}", shared_study, methods=["GET"]),
]
