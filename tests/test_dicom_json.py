"""DICOM JSON conversion: the value cache never changes pydicom's output."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from cloudfilm.domain import dicom_json
from cloudfilm.domain.dicom_json import dataset_to_json

DATA = Path(get_testdata_file("CT_small.dcm")).parent
FILES = sorted(p for p in DATA.glob("*.dcm")) + sorted((DATA / "charset_files").glob("*.dcm"))


def _read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, defer_size=4096, force=True)


def _reference(ds: pydicom.Dataset, prefix: str) -> dict:
    """pydicom's own JSON for every element we do not turn into a BulkDataURI."""
    out = {}
    for tag in sorted(ds.keys()):
        if tag.element == 0:
            continue
        element = ds[tag]
        key = f"{int(tag):08X}"
        if element.VR == "SQ":
            items = [_reference(child, f"{prefix}/{key}/{i}") for i, child in enumerate(element.value)]
            out[key] = {"vr": "SQ", "Value": items} if items else {"vr": "SQ"}
        elif dicom_json.is_bulk(int(tag), element.VR, len(element.value) if isinstance(element.value, bytes) else 0):
            out[key] = {"vr": element.VR, "BulkDataURI": f"{prefix}/{key}"}
        else:
            out[key] = element.to_json_dict(None, 1 << 62)
    return out


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_cold_and_warm_cache_both_equal_pydicom(path: Path) -> None:
    try:
        expected = _reference(_read(path), "p")
    except Exception as exc:  # noqa: BLE001 - whatever pydicom raises, ingest must raise too
        with pytest.raises(type(exc)):  # what pydicom can't convert, ingest refuses too
            dataset_to_json(_read(path), "p")
        return
    dicom_json._CACHE = dicom_json._JsonValueCache()
    cold = dataset_to_json(_read(path), "p")
    warm = dataset_to_json(_read(path), "p")
    assert cold == expected
    assert warm == expected


def test_the_cache_is_bounded() -> None:
    cache = dicom_json._JsonValueCache(size=3)
    for i in range(10):
        cache.put((i,), {"vr": "IS", "Value": [i]})
    assert cache.get((0,)) is None and cache.get((9,)) == {"vr": "IS", "Value": [9]}
    assert len(cache._items) == 3
