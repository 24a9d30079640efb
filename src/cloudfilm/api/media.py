"""Media types and Accept negotiation (RFC 9110 §12.5.1, PS3.18 §8.7).

Parameters may be quoted or not (``type="application/dicom"`` and
``type=application/dicom`` are the same); OHIF sends both forms.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MediaRange:
    type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    def matches(self, media_type: str) -> bool:
        wanted_major, _, wanted_minor = self.type.partition("/")
        major, _, minor = media_type.partition("/")
        return (wanted_major in ("*", major)) and (wanted_minor in ("*", minor))


def _split(text: str, separator: str) -> list[str]:
    """Split on a separator outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text:
        if char == '"':
            quoted = not quoted
        if char == separator and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def parse_media_type(text: str) -> MediaRange:
    pieces = _split(text, ";")
    if not pieces:
        return MediaRange("*/*")
    params: dict[str, str] = {}
    q = 1.0
    for piece in pieces[1:]:
        name, _, value = piece.partition("=")
        name, value = name.strip().lower(), value.strip().strip('"')
        if name == "q":
            try:
                q = float(value)
            except ValueError:
                q = 0.0
        else:
            params[name] = value
    return MediaRange(pieces[0].lower(), params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """Media ranges, most preferred first; an absent header accepts anything."""
    if not header:
        return [MediaRange("*/*")]
    ranges = [parse_media_type(item) for item in _split(header, ",")]
    return sorted((r for r in ranges if r.q > 0), key=lambda r: -r.q)
