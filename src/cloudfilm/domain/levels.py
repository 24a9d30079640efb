"""Which attributes belong to which query/retrieve level.

The sets follow the PS3.3 modules of each information entity: Patient (C.7.1.1),
General Study and Patient Study (C.7.2.1, C.7.2.2), General Series, Frame of
Reference and General Equipment (C.7.3.1, C.7.4.1, C.7.5.1). Everything else is
instance level. InstitutionName is copied to the study level as well, because a
patient's timeline names the hospital of each study.
"""

from __future__ import annotations

from enum import Enum


class Level(str, Enum):
    PATIENT = "PATIENT"
    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


PATIENT_TAGS: frozenset[int] = frozenset({
    0x00100010, 0x00100020, 0x00100021, 0x00100022, 0x00100024, 0x00100030, 0x00100032,
    0x00100040, 0x00100200, 0x00101000, 0x00101001, 0x00101002, 0x00101040, 0x00101060,
    0x00102000, 0x00102110, 0x00102154, 0x00102160, 0x00102201, 0x00102297, 0x00104000,
    0x00120062, 0x00120063,
})

STUDY_TAGS: frozenset[int] = frozenset({
    0x0020000D, 0x00080020, 0x00080030, 0x00080050, 0x00080051, 0x00080090, 0x00080096,
    0x00081030, 0x00081032, 0x00081048, 0x00081060, 0x00081080, 0x00081110, 0x00200010,
    0x00101010, 0x00101020, 0x00101030, 0x00102180, 0x001021B0, 0x001021C0, 0x00321033,
    0x00401012, 0x00080201, 0x00080080,
})

SERIES_TAGS: frozenset[int] = frozenset({
    0x00080060, 0x0020000E, 0x00200011, 0x00200060, 0x00080021, 0x00080031, 0x00081050,
    0x00181030, 0x0008103E, 0x0008103F, 0x00081070, 0x00081111, 0x00180015, 0x00185100,
    0x00400244, 0x00400245, 0x00400253, 0x00400254, 0x00400275, 0x00200052, 0x00201040,
    0x00080070, 0x00080080, 0x00080081, 0x00081010, 0x00081040, 0x00081090, 0x00181000,
    0x00181020, 0x00280108, 0x00280109,
})

# Attributes that every QIDO response includes at each level (PS3.18 Tables 10.6.3-3/4/5).
STUDY_DEFAULT_RETURN: tuple[int, ...] = (
    0x00080005, 0x00080020, 0x00080030, 0x00080050, 0x00080056, 0x00080061, 0x00080090,
    0x00080201, 0x00081190, 0x00100010, 0x00100020, 0x00100021, 0x00100030, 0x00100040,
    0x0020000D, 0x00200010, 0x00201206, 0x00201208, 0x00081030,
)
SERIES_DEFAULT_RETURN: tuple[int, ...] = (
    0x00080005, 0x00080060, 0x00080201, 0x0008103E, 0x00081190, 0x0020000D, 0x0020000E,
    0x00200011, 0x00201209, 0x00400244, 0x00400245, 0x00400275,
)
INSTANCE_DEFAULT_RETURN: tuple[int, ...] = (
    0x00080005, 0x00080016, 0x00080018, 0x00080056, 0x00080201, 0x00081190, 0x0020000D,
    0x0020000E, 0x00200013, 0x00280010, 0x00280011, 0x00280100, 0x00280008, 0x00083002,
)

# Computed at query time (PS3.18 Table 10.6.3-3/4/5), never stored.
COMPUTED_STUDY = frozenset({0x00080061, 0x00201206, 0x00201208})
COMPUTED_SERIES = frozenset({0x00201209})


def level_of(tag: int) -> Level:
    """The highest level an attribute belongs to (patient attributes count as study level in QIDO)."""
    if tag in PATIENT_TAGS:
        return Level.PATIENT
    if tag in STUDY_TAGS:
        return Level.STUDY
    if tag in SERIES_TAGS:
        return Level.SERIES
    return Level.IMAGE
