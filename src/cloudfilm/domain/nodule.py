"""A pulmonary nodule as measured on one CT: the facts every follow-up rule starts from.

Decision support for a physician, never a diagnosis: these values feed guideline
look-ups (Fleischner 2017, Lung-RADS v2022) and a risk model (Brock), and a
clinician decides what they mean for the patient.

Pure logic, no I/O. Sizes are kept as entered; each guideline's own rounding is a
separate, named step, because the two guidelines round differently:

* Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243): size is the average
  of the long and short axes, "rounded to the nearest millimeter"; Recommendation 1
  reads "smaller than 6 mm (those 5 mm or smaller)". The tie-break is not stated;
  this project rounds half up (5.5 -> 6), with `Decimal` so that 6.5 -> 7 (Python's
  `round` gives 6) and 6.3 + 4.7 is exactly 11.
* Lung-RADS v2022 (ACR), Notes, nodule size: "measure both the long and short axis to
  one decimal point in mm, and report mean nodule diameter to one decimal point";
  "volumes, if obtained, should be reported to the nearest whole number in mm³". ACR
  does not state a tie-break either; half up is used here too (5.95 -> 6.0).
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import Enum

ONE_MM = Decimal("1")
TENTH_MM = Decimal("0.1")


class NoduleType(str, Enum):
    """Attenuation: the first split in both guidelines (Fleischner Table A vs B)."""

    SOLID = "solid"
    PART_SOLID = "part-solid"
    GROUND_GLASS = "ground-glass"  # Lung-RADS "non-solid", Brock "nonsolid"

    @property
    def subsolid(self) -> bool:
        """Fleischner 2017 Table B covers both part-solid and pure ground-glass nodules."""
        return self is not NoduleType.SOLID


class Calcification(str, Enum):
    """Calcification pattern. Four patterns are benign (Lung-RADS v2022 Category 1:
    "complete, central, popcorn, concentric rings"; diffuse = complete, laminated =
    concentric rings); any other calcification is indeterminate and does not exclude cancer."""

    NONE = "none"
    DIFFUSE = "diffuse"
    CENTRAL = "central"
    LAMINATED = "laminated"
    POPCORN = "popcorn"
    INDETERMINATE = "indeterminate"

    @property
    def benign(self) -> bool:
        return self in (Calcification.DIFFUSE, Calcification.CENTRAL,
                        Calcification.LAMINATED, Calcification.POPCORN)


class Airway(str, Enum):
    """Airway (endobronchial) location, which Lung-RADS v2022 classifies apart from size."""

    NONE = "none"
    SUBSEGMENTAL = "subsegmental"
    SEGMENTAL_OR_PROXIMAL = "segmental-or-proximal"


class Lobe(str, Enum):
    """Lobe of the nodule's centre. The lingula is part of the left upper lobe."""

    RUL = "RUL"
    RML = "RML"
    RLL = "RLL"
    LUL = "LUL"
    LLL = "LLL"

    @property
    def is_upper(self) -> bool:
        """Upper-lobe location is a risk factor (Fleischner 2017; Brock 'upper lobe')."""
        return self in (Lobe.RUL, Lobe.LUL)

    @classmethod
    def parse(cls, text: str) -> Lobe:
        """Accept codes and common names; 'lingula' maps to LUL (it is part of that lobe)."""
        key = " ".join(text.strip().lower().replace("_", " ").replace("-", " ").split())
        aliases = {
            "rul": cls.RUL, "right upper lobe": cls.RUL, "right upper": cls.RUL,
            "rml": cls.RML, "right middle lobe": cls.RML, "middle lobe": cls.RML,
            "right middle": cls.RML,
            "rll": cls.RLL, "right lower lobe": cls.RLL, "right lower": cls.RLL,
            "lul": cls.LUL, "left upper lobe": cls.LUL, "left upper": cls.LUL,
            "lingula": cls.LUL, "lingular": cls.LUL,
            "lll": cls.LLL, "left lower lobe": cls.LLL, "left lower": cls.LLL,
        }
        if key not in aliases:
            raise ValueError(f"unknown lobe {text!r}: use RUL, RML, RLL, LUL (incl. lingula), LLL")
        return aliases[key]


class Method(str, Enum):
    """How the axes (and volume) were obtained; volumes differ between software packages."""

    MANUAL = "manual"
    SEMI_AUTOMATIC = "semi-automatic"


class VolumeSource(str, Enum):
    """Whether a volume was measured by software or estimated from the mean diameter."""

    MEASURED = "measured"
    SPHERE_ESTIMATE = "sphere-estimate"


@dataclass(frozen=True)
class Morphology:
    """Shape and location findings the reader records.

    ``juxtapleural`` covers perifissural and juxtapleural (pleura-attached) nodules;
    Lung-RADS v2022 Category 2 additionally needs ``smooth_margins`` and
    ``benign_shape`` (oval, lentiform or triangular) for them.
    """

    spiculated: bool = False
    juxtapleural: bool = False
    smooth_margins: bool = False
    benign_shape: bool = False
    contains_fat: bool = False
    airway: Airway = Airway.NONE


def _dec(value: float | int | Decimal) -> Decimal:
    """Decimal of the shortest repr, so 6.3 stays 6.3 (not 6.29999...)."""
    return value if isinstance(value, Decimal) else Decimal(repr(float(value)))


def round_half_up(value: float | Decimal, step: Decimal = ONE_MM) -> Decimal:
    """Round to ``step`` with ties away from zero (5.5 -> 6, 6.5 -> 7); never Python `round`."""
    return _dec(value).quantize(step, rounding=ROUND_HALF_UP)


def sphere_volume_mm3(diameter_mm: float | Decimal) -> float:
    """V = π·d³/6. Lung-RADS v2022 volume cut-offs are this at 4, 6, 8, 10, 15 and 30 mm."""
    d = float(diameter_mm)
    return math.pi * d ** 3 / 6.0


def add_months(day: date, months: int) -> date:
    """Calendar months later, clamped to the month's end (31 Jan + 1 month = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class Measurement:
    """One reader's measurement of one nodule on one image.

    The image reference (study/series/SOP instance UIDs and, for multi-frame images, the
    1-based frame number, which DICOM numbers rather than identifies by UID) ties the
    numbers back to the pixels. ``centre_mm`` is in DICOM patient coordinates (LPS, mm).
    ``solid_component_mm`` is the mean diameter of the solid part of a part-solid nodule.
    ``volume_mm3`` is set only when software measured it; otherwise `volume` estimates it
    from the mean diameter and says so.
    """

    study_uid: str
    series_uid: str
    instance_uid: str
    centre_mm: tuple[float, float, float]
    long_axis_mm: float
    short_axis_mm: float
    nodule_type: NoduleType
    study_date: date
    measured_by: str
    method: Method = Method.MANUAL
    frame_number: int | None = None
    solid_component_mm: float | None = None
    volume_mm3: float | None = None
    calcification: Calcification = Calcification.NONE
    morphology: Morphology = field(default_factory=Morphology)
    lobe: Lobe | None = None

    def __post_init__(self) -> None:
        for name in ("study_uid", "series_uid", "instance_uid"):
            if not getattr(self, name):
                raise ValueError(f"{name} is required: a measurement must point at its image")
        if len(self.centre_mm) != 3:
            raise ValueError("centre_mm must be (x, y, z) in patient coordinates")
        if self.frame_number is not None and self.frame_number < 1:
            raise ValueError("frame_number is 1-based")
        if not (self.long_axis_mm > 0 and self.short_axis_mm > 0):
            raise ValueError("axes must be positive (mm)")
        if self.short_axis_mm > self.long_axis_mm:
            raise ValueError("short axis is longer than the long axis: swap them")
        if self.solid_component_mm is not None:
            if self.nodule_type is not NoduleType.PART_SOLID:
                raise ValueError("only a part-solid nodule has a solid component")
            if not 0 < self.solid_component_mm <= self.long_axis_mm:
                raise ValueError("solid component must be > 0 and not larger than the nodule")
        if self.volume_mm3 is not None and self.volume_mm3 <= 0:
            raise ValueError("volume must be positive (mm³)")

    @property
    def mean_diameter_mm(self) -> Decimal:
        """(long + short) / 2, exact: no guideline's rounding applied yet."""
        return (_dec(self.long_axis_mm) + _dec(self.short_axis_mm)) / 2

    @property
    def fleischner_size_mm(self) -> int:
        """Fleischner 2017 size: average of the axes rounded to the nearest mm, half up."""
        return int(round_half_up(self.mean_diameter_mm))

    @property
    def fleischner_solid_component_mm(self) -> int | None:
        """The solid component, rounded like the whole nodule (Fleischner Rec. 4 splits at 6 mm)."""
        if self.solid_component_mm is None:
            return None
        return int(round_half_up(self.solid_component_mm))

    @property
    def lungrads_mean_mm(self) -> Decimal:
        """Lung-RADS v2022 mean diameter: each axis to 0.1 mm, mean reported to 0.1 mm (half up)."""
        long_, short = round_half_up(self.long_axis_mm, TENTH_MM), round_half_up(
            self.short_axis_mm, TENTH_MM)
        return round_half_up((long_ + short) / 2, TENTH_MM)

    @property
    def lungrads_solid_component_mm(self) -> Decimal | None:
        """Solid component mean diameter to 0.1 mm, as for the whole nodule."""
        if self.solid_component_mm is None:
            return None
        return round_half_up(self.solid_component_mm, TENTH_MM)

    @property
    def volume(self) -> tuple[float, VolumeSource]:
        """The volume used downstream and where it came from (measured, or π·d³/6 on the mean)."""
        if self.volume_mm3 is not None:
            return float(self.volume_mm3), VolumeSource.MEASURED
        return sphere_volume_mm3(self.mean_diameter_mm), VolumeSource.SPHERE_ESTIMATE

    @property
    def volume_whole_mm3(self) -> int:
        """Volume to the nearest whole mm³ (Lung-RADS v2022 Notes), half up."""
        return int(round_half_up(self.volume[0]))

    @property
    def measured_volume_whole_mm3(self) -> int | None:
        """The measured volume to the nearest mm³, or None when only an estimate exists."""
        return None if self.volume_mm3 is None else int(round_half_up(self.volume_mm3))

    @property
    def benign_appearance(self) -> bool:
        """Benign calcification pattern or macroscopic fat (Lung-RADS v2022 Category 1)."""
        return self.calcification.benign or self.morphology.contains_fat

    @property
    def upper_lobe(self) -> bool:
        return self.lobe is not None and self.lobe.is_upper
