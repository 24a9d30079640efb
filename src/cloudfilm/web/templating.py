"""Rendering portal pages: Jinja2 (autoescaped) with the request's language and settings.

Why one environment per language: the i18n extension binds gettext per environment, so a
page can never be rendered with another request's language. Every page gets the same
frame (header, navigation by role, language and text-size switches, sign-out form) and
the same security headers. Switches are plain links (``?lang=zh``, ``?text=large``) that
set a cookie, so they work without JavaScript and on the login page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse

from cloudfilm.domain.access import Principal, Role
from cloudfilm.i18n import LANG_COOKIE, LANGUAGES, N_, localizer, translations
from cloudfilm.web import glossary

WEB_DIR = Path(__file__).resolve().parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static" / "portal"
TEXT_COOKIE = "cf_text"
TEXT_SIZES = ("normal", "large")
COOKIE_MAX_AGE = 365 * 24 * 3600

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; script-src 'self'; "
                               "object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
}


@cache
def environment(language: str) -> Environment:
    """The Jinja2 environment of one language (autoescaping on for every template)."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES_DIR)),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
    install = env.install_gettext_translations  # type: ignore[attr-defined]
    install(translations(language), newstyle=True)
    env.globals["picture"] = picture
    env.globals["inline_css"] = inline_css
    env.globals["highlight"] = glossary.highlight
    return env


@cache
def picture(name: str) -> Markup:
    """An illustration from static/portal/guide, inlined (no extra request, works logged out)."""
    if not name.replace("-", "").isalnum():
        raise ValueError(f"bad picture name {name!r}")
    return Markup((STATIC_DIR / "guide" / f"{name}.svg").read_text(encoding="utf-8"))


@cache
def inline_css() -> Markup:
    """The stylesheet, for pages that anonymous visitors see (static files need a login)."""
    return Markup((STATIC_DIR / "portal.css").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    key: str


def nav_items(who: Principal, shared_home: str = "/shared") -> list[tuple[str, str, str]]:
    """(href, message id, page key) of the navigation for this principal's role."""
    if who.kind == "share":
        return [(shared_home, N_("Shared images"), "shared")]
    if who.kind != "user" or who.role is None:
        return []
    if who.role in (Role.PATIENT, Role.CAREGIVER):
        items = [("/timeline", N_("My images"), "timeline"), ("/share", N_("Share"), "share"),
                 ("/upload", N_("Upload"), "upload"), ("/caregivers", N_("Family helpers"),
                                                        "caregivers"),
                 ("/messages", N_("Messages"), "messages")]
        if who.role is Role.CAREGIVER:
            items[0] = ("/timeline", N_("Images"), "timeline")
        return items
    if who.role is Role.PHYSICIAN:
        return [("/shared-with-me", N_("Patients shared with me"), "shared-with-me"),
                ("/messages", N_("Messages"), "messages")]
    if who.role is Role.RESEARCHER:  # de-identified exports only, through the API
        return []
    return [("/admin", N_("Administration"), "admin")]


def switch_url(conn: HTTPConnection, **changes: str) -> str:
    """A query-only link back to this page with ``lang`` or ``text`` changed."""
    params = {k: v for k, v in conn.query_params.items() if k not in ("lang", "text")}
    params.update(changes)
    return "?" + urlencode(params)


def text_size(conn: HTTPConnection) -> str:
    for value in (conn.query_params.get("text"), conn.cookies.get(TEXT_COOKIE)):
        if value in TEXT_SIZES:
            return value
    return "normal"


def render(conn: HTTPConnection, template: str, context: Mapping[str, Any] | None = None, *,
           status: int = 200, active: str = "", anonymous: bool = False,
           headers: Mapping[str, str] | None = None) -> HTMLResponse:
    """Render ``template`` in the request's language; sets the switch cookies when asked.

    ``anonymous`` pages (login, PIN form, link errors) inline their stylesheet and show
    no navigation: a visitor without a session cannot fetch static files.
    """
    loc = localizer(conn)
    who: Principal = getattr(conn.state, "principal", None) or Principal(kind="anonymous")
    size = text_size(conn)
    frame = {
        "loc": loc, "lang": loc.language, "html_lang": loc.html_lang, "who": who,
        "text_size": size, "anonymous": anonymous or who.kind == "anonymous",
        "csrf": getattr(conn.state, "csrf_token", None) or "",
        "nav": [NavItem(h, loc.gettext(m), k) for h, m, k in nav_items(who)],
        "active": active,
        "lang_url": {lang: switch_url(conn, lang=lang) for lang in LANGUAGES},
        "text_url": switch_url(conn, text="normal" if size == "large" else "large"),
        "path": conn.url.path,
    }
    body = environment(loc.language).get_template(template).render(frame | dict(context or {}))
    response = HTMLResponse(body, status_code=status, headers=PAGE_HEADERS | dict(headers or {}))
    remember_switches(conn, response)
    return response


def remember_switches(conn: HTTPConnection, response: HTMLResponse) -> None:
    """``?lang=`` and ``?text=`` become cookies, so the choice holds on every later page."""
    lang = conn.query_params.get("lang")
    if lang in LANGUAGES and conn.cookies.get(LANG_COOKIE) != lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=COOKIE_MAX_AGE, path="/", samesite="lax")
    size = conn.query_params.get("text")
    if size in TEXT_SIZES and conn.cookies.get(TEXT_COOKIE) != size:
        response.set_cookie(TEXT_COOKIE, size, max_age=COOKIE_MAX_AGE, path="/", samesite="lax")
