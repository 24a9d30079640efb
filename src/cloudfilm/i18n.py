"""Languages of cloudfilm's pages and texts: English and Simplified Chinese, from Babel
``.po`` catalogues (``web/locales``).

Why a module of its own: the portal's pages, the JSON API (upload results, the access
log) and the printed slip and card speak the same words; this is the one place both the
HTTP API (api/) and the pages (web/) read them from.

Why ``.po`` read at start-up: translators edit plain text files and nobody has to remember
a compile step; the catalogues are compiled in memory (``read_po`` → ``write_mo``) the
first time a language is asked for.

The language of a request: ``?lang=zh|en`` (remembered in the ``cf_lang`` cookie), else the
cookie, else ``Accept-Language`` (any ``zh*`` → Chinese), else English.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from starlette.requests import HTTPConnection

LOCALES_DIR = Path(__file__).resolve().parent / "web" / "locales"
LANGUAGES = ("en", "zh")
DEFAULT_LANGUAGE = "en"
LANG_COOKIE = "cf_lang"
HTML_LANG = {"en": "en", "zh": "zh-Hans"}
BABEL_LOCALE = {"en": "en", "zh": "zh_Hans_CN"}
DOMAIN = "messages"


def N_(message: str) -> str:
    """Mark a module-level string for extraction; it is translated where it is shown."""
    return message


def po_path(language: str) -> Path:
    return LOCALES_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def read_catalog(language: str) -> Catalog:
    with po_path(language).open("rb") as fh:
        return read_po(fh, locale=BABEL_LOCALE[language], domain=DOMAIN)


@cache
def translations(language: str) -> Translations:
    """The compiled catalogue of ``language`` (fuzzy entries are left out, as msgfmt does)."""
    buffer = io.BytesIO()
    write_mo(buffer, read_catalog(language), use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def parse_accept_language(header: str) -> str | None:
    """The supported language the browser prefers most (``zh-CN``, ``zh-TW``, ``zh`` → zh)."""
    best: tuple[float, int, str] | None = None
    for position, item in enumerate(header.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        if primary in LANGUAGES and quality > 0:
            candidate = (-quality, position, primary)
            best = candidate if best is None or candidate < best else best
    return best[2] if best else None


def chosen_language(conn: HTTPConnection) -> str:
    """``?lang=``, then the ``cf_lang`` cookie, then Accept-Language, then English."""
    for value in (conn.query_params.get("lang"), conn.cookies.get(LANG_COOKIE)):
        if value in LANGUAGES:
            return value
    return parse_accept_language(conn.headers.get("accept-language", "")) or DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Localizer:
    """Translation and formatting for one request's language."""

    language: str

    @property
    def html_lang(self) -> str:
        return HTML_LANG[self.language]

    @property
    def locale(self) -> Locale:
        return Locale.parse(BABEL_LOCALE[self.language])

    def gettext(self, message: str, **variables: Any) -> str:
        text = translations(self.language).gettext(message)
        return text % variables if variables else text

    def ngettext(self, singular: str, plural: str, n: int, **variables: Any) -> str:
        text = translations(self.language).ngettext(singular, plural, n)
        return text % ({"num": n} | variables)

    def date(self, value: str | date | None) -> str:
        """A study date as people read it (``2025年3月1日``, ``March 1, 2025``)."""
        if not value:
            return self.gettext("Date unknown")
        if isinstance(value, str):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                return value
            return format_date(day, format="long", locale=self.locale)
        return format_date(value, format="long", locale=self.locale)

    def datetime(self, value: datetime) -> str:
        return format_datetime(value, format="medium", locale=self.locale)


def localizer(conn: HTTPConnection) -> Localizer:
    return Localizer(chosen_language(conn))
