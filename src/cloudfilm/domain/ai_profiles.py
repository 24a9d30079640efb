"""What an AI service is sent: its profile names the series it takes (IHE AIR, "AI Results").

A node registered with ``--ai PROFILE`` receives each stored series the profile accepts,
once the series is stable. The rules are pure: the caller reads the series' facts from
the index (its modality, instance count and one instance's attributes).

``ct-chest``: the axial CT series of a chest study, as a lung nodule detector expects:
Modality CT (PS3.3 C.7.3.1), CT Image Storage instances, at least `MIN_CHEST_SLICES`
slices, Image Orientation (Patient) within ~25° of axial (PS3.3 C.7.6.2.1.1), not a
localizer (Image Type value 3 LOCALIZER, PS3.3 C.8.2.1.1.1), and a Body Part Examined
(PS3.3 C.7.3.1, CID 4031) that names the chest, or none at all (many scanners leave it
empty).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MIN_CHEST_SLICES = 30
AXIAL_NORMAL_Z = 0.9  # |cos| of the angle between the slice normal and the patient's z axis
CHEST_PARTS = frozenset({"CHEST", "THORAX", "LUNG", "CHEST_ABDOMEN", "CHESTABDOMEN",
                         "CHEST_ABDOMEN_PELVIS", "CHESTABDPELVIS", "WHOLEBODY"})


@dataclass(frozen=True)
class SeriesFacts:
    """A stored series as a profile looks at it."""

    modality: str
    instances: int
    sop_classes: frozenset[str]
    body_part: str = ""
    orientation: Sequence[float] = ()  # Image Orientation (Patient), six cosines
    image_type: Sequence[str] = ()


@dataclass(frozen=True)
class AiProfile:
    name: str
    description: str
    modalities: tuple[str, ...]  # the series' Modality must be one of these


AI_PROFILES: dict[str, AiProfile] = {
    "ct-chest": AiProfile("ct-chest", "axial CT series of a chest study "
                          f"(Modality CT, at least {MIN_CHEST_SLICES} slices)", ("CT",)),
}


class UnknownProfile(ValueError):
    """A profile name no AI service can be registered with."""


def profile_named(name: str) -> AiProfile:
    try:
        return AI_PROFILES[name]
    except KeyError:
        raise UnknownProfile(f"ai {name!r}: use one of {', '.join(sorted(AI_PROFILES))}") \
            from None


def refusal(profile: AiProfile, series: SeriesFacts) -> str | None:
    """Why ``series`` is not for an AI service of ``profile``; None when it is."""
    if profile.name == "ct-chest":
        return _ct_chest(series)
    return f"no rules for profile {profile.name!r}"


def _ct_chest(series: SeriesFacts) -> str | None:
    if series.modality.upper() != "CT":
        return f"modality {series.modality or '(none)'} is not CT"
    if series.sop_classes != {CT_IMAGE_STORAGE}:
        return "not only CT Image Storage instances"
    if series.instances < MIN_CHEST_SLICES:
        return f"{series.instances} slices, fewer than {MIN_CHEST_SLICES}"
    if any(v.upper() == "LOCALIZER" for v in series.image_type):
        return "a localizer"
    if not _axial(series.orientation):
        return "not axial"
    part = series.body_part.strip().upper().replace(" ", "")
    if part and part not in CHEST_PARTS:
        return f"body part {series.body_part} is not the chest"
    return None


def _axial(orientation: Sequence[float]) -> bool:
    if len(orientation) != 6:
        return False
    r, c = orientation[:3], orientation[3:]
    normal_z = r[0] * c[1] - r[1] * c[0]
    return abs(normal_z) >= AXIAL_NORMAL_Z
