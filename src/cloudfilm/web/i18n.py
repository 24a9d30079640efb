"""Languages of the portal: English and Simplified Chinese, from Babel ``.po`` catalogues.

Why ``.po`` read at start-up: translators edit plain text files and nobody has to remember
a compile step; the catalogues are compiled in memory (``read_po`` → ``write_mo``) the
first time a language is asked for.

The language of a request: ``?lang=zh|en`` (remembered in the ``cf_lang`` cookie), else the
cookie, else ``Accept-Language`` (any ``zh*`` → Chinese), else English.

``python -m cloudfilm.web.i18n`` re-extracts the messages of the templates and the
``web`` modules and merges them into both catalogues (keeping existing translations).
"""

from __future__ import annotations

import copy
import io
import sys
from dataclasses import dataclass
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any

from babel import Locale
from babel.dates import format_date, format_datetime
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.support import Translations
from starlette.requests import HTTPConnection

WEB_DIR = Path(__file__).resolve().parent
API_PAGES = [WEB_DIR.parent / "api" / name for name in ("login.py", "links.py", "uploads.py")]
LOCALES_DIR = WEB_DIR / "locales"
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
                value = date.fromisoformat(value)
            except ValueError:
                return value
        return format_date(value, format="long", locale=self.locale)

    def datetime(self, value: datetime) -> str:
        return format_datetime(value, format="medium", locale=self.locale)


def localizer(conn: HTTPConnection) -> Localizer:
    return Localizer(chosen_language(conn))


# -- catalogue maintenance ---------------------------------------------------------------

METHOD_MAP = [("templates/**.html", "jinja2"), ("**.py", "python")]
OPTIONS_MAP = {"templates/**.html": {"extensions": "jinja2.ext.i18n", "silent": "false"}}


def extract_messages() -> Catalog:
    """Every message of the portal's templates and modules, as a fresh template catalogue."""
    catalog = Catalog(domain=DOMAIN, project="cloudfilm", charset="utf-8")
    for filename, lineno, message, comments, context in extract_from_dir(
            str(WEB_DIR), METHOD_MAP, OPTIONS_MAP, strip_comment_tags=True):
        if "static" in Path(filename).parts:
            continue
        catalog.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    for path in API_PAGES:  # the login and share-link pages live with their API routes
        for lineno, message, comments, context in extract_from_file("python", str(path)):
            catalog.add(message, None, [(f"../api/{path.name}", lineno)],
                        auto_comments=comments, context=context)
    return catalog


def update_catalogues() -> dict[str, list[str]]:
    """Merge fresh messages into both ``.po`` files; returns each language's untranslated ids."""
    template = extract_messages()
    missing: dict[str, list[str]] = {}
    for language in LANGUAGES:
        path = po_path(language)
        path.parent.mkdir(parents=True, exist_ok=True)
        catalog = read_catalog(language) if path.exists() else Catalog(
            locale=BABEL_LOCALE[language], domain=DOMAIN, project="cloudfilm")
        catalog.update(copy.deepcopy(template), no_fuzzy_matching=True)
        catalog.obsolete.clear()
        catalog.fuzzy = False
        catalog.project, catalog.version = "cloudfilm", "0.1"
        catalog.copyright_holder = "the cloudfilm authors"
        catalog.language_team = "cloudfilm"
        if language == "en":  # English is the source language: the id is the text
            for message in catalog:
                if message.id and not _complete(message.string):
                    message.string = message.id
        missing[language] = [str(m.id) for m in catalog if m.id and not _complete(m.string)]
        with path.open("wb") as fh:
            write_po(fh, catalog, width=100, omit_header=False, sort_output=True,
                     include_lineno=False)
    translations.cache_clear()
    return missing


def _complete(string: Any) -> bool:
    if isinstance(string, (tuple, list)):
        return all(string)
    return bool(string)


if __name__ == "__main__":
    gaps = update_catalogues()
    for lang, ids in gaps.items():
        for msgid in ids:
            print(f"{lang}: untranslated: {msgid}")
    sys.exit(1 if any(gaps.values()) else 0)
