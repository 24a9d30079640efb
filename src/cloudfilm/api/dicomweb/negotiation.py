"""Choose what to send from the Accept header (PS3.18 §8.7.3).

``transfer-syntax=*`` means "as stored"; no transfer-syntax on application/dicom
means Explicit VR Little Endian, which cloudfilm produces by decoding.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.exceptions import HTTPException

from cloudfilm.api.media import MediaRange, parse_accept
from cloudfilm.domain.transfer_syntax import EXPLICIT_LE, FRAME_MEDIA_TYPES, MEDIA_TYPE_DEFAULT_TS

AS_STORED = "*"


def _not_acceptable(header: str | None, offer: str) -> HTTPException:
    return HTTPException(406, f"cannot satisfy Accept {header!r}: this resource is available as {offer}")


def _wants(ranges: list[MediaRange], part_types: tuple[str, ...]) -> MediaRange | None:
    for media in ranges:
        if media.type in ("*/*", "multipart/*"):
            return MediaRange("multipart/related", {"type": part_types[0]})
        if media.type == "multipart/related":
            part = media.params.get("type", part_types[0]).lower()
            if part in part_types or part in ("*/*", "*"):
                return media
        if media.type in part_types:  # a bare part type: treat as the multipart form
            return MediaRange("multipart/related", {"type": media.type, **media.params})
    return None


def instance_transfer_syntax(header: str | None) -> str:
    """The transfer syntax a client wants whole instances in (``*`` = as stored)."""
    media = _wants(parse_accept(header), ("application/dicom",))
    if media is None:
        raise _not_acceptable(header, 'multipart/related; type="application/dicom"')
    return media.params.get("transfer-syntax", EXPLICIT_LE)


@dataclass(frozen=True)
class FrameChoice:
    """Part media type and transfer syntax for frames or pixel bulk data."""

    media_type: str
    transfer_syntax: str


FRAME_PART_TYPES = ("application/octet-stream", *sorted(set(FRAME_MEDIA_TYPES.values())))


def _frame_choice(media: MediaRange) -> FrameChoice | None:
    """What one Accept range asks of a frame, or None if it names no frame media type."""
    if media.type in ("*/*", "multipart/*"):
        return FrameChoice("application/octet-stream", EXPLICIT_LE)
    if media.type == "multipart/related":
        part = media.params.get("type", "application/octet-stream").lower()
    elif media.type in FRAME_PART_TYPES:  # a bare part type: treat as the multipart form
        part = media.type
    else:
        return None
    if part in ("*/*", "*"):
        part = "application/octet-stream"
    if part not in FRAME_PART_TYPES:
        return None
    return FrameChoice(part, media.params.get("transfer-syntax", MEDIA_TYPE_DEFAULT_TS[part]))


def frame_choices(header: str | None) -> list[FrameChoice]:
    """Every form of a frame the client accepts, most preferred first (PS3.18 §8.7.3.5).

    The server sends the first one it can produce, so a client may ask for a compressed
    syntax and name uncompressed frames as the fallback (a lower q, or a later range).
    """
    found = [c for c in map(_frame_choice, parse_accept(header)) if c is not None]
    if not found:
        raise _not_acceptable(header, 'multipart/related; type="application/octet-stream"')
    return list(dict.fromkeys(found))


def frame_choice(header: str | None) -> FrameChoice:
    """The client's most preferred form of a frame."""
    return frame_choices(header)[0]


def wants_json(header: str | None) -> None:
    for media in parse_accept(header):
        if media.type in ("application/dicom+json", "application/json", "*/*", "application/*"):
            return
    raise _not_acceptable(header, "application/dicom+json")
