"""QIDO-RS and C-FIND query parsing: parameters → a typed, validated `Query`.

Pure logic (no I/O, no database): the HTTP router parses query strings with
`parse_query`, and a DIMSE C-FIND handler converts its identifier with
`query_from_identifier`; both produce the same `Query`, which the index layer
translates to SQL.

Matching kinds follow PS3.4 C.2.2.2: single value (C.2.2.2.1), list of UIDs
(C.2.2.2.2), universal (C.2.2.2.3), wild card (C.2.2.2.4), range (C.2.2.2.5),
sequence (C.2.2.2.6), empty value (C.2.2.2.7) and multiple values (C.2.2.2.8).
Query parameters are those of PS3.18 §8.3.4: ``{attributeID}={value}``,
``includefield``, ``fuzzymatching``, ``limit`` and ``offset``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from enum import Enum

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword

from cloudfilm.domain.levels import Level


class QueryError(ValueError):
    """A query parameter is invalid; ``parameter`` names it (PS3.18 §8.6.3: 400)."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(f"{parameter}: {problem}")
        self.parameter = parameter
        self.problem = problem


class Kind(str, Enum):
    """How a condition matches (PS3.4 C.2.2.2)."""

    UNIVERSAL = "universal"  # C.2.2.2.3: empty value (or a lone '*'): return only
    EMPTY = "empty"  # C.2.2.2.7: '""' matches entities whose value is empty
    SINGLE = "single"  # C.2.2.2.1
    WILDCARD = "wildcard"  # C.2.2.2.4
    RANGE = "range"  # C.2.2.2.5
    LIST = "list"  # C.2.2.2.2 (UIDs) and C.2.2.2.8 (multiple values): any of `matches`


@dataclass(frozen=True)
class Match:
    """One value to match: a single value, a wildcard pattern or a range.

    For ranges the bounds are comparable strings ('' = open): DA ``YYYYMMDD``;
    TM normalised ``HHMMSS.FFFFFF`` with the upper bound at the *end* of the
    period it names (``10`` → ``105959.999999``); DT as given.
    """

    kind: Kind
    value: str = ""
    lower: str = ""
    upper: str = ""


@dataclass(frozen=True)
class Condition:
    """A match key: ``path`` is ``(tag,)`` or, for sequence matching, ``(sequence, ..., tag)``."""

    path: tuple[int, ...]
    vr: str
    kind: Kind
    matches: tuple[Match, ...] = ()
    parameter: str = ""

    @property
    def tag(self) -> int:
        """The attribute compared (the innermost one for sequence matching)."""
        return self.path[-1]

    @property
    def top(self) -> int:
        """The top-level attribute, returned in the response."""
        return self.path[0]


@dataclass(frozen=True)
class Query:
    """A validated query at one level (PS3.18 §8.3.4, PS3.4 C.4.1.1)."""

    level: Level
    conditions: tuple[Condition, ...] = ()
    includefields: frozenset[int] = field(default_factory=frozenset)
    include_all: bool = False
    include_defaults: bool = True
    fuzzymatching: bool = False
    limit: int | None = None
    offset: int = 0

    def matching(self) -> tuple[Condition, ...]:
        """Conditions that restrict the result (universal ones only ask for a value)."""
        return tuple(c for c in self.conditions if c.kind is not Kind.UNIVERSAL)


WILDCARD_VRS = frozenset({"AE", "AS", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
RANGE_VRS = frozenset({"DA", "TM", "DT"})
INTEGER_VRS = frozenset({"IS", "SL", "SS", "UL", "US", "SV", "UV"})
DECIMAL_VRS = frozenset({"DS", "FL", "FD"})
SINGLE_VALUED_VRS = frozenset({"LT", "ST", "UT", "UR"})  # backslash is not a delimiter
COMMA_LIST_VRS = frozenset({"UI", "CS"})  # values that can never contain a comma
CONTROL_PARAMETERS = frozenset({"accept", "charset"})  # PS3.18 §8.3.3.1, handled by the router

_HEX_TAG = re.compile(r"^[0-9A-Fa-f]{8}$")
_UID = re.compile(r"^[0-9.]{1,64}$")
_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DT = r"\d{4}(?:\d{2}){0,5}(?:\.\d{1,6})?(?:[+-]\d{4})?"
_DT_RANGE = re.compile(rf"^({_DT})?-({_DT})?$")
_DT_VALUE = re.compile(rf"^{_DT}$")


# -- attribute keys ----------------------------------------------------------------------


def vr_for(tag: int) -> str:
    """The dictionary VR (the first of ``US or SS``); ``UN`` for private/unknown tags."""
    try:
        return dictionary_VR(tag).split(" or ")[0]
    except KeyError:
        return "UN"


def resolve_tag(name: str, parameter: str) -> int:
    """An 8-hex-digit tag or a PS3.6 keyword (PS3.18 §8.3.4.1 ``{attributeID}``)."""
    if _HEX_TAG.match(name):
        return int(name, 16)
    tag = tag_for_keyword(name)
    if tag is None:
        raise QueryError(parameter, f"unknown attribute keyword '{name}'")
    return int(tag)


def resolve_path(name: str) -> tuple[int, ...]:
    """``Seq.Attr`` or ``00400275.00401001``: every element but the last must be a sequence."""
    parts = name.split(".")
    if any(not p for p in parts):
        raise QueryError(name, "empty attribute in a dotted path")
    path = tuple(resolve_tag(p, name) for p in parts)
    for tag in path[:-1]:
        if vr_for(tag) != "SQ":
            raise QueryError(
                name, f"{tag_name(tag)} is not a sequence, so it cannot be followed by '.'"
            )
    return path


def tag_name(tag: int) -> str:
    return keyword_for_tag(tag) or f"{tag:08X}"


# -- values ------------------------------------------------------------------------------


def _has_wildcard(value: str) -> bool:
    return "*" in value or "?" in value


def _check_date(value: str, parameter: str) -> str:
    if len(value) != 8 or not value.isdigit():
        raise QueryError(parameter, f"'{value}' is not a date (YYYYMMDD)")
    try:
        date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        raise QueryError(parameter, f"'{value}' is not a valid date") from None
    return value


def _time_parts(value: str, parameter: str) -> tuple[str, str | None, str | None, str | None]:
    found = _TIME.match(value.replace(":", ""))
    if not found:
        raise QueryError(parameter, f"'{value}' is not a time (HHMMSS.FFFFFF)")
    hours, minutes, seconds, fraction = found.groups()
    if fraction is not None and seconds is None:
        raise QueryError(parameter, f"'{value}': fractions need seconds (HHMMSS.F)")
    if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        raise QueryError(parameter, f"'{value}' is not a valid time")
    return hours, minutes, seconds, fraction


def time_lower(value: str, parameter: str = "time") -> str:
    """The start of the period a TM value names, as ``HHMMSS.FFFFFF`` (PS3.5 §6.2 TM)."""
    hours, minutes, seconds, fraction = _time_parts(value, parameter)
    return f"{hours}{minutes or '00'}{seconds or '00'}.{(fraction or '').ljust(6, '0')}"


def time_upper(value: str, parameter: str = "time") -> str:
    """The end of the period: ``10`` → ``105959.999999``, ``1015`` → ``101559.999999``."""
    hours, minutes, seconds, fraction = _time_parts(value, parameter)
    return f"{hours}{minutes or '59'}{seconds or '59'}.{(fraction or '').ljust(6, '9')}"


def _range(vr: str, value: str, parameter: str) -> Match:
    """``a-b``, ``a-`` or ``-b`` for DA, TM and DT (PS3.4 C.2.2.2.5)."""
    if vr == "DT":
        found = _DT_RANGE.match(value)
        if not found or value == "-":
            raise QueryError(parameter, f"'{value}' is not a date-time range")
        low, high = found.group(1) or "", found.group(2) or ""
    else:
        low, _, high = value.partition("-")
        if "-" in high or not (low or high):
            raise QueryError(parameter, f"'{value}' is not a range (a-b, a- or -b)")
    if vr == "DA":
        lower, upper = (_check_date(v, parameter) if v else "" for v in (low, high))
    elif vr == "TM":
        lower = time_lower(low, parameter) if low else ""
        upper = time_upper(high, parameter) if high else ""
    else:
        lower, upper = low, high
    if lower and upper and lower > upper:
        raise QueryError(parameter, f"range '{value}' ends before it starts")
    return Match(Kind.RANGE, lower=lower, upper=upper)


def _single(vr: str, value: str, parameter: str) -> Match:
    """One value of a list, validated for its VR."""
    if _has_wildcard(value):
        if vr not in WILDCARD_VRS:
            raise QueryError(parameter, f"wildcards '*' and '?' are not allowed for VR {vr}")
        return Match(Kind.WILDCARD, value=value)
    if vr in RANGE_VRS and "-" in value and not (vr == "DT" and _DT_VALUE.match(value)):
        return _range(vr, value, parameter)  # a DT with a negative UTC offset is one value
    if vr == "DA":
        return Match(Kind.SINGLE, value=_check_date(value, parameter))
    if vr == "TM":  # a time names a period: 10 matches 10:00:00 to 10:59:59.999999
        return Match(
            Kind.RANGE, lower=time_lower(value, parameter), upper=time_upper(value, parameter)
        )
    if vr == "DT" and not _DT_VALUE.match(value):
        raise QueryError(parameter, f"'{value}' is not a date-time (YYYYMMDDHHMMSS.FFFFFF&ZZXX)")
    if vr == "UI" and not _UID.match(value):
        raise QueryError(parameter, f"'{value}' is not a UID (digits and dots, at most 64)")
    if vr in INTEGER_VRS and not re.fullmatch(r"[+-]?\d+", value):
        raise QueryError(parameter, f"'{value}' is not an integer")
    if vr in DECIMAL_VRS and not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", value):
        raise QueryError(parameter, f"'{value}' is not a number")
    return Match(Kind.SINGLE, value=value)


def _split_values(vr: str, value: str) -> list[str]:
    """Backslash separates values (PS3.5 §6.4); commas too for UIDs and codes (PS3.18 §8.3.4.1)."""
    if vr in SINGLE_VALUED_VRS:
        return [value]
    parts = value.split("\\")
    if vr in COMMA_LIST_VRS:
        parts = [p for part in parts for p in part.split(",")]
    return [p.strip() if vr in {"UI", "CS", "DA", "TM", "DT"} else p for p in parts]


def make_condition(path: tuple[int, ...], value: str, parameter: str) -> Condition:
    """Classify and validate one ``attribute=value`` pair (PS3.4 C.2.2.2)."""
    vr = vr_for(path[-1])
    if vr == "SQ":
        if value not in ("", "*"):
            raise QueryError(
                parameter, "a sequence matches through its items, e.g. Sequence.Attribute=value"
            )
        return Condition(path, vr, Kind.UNIVERSAL, parameter=parameter)
    if value == "" or value == "*":
        return Condition(path, vr, Kind.UNIVERSAL, parameter=parameter)
    if value == '""':
        return Condition(path, vr, Kind.EMPTY, parameter=parameter)
    parts = [p for p in _split_values(vr, value) if p != ""]
    if not parts or "*" in parts:  # '*' among the values matches everything
        return Condition(path, vr, Kind.UNIVERSAL, parameter=parameter)
    matches = tuple(_single(vr, p, parameter) for p in parts)
    kind = Kind.LIST if len(matches) > 1 else matches[0].kind
    return Condition(path, vr, kind, matches, parameter)


# -- parameters --------------------------------------------------------------------------


def _includefields(value: str) -> tuple[frozenset[int], bool]:
    """``includefield`` takes keywords, tags or ``all``, comma-separated (PS3.18 §8.3.4.3)."""
    tags: set[int] = set()
    include_all = False
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        if item == "all":
            include_all = True
            continue
        tags.add(_include_tag(item))
    return frozenset(tags), include_all


def _include_tag(item: str) -> int:
    """A dotted include field returns its whole top-level sequence."""
    try:
        return resolve_path(item)[0]
    except QueryError as exc:
        raise QueryError("includefield", exc.problem) from None


def _non_negative(name: str, value: str, *, positive: bool = False) -> int:
    """``limit`` and ``offset`` are integers (PS3.18 §8.3.4.4); a limit of 0 means nothing."""
    text = value.strip()
    if not text.isdigit():
        raise QueryError(
            name, f"'{value}' is not a {'positive' if positive else 'non-negative'} integer"
        )
    number = int(text)
    if positive and number == 0:
        raise QueryError(name, "must be at least 1")
    return number


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered not in ("true", "false"):
        raise QueryError(name, f"'{value}' is not 'true' or 'false'")
    return lowered == "true"


def parse_query(params: Iterable[tuple[str, str]], level: Level) -> Query:
    """Parse QIDO-RS query parameters (keys may repeat) for ``level`` (PS3.18 §8.3.4)."""
    conditions: list[Condition] = []
    includes: set[int] = set()
    include_all = fuzzy = False
    limit: int | None = None
    offset = 0
    for name, value in params:
        if name == "includefield":
            tags, wants_all = _includefields(value)
            includes |= tags
            include_all = include_all or wants_all
        elif name == "fuzzymatching":
            fuzzy = _boolean(name, value)
        elif name == "limit":
            limit = _non_negative(name, value, positive=True)
        elif name == "offset":
            offset = _non_negative(name, value)
        elif name in CONTROL_PARAMETERS:
            continue
        else:
            conditions.append(_condition_for_parameter(name, value))
    return Query(
        level, tuple(conditions), frozenset(includes), include_all, True, fuzzy, limit, offset
    )


def _condition_for_parameter(name: str, value: str) -> Condition:
    """An ``{attributeID}={value}`` pair; anything else is an unknown parameter (400)."""
    looks_like_attribute = all(_HEX_TAG.match(p) or p[:1].isupper() for p in name.split("."))
    if not name or not looks_like_attribute:
        raise QueryError(
            name,
            "unknown query parameter (expected an attribute keyword or tag, "
            "includefield, fuzzymatching, limit or offset)",
        )
    return make_condition(resolve_path(name), value, name)


# -- C-FIND identifiers ------------------------------------------------------------------

NOT_KEYS = frozenset({0x00080005, 0x00080052, 0x00080053, 0x00080056, 0x00080054})


def _element_text(element: pydicom.DataElement) -> str:
    """A C-FIND key's value as the text a QIDO parameter would carry."""
    value = element.value
    if value is None:
        return ""
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return "\\".join(str(v) for v in value)
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    return str(value).strip() if element.VR != "PN" else str(value)


def _identifier_conditions(ds: pydicom.Dataset, prefix: tuple[int, ...]) -> list[Condition]:
    conditions: list[Condition] = []
    for element in ds:
        tag = int(element.tag)
        if element.tag.element == 0 or (not prefix and tag in NOT_KEYS):
            continue
        path = (*prefix, tag)
        name = ".".join(tag_name(t) for t in path)
        if element.VR == "SQ":
            items = list(element.value or [])
            if items:
                conditions.extend(_identifier_conditions(items[0], path))
            conditions.append(Condition(path, "SQ", Kind.UNIVERSAL, parameter=name))
            continue
        text = _element_text(element)
        if prefix and text == "":
            continue  # an empty key inside an item only asks for it: the sequence is returned
        conditions.append(make_condition(path, text, name))
    return conditions


def query_from_identifier(ds: pydicom.Dataset, level: Level) -> Query:
    """The `Query` of a C-FIND identifier (PS3.4 C.4.1.1.3): every key is returned, no defaults.

    Keys inside a sequence item become sequence matching (C.2.2.2.6); empty keys are
    universal matching (C.2.2.2.3).
    """
    conditions = _identifier_conditions(ds, ())
    returned = frozenset(c.top for c in conditions)
    return Query(level, tuple(conditions), returned, include_all=False, include_defaults=False)
