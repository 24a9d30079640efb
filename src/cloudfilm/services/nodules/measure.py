"""Measure the nodule under a click on a stored CT slice: load the series, segment, report.

A physician usually clicks several nodules in the same series, and loading a series (reading
and decoding every slice) takes far longer than segmenting. The last `CACHED_VOLUMES` volumes
are therefore kept in memory, keyed by data directory and series, and checked against the
index on every use so a series that gained or lost instances is reloaded. Memory: a volume
is float32, 1 MiB per 512x512 slice (a 120-slice demo series is 120 MiB, a 300-slice
0.625 mm chest CT 300 MiB); volumes beyond `CACHE_BYTES` in total are dropped, oldest first
(the one just loaded is always kept).

Coordinates of the click and of the outline are pixel indices of the slice: (0, 0) is the
centre of the top-left pixel, as in `CtVolume`; DICOM SCOORD image coordinates (PS3.3
C.18.6.1.2) are these plus 0.5.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from cloudfilm.domain.nodule import TENTH_MM, Method, round_half_up
from cloudfilm.domain.segmentation import NoduleSegmentation, SegmentationError, segment_nodule
from cloudfilm.domain.volume import CtVolume
from cloudfilm.services.archive.retrieve import NotStored, StoredInstance
from cloudfilm.services.imaging.volumes import load_series_volume

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

CACHED_VOLUMES = 2
CACHE_BYTES = 768 * 2**20


class _VolumeCache:
    """The last few series volumes, reloaded when the stored instances change."""

    def __init__(self) -> None:
        self._volumes: OrderedDict[tuple[str, str, str], tuple[tuple[str, ...], CtVolume]] = (
            OrderedDict())
        self._lock = threading.Lock()

    def get(self, archive: Archive, study_uid: str, series_uid: str,
            stored: Sequence[StoredInstance]) -> CtVolume:
        """The series' volume, loaded unless cached with the same ``stored`` instances."""
        fingerprint = tuple(sorted(f"{i.sop_uid}:{i.blob_key}" for i in stored))
        key = (str(archive.settings.data_dir), study_uid, series_uid)
        with self._lock:
            cached = self._volumes.get(key)
            if cached is not None and cached[0] == fingerprint:
                self._volumes.move_to_end(key)
                return cached[1]
            volume = load_series_volume(archive, study_uid, series_uid)
            self._volumes[key] = (fingerprint, volume)
            self._trim()
            return volume

    def _trim(self) -> None:
        while len(self._volumes) > 1 and (
                len(self._volumes) > CACHED_VOLUMES
                or sum(v.hu.nbytes for _, v in self._volumes.values()) > CACHE_BYTES):
            self._volumes.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._volumes.clear()


volume_cache = _VolumeCache()


def measure_at(archive: Archive, study_uid: str, series_uid: str, instance_uid: str,
               column: float, row: float) -> tuple[NoduleSegmentation, CtVolume]:
    """Segment the nodule clicked at (column, row) on one slice of a stored CT series.

    Raises `NotStored` for unknown UIDs (or an instance not in the series), `VolumeError`
    for a series that is not one regular volume, and `SegmentationError` for a click that
    is outside the image or not on a measurable nodule.
    """
    try:
        stored = archive.retrieve.instances(study_uid, series_uid)
    except NotStored:
        raise NotStored(f"series {series_uid} of study {study_uid}") from None
    if not any(i.sop_uid == instance_uid for i in stored):
        raise NotStored(f"instance {instance_uid} in series {series_uid}")
    volume = volume_cache.get(archive, study_uid, series_uid, stored)
    try:
        k = volume.slice_of(instance_uid)
    except KeyError:
        raise SegmentationError(f"instance {instance_uid} is not an axial slice of the "
                                "series volume (a localizer or multi-frame image?)") from None
    rows, columns = volume.hu.shape[1:]
    i, j = int(round(row)), int(round(column))
    if not (0 <= i < rows and 0 <= j < columns):
        raise SegmentationError(f"the click (x={column:g}, y={row:g}) is outside the "
                                f"{columns}x{rows} image")
    return segment_nodule(volume, (k, i, j)), volume


def _tenth(value: float) -> float:
    return float(round_half_up(value, TENTH_MM))


def measurement_json(seg: NoduleSegmentation, volume: CtVolume) -> dict[str, Any]:
    """The measurement as the CLI and the API report it, rounded as Lung-RADS v2022 says.

    Axes to 0.1 mm, the mean of the rounded axes to 0.1 mm, the volume to the nearest mm³
    (all half up, as `cloudfilm.domain.nodule` does); centre to 0.1 mm; HU whole.
    """
    long_axis = round_half_up(seg.long_axis_mm, TENTH_MM)
    short_axis = round_half_up(seg.short_axis_mm, TENTH_MM)
    return {
        "study_uid": volume.study_uid,
        "series_uid": volume.series_uid,
        "best_slice_instance_uid": seg.best_slice_instance_uid,
        "long_axis_mm": float(long_axis),
        "short_axis_mm": float(short_axis),
        "mean_diameter_mm": float(round_half_up((long_axis + short_axis) / 2, TENTH_MM)),
        "volume_mm3": int(round_half_up(seg.volume_mm3, Decimal(1))),
        "center_patient_mm": [_tenth(v) for v in seg.centre_patient_mm],
        "mean_hu": int(round_half_up(seg.mean_hu, Decimal(1))),
        "solid_fraction": float(round_half_up(seg.solid_fraction, Decimal("0.01"))),
        "suggested_type": seg.suggested_type.value,
        "method": Method.SEMI_AUTOMATIC.value,
        "outline": seg.outline,
    }
