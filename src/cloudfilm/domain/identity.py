"""Is this hospital record the same human being as that person? (demographics only).

Used where a record is attached to a person without an operator looking: an operator's
suggestion list, and a patient uploading a CD into their own folder. The rule is
deliberately strict, as in IHE PIX-style deterministic matching: the birth date must
be known and equal, one name (any PN group, folded to words, order kept) must be
shared, and the sex must agree when both sides state it. Anything less is refused and
left to an operator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cloudfilm.domain import names


def name_keys(value: str) -> set[tuple[str, ...]]:
    """Each non-empty PN group as folded words, so 'Zhang^San' ~ 'ZHANG SAN'."""
    return {tuple(names.words(g)) for g in names.split_groups(value) if names.words(g)}


def record_name_keys(record: Any) -> set[tuple[str, ...]]:
    """The folded name groups stored on a patient row (or its column dict)."""
    get = record.get if isinstance(record, Mapping) else lambda k: getattr(record, k)
    return {tuple(names.words(v)) for v in (get("name_alphabetic"), get("name_ideographic"),
                                            get("name_phonetic")) if v and names.words(v)}


@dataclass(frozen=True)
class Profile:
    """What is known of a person: every name, birth date and sex on them and their records."""

    names: frozenset[tuple[str, ...]]
    births: frozenset[str]
    sexes: frozenset[str]

    @classmethod
    def of(cls, display_name: str, birth_date: str, sex: str,
           records: Iterable[Any] = ()) -> Profile:
        records = list(records)
        keys = name_keys(display_name).union(*(record_name_keys(r) for r in records))
        births = {b for b in [birth_date, *(_get(r, "birth_date") for r in records)] if b}
        sexes = {s.upper() for s in [sex, *(_get(r, "sex") for r in records)] if s}
        return cls(frozenset(keys), frozenset(births), frozenset(sexes))


def _get(record: Any, key: str) -> str:
    value = record.get(key) if isinstance(record, Mapping) else getattr(record, key)
    return str(value or "")


def mismatch(profile: Profile, record: Any) -> str | None:
    """None when ``record`` matches ``profile``; else which demographic disagrees."""
    birth, sex = _get(record, "birth_date"), _get(record, "sex").upper()
    if not profile.births or not birth:
        return "the birth date is missing"
    if birth not in profile.births:
        return "the birth date differs"
    if not record_name_keys(record) & profile.names:
        return "the name differs"
    if profile.sexes and sex and sex not in profile.sexes:
        return "the sex differs"
    return None
