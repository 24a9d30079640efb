"""Catalogue maintenance: ``python -m cloudfilm.web.i18n`` re-extracts the messages of the
templates and of every module that speaks to people (web/, api/, cloudfilm/i18n.py) and
merges them into both catalogues (keeping existing translations).

The languages themselves (`Localizer`, the request's language) live in cloudfilm/i18n.py,
shared by the pages and the JSON API; they are named here too for the catalogue tests.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import write_po

from cloudfilm.i18n import (
    BABEL_LOCALE,
    DOMAIN,
    LANGUAGES,
    Localizer,
    po_path,
    read_catalog,
    translations,
)

__all__ = ["LANGUAGES", "Localizer", "extract_messages", "read_catalog", "translations",
           "update_catalogues"]

WEB_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = WEB_DIR.parent
# Modules outside web/ whose words people read: the JSON API's and the languages' own.
OTHER_SOURCES = [*sorted((PACKAGE_DIR / "api").rglob("*.py")), PACKAGE_DIR / "i18n.py"]

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
    for path in OTHER_SOURCES:
        where = f"../{path.relative_to(PACKAGE_DIR).as_posix()}"
        for lineno, message, comments, context in extract_from_file("python", str(path)):
            catalog.add(message, None, [(where, lineno)], auto_comments=comments,
                        context=context)
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
