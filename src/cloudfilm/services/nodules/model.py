"""What nodule care is made of: its errors, where a patient's nodules live (Folder), the
facts of a study, a new measurement and its checks, and a stored row as the domain reads it.

Its own module so the service and the SR writer (`reports`) share these without importing
each other.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sqlalchemy import and_

from cloudfilm.domain.nodule import (
    Airway,
    Calcification,
    Lobe,
    Measurement,
    Method,
    Morphology,
    NoduleType,
)
from cloudfilm.storage.index.nodule_models import NoduleMeasurementRow

GUIDELINES = ("fleischner-2017", "lung-rads-2022")
DEFAULT_GUIDELINE = "fleischner-2017"
# Fleischner's risk column is the physician's judgement; until they set it, the
# high-risk column is used because it never recommends less follow-up than low risk.
DEFAULT_RISK = "high"
_UID_ROOT = "2.25."  # UUID-derived UIDs (PS3.5 B.2): no registered root needed


class NoduleError(ValueError):
    """A request the nodule model cannot carry out (the message says why)."""


class NotFound(LookupError):
    pass


def new_uid() -> str:
    return _UID_ROOT + str(uuid.uuid4().int)


@dataclass(frozen=True)
class Folder:
    """Whose nodules: a linked person, else one hospital's patient record."""

    person_id: int | None
    patient_pk: int | None

    def where(self, model: Any) -> Any:
        if self.person_id is not None:
            return model.person_id == self.person_id
        return and_(model.patient_pk == self.patient_pk, model.person_id.is_(None))


@dataclass(frozen=True)
class StudyFacts:
    study_uid: str
    study_date: date
    folder: Folder
    birth_date: str
    sex: str
    patient_id: str = ""
    issuer: str = ""
    name_alphabetic: str = ""
    name_ideographic: str = ""

    @property
    def age(self) -> int | None:
        """Age in whole years on the study date (None: birth date unknown)."""
        try:
            return age_at(self.birth_date, self.study_date)
        except NoduleError:
            return None


@dataclass(frozen=True)
class NewMeasurement:
    """What a reader (or the segmentation) gives for one nodule on one image."""

    series_uid: str
    instance_uid: str
    centre_mm: tuple[float, float, float]
    long_axis_mm: float
    short_axis_mm: float
    nodule_type: str = "solid"
    volume_mm3: float | None = None
    solid_component_mm: float | None = None
    calcification: str = "none"
    spiculated: bool = False
    juxtapleural: bool = False
    airway: str = "none"
    lobe: str | None = None
    method: str = "manual"
    frame_number: int | None = None
    # Drawing on the best slice, in pixel indices ((0, 0) = centre of the first pixel, as
    # the viewer's and `cloudfilm measure`'s x/y): {"instance_uid", "contour", "long_axis", ...}
    outline: dict[str, Any] = field(default_factory=dict)
    source: str = "cloudfilm"
    sr_instance_uid: str | None = None
    tracking_uid: str | None = None


def parse_date(text: str) -> date:
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except (TypeError, ValueError):
        raise NoduleError("the study has no valid StudyDate: nodules are dated by their study") from None


def to_domain(row: NoduleMeasurementRow) -> Measurement:
    """A stored measurement as the guideline code sees it."""
    return Measurement(
        study_uid=row.study_uid, series_uid=row.series_uid, instance_uid=row.instance_uid,
        centre_mm=(row.centre_x, row.centre_y, row.centre_z), long_axis_mm=row.long_axis_mm,
        short_axis_mm=row.short_axis_mm, nodule_type=NoduleType(row.nodule_type),
        study_date=row.study_date, measured_by=row.measured_by, method=Method(row.method),
        frame_number=row.frame_number, solid_component_mm=row.solid_component_mm,
        volume_mm3=row.volume_mm3, calcification=Calcification(row.calcification),
        morphology=Morphology(spiculated=row.spiculated, juxtapleural=row.juxtapleural,
                              smooth_margins=row.juxtapleural and not row.spiculated,
                              benign_shape=row.juxtapleural, airway=Airway(row.airway)),
        lobe=Lobe(row.lobe) if row.lobe else None)


def validate_measurement(m: NewMeasurement) -> None:
    """Check the reader's values with the domain's own rules before anything is stored."""
    for name in ("spiculated", "juxtapleural"):
        if not isinstance(getattr(m, name), bool):
            raise NoduleError(f"{name} must be true or false")
    for name in ("nodule_type", "calcification", "airway", "method"):
        if not isinstance(getattr(m, name), str):
            raise NoduleError(f"{name} must be text")
    if m.lobe is not None and not isinstance(m.lobe, str):
        raise NoduleError("lobe must be text (RUL, RML, RLL, LUL or LLL)")
    for name in ("long_axis_mm", "short_axis_mm", "volume_mm3", "solid_component_mm"):
        value = getattr(m, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise NoduleError(f"{name} must be a number")
    for name, kind in (("nodule_type", NoduleType), ("calcification", Calcification),
                       ("airway", Airway), ("method", Method)):
        if getattr(m, name) not in {k.value for k in kind}:
            raise NoduleError(f"{name} must be one of {', '.join(k.value for k in kind)}")
    try:
        if m.lobe:
            Lobe.parse(m.lobe)
        Measurement(study_uid="x", series_uid=m.series_uid or "x", instance_uid=m.instance_uid or "x",
                    centre_mm=m.centre_mm, long_axis_mm=m.long_axis_mm,
                    short_axis_mm=m.short_axis_mm, nodule_type=NoduleType(m.nodule_type),
                    study_date=date.today(), measured_by="x",
                    solid_component_mm=m.solid_component_mm, volume_mm3=m.volume_mm3)
    except ValueError as error:
        raise NoduleError(str(error)) from None


def measurement_dict(row: NoduleMeasurementRow, label: str | None = None) -> dict[str, Any]:
    mean = (row.long_axis_mm + row.short_axis_mm) / 2
    return {"id": row.id, "nodule_id": row.nodule_id, "label": label,
            "study_uid": row.study_uid, "series_uid": row.series_uid,
            "instance_uid": row.instance_uid, "frame_number": row.frame_number,
            "study_date": row.study_date.isoformat(),
            "center_patient_mm": [row.centre_x, row.centre_y, row.centre_z],
            "long_axis_mm": round(row.long_axis_mm, 1), "short_axis_mm": round(row.short_axis_mm, 1),
            "mean_diameter_mm": round(mean, 1),
            "volume_mm3": None if row.volume_mm3 is None else round(row.volume_mm3),
            "solid_component_mm": row.solid_component_mm, "type": row.nodule_type,
            "calcification": row.calcification, "spiculated": row.spiculated,
            "juxtapleural": row.juxtapleural, "airway": row.airway, "lobe": row.lobe,
            "method": row.method, "measured_by": row.measured_by, "source": row.source,
            "link": row.link, "match_distance_mm": row.match_distance_mm,
            "sr_instance_uid": row.sr_instance_uid,
            "outline": json.loads(row.outline or "{}")}


def age_at(birth: str, when: date) -> int:
    try:
        born = date(int(birth[:4]), int(birth[4:6]), int(birth[6:8]))
    except (TypeError, ValueError):
        raise NoduleError("the patient's birth date is unknown: the guidelines need the age") from None
    return when.year - born.year - ((when.month, when.day) < (born.month, born.day))
