"""Person Name (PN) normalisation for matching.

PS3.5 §6.2.1: a PN value has up to three component groups separated by ``=``
(Alphabetic, Ideographic, Phonetic), each with components separated by ``^``.
PS3.4 C.2.2.2.1 leaves PN case-sensitivity to the implementation; cloudfilm
matches case-insensitively, so the index keeps case-folded copies. Fuzzy
matching (PS3.18 §8.3.4.6, implementation defined) is prefix matching per name
component, ignoring case, ``^`` and spaces: the index keeps a word list.
"""

from __future__ import annotations

import re

_SEPARATORS = re.compile(r"[\^=\s,]+")


def fold(text: str) -> str:
    """Case-fold for matching; Chinese characters are unchanged."""
    return text.casefold()


def split_groups(value: str) -> tuple[str, str, str]:
    """Split a PN value into (alphabetic, ideographic, phonetic) groups."""
    parts = [*value.split("="), "", "", ""][:3]
    return parts[0], parts[1], parts[2]


def strip_trailing_separators(group: str) -> str:
    """``Doe^John^^^`` and ``Doe^John`` are the same name (PS3.5 §6.2.1)."""
    return group.rstrip("^ ")


def words(value: str) -> list[str]:
    """The name components of every group, folded: the units of fuzzy matching."""
    return [w for w in _SEPARATORS.split(fold(value)) if w]


def word_index(value: str) -> str:
    """Words framed by spaces, so a prefix query is ``LIKE '% word%'``."""
    found = words(value)
    return f" {' '.join(found)} " if found else ""
