"""Apply the Annex E profile (domain/deidentification.py) to one instance, with `deid`.

Library choice (issue 15): ``deid`` (pydicom/deid, MIT) over ``dicognito``.
``dicognito`` applies one fixed policy (every name, UID, date and a list of IDs replaced
by seeded random values; descriptors and private tags kept) with no notion of the Annex E
options. ``deid`` takes a recipe of per-attribute actions (REMOVE, BLANK, KEEP, REPLACE
with a callable), walks nested sequences and removes private tags, so Table E.1-1 and its
option columns become a recipe line by line (`recipe_text`). Two of its habits are worked
around here: it memoises the fields of every data set it parses (``functools.cache`` keyed
by object identity), which would keep every exported instance in memory, so the cache is
cleared after each one; and it swaps ``FileDataset.__hash__`` while parsing, so parses are
serialised by a lock.

Written by hand, because no library does it: the keyed HMAC pseudonyms (PatientID per
person, UIDs) and the per-person date shift (called from the recipe as ``func:``), the
Clean Descriptors check, the Retain Safe Private filter, the safety net that replaces any
person name left, the removal of overlays, and the de-identification method attributes.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable, Iterable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID

from cloudfilm.domain.deidentification import (
    DUMMY_NAME,
    DUMMY_TEXT,
    TABLE,
    Action,
    Options,
    clean_text,
    identifying_tokens,
    is_standard_uid,
    method_codes,
    pseudo_uid,
    shift_date,
    shift_datetime,
)

LIBRARY = f"deid {version('deid')}"
_PARSE_LOCK = threading.Lock()
_SOURCE_KEYWORDS = ("PatientName", "PatientID", "OtherPatientIDs", "IssuerOfPatientID",
                    "AccessionNumber", "InstitutionName", "InstitutionAddress",
                    "InstitutionalDepartmentName", "StationName", "ReferringPhysicianName",
                    "PerformingPhysicianName", "OperatorsName", "PatientAddress",
                    "PatientBirthDate", "PatientBirthName", "OtherPatientNames")
_SAFE_PRIVATE_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "DS", "IS"})
_DATE_VRS = frozenset({"DA", "DT", "TM"})


def _quiet_deid() -> None:
    """deid prints INFO to stdout; the CLI's stdout is the manifest."""
    from deid.logger import bot
    from deid.logger.message import ERROR

    bot.level = ERROR


def _table_line(keyword: str, action: Action, options: Options) -> str | None:
    if options.retain_dates and dictionary_VR(keyword) in _DATE_VRS \
            and not keyword.startswith("PatientBirth"):
        return None  # modified (DA, DT) or kept (TM) by VR instead; a birth date never is
    if keyword == "PatientID":
        return "REPLACE PatientID func:patient_id"
    if keyword == "PatientName":
        return "REPLACE PatientName func:patient_name"
    return {Action.REMOVE: f"REMOVE {keyword}", Action.EMPTY: f"BLANK {keyword}",
            Action.DUMMY: f"REPLACE {keyword} func:dummy", Action.KEEP: f"KEEP {keyword}",
            Action.CLEAN: f"REPLACE {keyword} func:clean"}.get(action)


def recipe_text(options: Options) -> str:
    """The deid recipe of the profile with ``options`` (generic VR rules first: table rows
    after them win, and deid never removes what a REPLACE names)."""
    from cloudfilm.domain.deidentification import action_for

    lines = ["FORMAT dicom", "", "%header", "", "REPLACE select:VR:UI func:uid"]
    if options.retain_dates:
        lines += ["REPLACE select:VR:DA func:shift_date", "REPLACE select:VR:DT func:shift_datetime"]
    else:
        lines += ["BLANK select:VR:DA", "BLANK select:VR:DT", "BLANK select:VR:TM"]
    for keyword in TABLE:
        line = _table_line(keyword, action_for(keyword, options), options)
        if line:
            lines.append(line)
    return "\n".join(lines) + "\n"


class Deidentifier:
    """One export's profile: a recipe built once, applied to each instance."""

    def __init__(self, key: bytes, options: Options) -> None:
        from deid.config import DeidRecipe

        _quiet_deid()
        self.key, self.options = key, options
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "deid.annex-e"
            path.write_text(recipe_text(options), encoding="utf-8")
            self.recipe = DeidRecipe(str(path))

    def uid(self, value: str) -> str:
        return pseudo_uid(self.key, value)

    def apply(self, ds: Dataset, *, pseudonym: str, shift_days: int,
              known_identifiers: Iterable[str] = ()) -> FileDataset:
        """A de-identified copy of ``ds`` (``ds`` itself is consumed)."""
        from deid.dicom.fields import _get_fields_inner
        from deid.dicom.parser import DicomParser

        forbidden = identifying_tokens([*_source_values(ds), *known_identifiers])
        target = _file_dataset(ds)
        hooks = self._hooks(pseudonym, shift_days, forbidden)
        with _PARSE_LOCK:
            try:
                parser = DicomParser(target, recipe=self.recipe)
                for name, function in hooks.items():
                    parser.define(name, function)
                parser.parse(remove_private=not self.options.retain_safe_private)
                result: FileDataset = parser.dicom
            finally:
                _get_fields_inner.cache_clear()
        self._finish(result, pseudonym)
        return result

    def _hooks(self, pseudonym: str, shift_days: int,
               forbidden: frozenset[str]) -> dict[str, Callable[..., Any]]:
        def each(field: Any, change: Callable[[str], str]) -> Any:
            value = field.element.value
            if isinstance(value, (list, MultiValue)):
                return [change(str(v)) for v in value]
            return change("" if value is None else str(value))

        def uid(dicom: Any, value: Any, field: Any, item: Any) -> Any:
            keyword = field.element.keyword or ""
            return each(field, lambda v: v if not v or is_standard_uid(keyword, v) else self.uid(v))

        return {
            "uid": uid,
            "shift_date": lambda dicom, value, field, item: each(
                field, lambda v: shift_date(v, shift_days)),
            "shift_datetime": lambda dicom, value, field, item: each(
                field, lambda v: shift_datetime(v, shift_days)),
            "patient_id": lambda dicom, value, field, item: pseudonym,
            "patient_name": lambda dicom, value, field, item: pseudonym,
            "dummy": lambda dicom, value, field, item: (
                DUMMY_NAME if field.element.VR == "PN" else DUMMY_TEXT),
            "clean": lambda dicom, value, field, item: each(
                field, lambda v: clean_text(v, forbidden)),
        }

    def _finish(self, ds: FileDataset, pseudonym: str) -> None:
        """What the recipe cannot say: overlays out, no person name left, the optional
        safe private attributes, the method attributes (PS3.3 C.7.1.1.1.3) and a fresh
        file meta header."""
        _strip_overlays(ds)
        _replace_names(ds, pseudonym)
        if self.options.retain_safe_private:
            _keep_safe_private(ds)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = f"cloudfilm research export; PS3.15 Annex E; {LIBRARY}"
        items = []
        for value, meaning in method_codes(self.options):
            item = Dataset()
            item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
            items.append(item)
        ds.DeidentificationMethodCodeSequence = Sequence(items)
        ds.LongitudinalTemporalInformationModified = \
            "MODIFIED" if self.options.retain_dates else "REMOVED"
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds.file_meta = meta


def _source_values(ds: Dataset) -> list[str]:
    values: list[str] = []
    for keyword in _SOURCE_KEYWORDS:
        value = ds.get(keyword)
        if value is None:
            continue
        values.extend(str(v) for v in value) if isinstance(value, (list, MultiValue)) \
            else values.append(str(value))
    return values


def _file_dataset(ds: Dataset) -> FileDataset:
    """deid parses FileDatasets only (it hashes them)."""
    if isinstance(ds, FileDataset):
        return ds
    return FileDataset("", ds, file_meta=ds.file_meta, preamble=b"\0" * 128)


def _strip_overlays(ds: Dataset) -> None:
    """Overlay and curve groups (60xx, 50xx) can draw text over the image."""
    for tag in [e.tag for e in ds if e.tag.group % 2 == 0
                and (e.tag.group & 0xFF00) in (0x5000, 0x6000)]:
        del ds[tag]


def _replace_names(ds: Dataset, pseudonym: str) -> None:
    """A safety net under the table: any person name still there, at any depth, becomes
    the dummy name (PS3.15 E.1-1 action D)."""
    def visit(dataset: Dataset, element: DataElement) -> None:
        if element.VR == "PN" and element.value and str(element.value) != pseudonym:
            element.value = DUMMY_NAME

    ds.walk(visit)


def _keep_safe_private(ds: Dataset) -> None:
    """Retain Safe Private, cloudfilm's reading: no list of safe private attributes is
    known for the devices here, so only numeric private values (which cannot spell a name)
    stay, with their creators; text, dates, UIDs, bytes and sequences go."""
    numeric = [e.tag for e in ds if e.tag.is_private and not e.tag.is_private_creator
               and e.VR in _SAFE_PRIVATE_VRS]
    blocks = {(t.group, t.element >> 8) for t in numeric}
    for element in list(ds):
        tag = element.tag
        if not tag.is_private or tag in numeric:
            continue
        if tag.is_private_creator and (tag.group, tag.element) in blocks:
            continue
        del ds[tag]
