"""The nodule glossary: plain definitions of report words, shown on hover, focus and tap.

Why: patients said medical words nobody explains made them more anxious
(../shared/context/USERS.md). :func:`highlight` marks the glossary's words in a text (a
report, an explanation) so a tap shows what the word means, in the reader's language.

Each term has two messages: its words as they appear in that language, separated by
``|`` (the first is the title; translators list the Chinese words, such as 磨玻璃|磨玻璃结节),
and its definition. Definitions follow ../shared/reference/clinical-rules.md ("a small
roundish spot, less than 3 cm"; ground-glass "is not a diagnosis by itself").

The markup is a real ``<button>`` (keyboard focus, a tap target on phones) described by
its definition (``aria-describedby``, read by screen readers); static/portal/glossary.css
shows the definition on hover and focus, and glossary.js toggles it on tap (iOS does not
focus buttons on tap) and closes it with Escape. ``title`` tooltips are not used: they
never show on touch screens.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from functools import cache

from markupsafe import Markup, escape

from cloudfilm.i18n import N_, Localizer


@dataclass(frozen=True)
class Term:
    key: str  # stable name, also data-term="..." for styles and scripts
    words: str  # message id: "|"-separated words in the text; the first is the title
    definition: str  # message id


TERMS: tuple[Term, ...] = (
    Term("nodule", N_("nodule|nodules|lung nodule|pulmonary nodule"),
         N_("A small round spot in the lung, less than 3 cm across. Most nodules are not "
            "cancer.")),
    Term("ground-glass", N_("ground-glass|ground glass|ground-glass nodule|ground-glass "
                            "opacity|non-solid|nonsolid|GGO|GGN"),
         N_("A hazy area on the scan, like frosted glass. It is not a diagnosis by itself.")),
    Term("part-solid", N_("part-solid|part solid|part-solid nodule"),
         N_("A spot that is partly hazy, like frosted glass, and partly dense.")),
    Term("subsolid", N_("subsolid|sub-solid"),
         N_("A spot that is all or partly hazy: ground-glass or part-solid.")),
    Term("solid", N_("solid|solid nodule"),
         N_("A spot that looks dense on the scan: the lung cannot be seen through it.")),
    Term("calcified", N_("calcified|calcification|calcifications"),
         N_("Has calcium in it, like bone. Doctors look at the pattern of the calcium.")),
    Term("spiculated", N_("spiculated|spiculation"),
         N_("Has thin lines spreading out from its edge, like a star.")),
    Term("opacity", N_("opacity|opacities"),
         N_("An area that looks lighter than the air around it on the scan.")),
    Term("lung-rads", N_("Lung-RADS"),
         N_("A scale from 0 to 4 that doctors use to sort lung screening scans and plan the "
            "next step.")),
    Term("fleischner", N_("Fleischner|Fleischner Society"),
         N_("A group of lung scan experts. Their 2017 guide says when a spot found by chance "
            "should be checked again.")),
    Term("follow-up-ct", N_("follow-up CT|follow-up scan|follow-up"),
         N_("A later CT scan to see if a spot has changed.")),
    Term("low-dose-ct", N_("low-dose CT|LDCT"),
         N_("A CT scan that uses less radiation. It is used for screening.")),
    Term("screening", N_("screening"),
         N_("A scan for people with no symptoms, to find problems early.")),
    Term("ct", N_("CT|CT scan|computed tomography"),
         N_("A CT scan takes many X-ray pictures and builds thin slices of the body from "
            "them, like the pages of a book.")),
    Term("pet-ct", N_("PET-CT|PET/CT"),
         N_("A scan that shows how active the cells in a spot are.")),
    Term("mm", N_("mm|millimetre|millimetres|millimeter|millimeters"),
         N_("Millimetre: one tenth of a centimetre.")),
    Term("volume", N_("volume"),
         N_("How much space a spot takes up, in cubic millimetres (mm³).")),
    Term("doubling-time", N_("doubling time|volume doubling time|VDT"),
         N_("How long a spot would take to double in volume, at the pace seen between two "
            "scans.")),
    Term("lobe", N_("lobe|lobes|right upper lobe|right middle lobe|right lower lobe|left "
                    "upper lobe|left lower lobe"),
         N_("One of the five parts of the lungs: three on the right and two on the left.")),
    Term("benign", N_("benign"), N_("Not cancer. It does not spread.")),
    Term("biopsy", N_("biopsy|tissue sampling"),
         N_("Taking a tiny piece of tissue to look at under a microscope.")),
    Term("radiologist", N_("radiologist|radiologists"),
         N_("A doctor who reads scans and writes the report.")),
)

_ASCII_WORD = re.compile(r"[A-Za-z0-9]")
_ID_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_TAG = re.compile(r"(<[^>]*>)")
_TAG_NAME = re.compile(r"<\s*(/?)\s*([A-Za-z][A-Za-z0-9]*)")
# Text inside these is never marked: links and buttons cannot hold a button, code is code.
_SKIP_TAGS = frozenset({"a", "button", "script", "style", "textarea", "select", "code",
                        "title"})
_counter = itertools.count(1)


@dataclass(frozen=True)
class Entry:
    key: str
    title: str
    definition: str


def _words(loc: Localizer, term: Term) -> list[str]:
    return [w.strip() for w in loc.gettext(term.words).split("|") if w.strip()]


def entries(loc: Localizer) -> list[Entry]:
    """Every term with its title and definition, in ``loc``'s language (for a word list)."""
    return [Entry(t.key, _words(loc, t)[0], loc.gettext(t.definition)) for t in TERMS]


def _boundary(word: str) -> str:
    """A word that starts or ends with a Latin letter or digit must not touch another one
    (so "solid" is not found in "part-solid" or "consolidation"); Chinese has no spaces."""
    pattern = re.escape(word)
    if _ASCII_WORD.match(word[0]):
        pattern = r"(?<![A-Za-z0-9-])" + pattern
    if _ASCII_WORD.match(word[-1]):
        pattern += r"(?![A-Za-z0-9-])"
    return pattern


@cache
def _matcher(language: str) -> tuple[re.Pattern[str], dict[str, Entry]]:
    """One pattern of every word, longest first, and the entry of each word (lower case)."""
    loc = Localizer(language)
    by_word: dict[str, Entry] = {}
    for term, entry in zip(TERMS, entries(loc), strict=True):
        for word in _words(loc, term):
            by_word.setdefault(word.lower(), entry)
    ordered = sorted(by_word, key=lambda w: (-len(w), w))
    return re.compile("|".join(_boundary(w) for w in ordered), re.IGNORECASE), by_word


def _term_html(entry: Entry, shown: str, tip_id: str) -> str:
    return (f'<span class="term" data-term="{escape(entry.key)}">'
            f'<button type="button" class="term-word" aria-describedby="{tip_id}">{shown}'
            f'</button><span class="term-tip" role="tooltip" id="{tip_id}">'
            f'{escape(entry.definition)}</span></span>')


def _mark_text(html_text: str, pattern: re.Pattern[str], by_word: dict[str, Entry],
               seen: set[str], prefix: str) -> str:
    """Mark the first occurrence of each term in an already escaped text run."""
    def replace(match: re.Match[str]) -> str:
        entry = by_word[match.group(0).lower()]
        if entry.key in seen:
            return match.group(0)
        seen.add(entry.key)
        return _term_html(entry, match.group(0), f"{prefix}-{len(seen)}")
    return pattern.sub(replace, html_text)


def _skipped_regions(tokens: list[str]) -> list[bool]:
    """For each token: is it inside an element whose text must stay as is (a marked term,
    a link, a button...)? Tracks the skipped element's name and its nesting depth."""
    skipping: tuple[str, int] | None = None
    flags = []
    for token in tokens:
        tag = _TAG_NAME.match(token) if token.startswith("<") else None
        if tag is None:
            flags.append(skipping is not None)
            continue
        closing, name = tag.group(1) == "/", tag.group(2).lower()
        if skipping is None:
            if not closing and (name in _SKIP_TAGS or 'class="term"' in token):
                skipping = (name, 0 if token.rstrip().endswith("/>") else 1)
        elif name == skipping[0] and not token.rstrip().endswith("/>"):
            depth = skipping[1] + (-1 if closing else 1)
            skipping = None if depth == 0 else (skipping[0], depth)
        flags.append(True)
    return flags


def highlight(loc: Localizer, text: str, *, id_prefix: str | None = None) -> Markup:
    """``text`` with the first occurrence of each glossary word marked, in ``loc``'s language.

    A plain ``str`` is escaped first (it may be report or user data). A ``Markup`` is kept
    as HTML: only its text outside tags is marked, never inside marked terms, links,
    buttons or code. English words match case-insensitively and whole, the longest first
    ("part-solid" before "solid"). ``id_prefix`` makes the tooltip ids (default: unique
    per call in this process).
    """
    if id_prefix is None:
        id_prefix = f"gl{next(_counter)}"
    elif not _ID_PREFIX.fullmatch(id_prefix):
        raise ValueError(f"id_prefix {id_prefix!r} must be a letter then letters, digits, - or _")
    pattern, by_word = _matcher(loc.language)
    source = str(text) if isinstance(text, Markup) else str(escape(text))
    tokens = _TAG.split(source)
    seen: set[str] = set()
    out = [token if skip or token.startswith("<")
           else _mark_text(token, pattern, by_word, seen, id_prefix)
           for token, skip in zip(tokens, _skipped_regions(tokens), strict=True)]
    return Markup("".join(out))
