"""The research de-identification profile (PS3.15 Annex E) on single data sets, no server.

Each attribute of Table E.1-1 that the profile claims is put into a data set (at the top
level and inside a sequence), the profile is applied with and without its options, and
the result is checked against the table's action for that attribute.
"""

from __future__ import annotations

from datetime import date

import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from cloudfilm.domain.deidentification import (
    DUMMY_NAME,
    TABLE,
    Action,
    InstanceFacts,
    Options,
    action_for,
    clean_text,
    date_shift_days,
    identifying_tokens,
    person_pseudonym,
    pseudo_uid,
    refusal,
    shift_date,
)
from cloudfilm.services.research.deidentify import Deidentifier
from factory import make_instance

KEY = b"k" * 32
SECRET = "Zhangsanfeng"  # a word that must never survive
_VALUES = {"PN": f"{SECRET}^Li", "LO": f"{SECRET} text", "SH": "SH123456", "LT": f"{SECRET} note",
           "ST": f"{SECRET} note", "UT": f"{SECRET} note", "DA": "20240131", "TM": "101010",
           "DT": "20240131101010", "CS": "YES", "AS": "064Y", "DS": "70.5", "IS": "3",
           "US": 1, "UI": "1.2.3.99"}


def _rich() -> Dataset:
    """A CT instance carrying every tabled attribute that has a simple VR."""
    ds = make_instance(patient_id="PX-1", issuer="HOSP_X", patient_name=f"{SECRET}^Li",
                       InstitutionName=f"{SECRET} Hospital", FrameOfReferenceUID="1.2.3.4")
    for keyword in TABLE:
        vr = dictionary_VR(keyword)
        if vr in _VALUES and keyword not in ds:
            setattr(ds, keyword, _VALUES[vr])
    ds.PatientSex, ds.PatientAge, ds.PatientWeight = "F", "064Y", "70.5"
    ds.StudyDescription = "CT CHEST"  # clean: no identifier in it
    ds.SeriesDescription = f"AXIAL {SECRET}"  # not clean
    ref = Dataset()
    ref.ReferencedSOPClassUID = ds.SOPClassUID
    ref.ReferencedSOPInstanceUID = ds.SOPInstanceUID
    ref.PersonName = f"{SECRET}^Doctor"
    ds.ReferencedImageSequence = Sequence([ref])
    ds.add_new(0x00091010, "LO", f"{SECRET} private")
    ds.add_new(0x00090010, "LO", "VENDOR")
    ds.add_new(0x00091011, "US", 7)
    ds.add_new(0x60003000, "OW", b"\0" * 8)
    return ds


def _apply(ds: Dataset, options: Options) -> Dataset:
    return Deidentifier(KEY, options).apply(ds, pseudonym="CF-TEST", shift_days=400,
                                            known_identifiers=["HOSP_X"])


def _everything(ds: Dataset) -> list[str]:
    seen: list[str] = []
    ds.walk(lambda _d, element: seen.append(str(element.value)))
    return seen


@pytest.mark.parametrize("options", [Options(), Options(False, False, False, False),
                                     Options(retain_safe_private=True)],
                         ids=["defaults", "basic-only", "safe-private"])
def test_every_tabled_attribute_gets_its_action(options: Options) -> None:
    source = _rich()
    original_dates = {k: str(source.get(k)) for k in TABLE if dictionary_VR(k) == "DA" and k in source}
    out = _apply(source.copy(), options)
    for keyword in TABLE:
        action, vr = action_for(keyword, options), dictionary_VR(keyword)
        value = out.get(keyword)
        if keyword in ("PatientID", "PatientName"):
            assert str(value) == "CF-TEST"
        elif vr in ("DA", "DT") and options.retain_dates and not keyword.startswith("PatientBirth"):
            if keyword in original_dates:
                assert str(value) == shift_date(original_dates[keyword], 400), keyword
        elif vr == "TM" and options.retain_dates:
            continue  # times of day are kept with modified dates
        elif action is Action.REMOVE:
            assert keyword not in out, keyword
        elif action is Action.EMPTY:
            assert keyword not in out or value in (None, ""), keyword
        elif action is Action.DUMMY:
            assert keyword not in out or str(value) in (DUMMY_NAME, "ANONYMOUS", ""), keyword
        elif action is Action.KEEP:
            assert value == source.get(keyword), keyword
        elif action is Action.CLEAN:
            assert SECRET.casefold() not in str(value).casefold(), keyword
    text = " ".join(_everything(out)).casefold()
    assert SECRET.casefold() not in text and "hosp_x" not in text and "px-1" not in text
    assert (0x6000, 0x3000) not in out
    assert ((0x0009, 0x1011) in out) is options.retain_safe_private
    assert (0x0009, 0x1010) not in out  # private text never stays
    codes = [item.CodeValue for item in out.DeidentificationMethodCodeSequence]
    assert codes[0] == "113100" and ("113111" in codes) is options.retain_safe_private
    assert ("113106" in codes) is options.retain_dates
    assert out.PatientIdentityRemoved == "YES"


def test_uids_are_remapped_consistently_and_references_follow() -> None:
    ds = _rich()
    sop, frame = ds.SOPInstanceUID, ds.FrameOfReferenceUID
    out = _apply(ds, Options())
    assert out.SOPInstanceUID == pseudo_uid(KEY, sop) != sop
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == out.SOPInstanceUID
    assert out.FrameOfReferenceUID == pseudo_uid(KEY, frame)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"  # a class UID is not a patient's
    assert out.ReferencedImageSequence[0].PersonName == DUMMY_NAME
    assert len(out.SOPInstanceUID) <= 64


def test_clean_descriptors_keeps_only_what_names_nobody() -> None:
    out = _apply(_rich(), Options())
    assert out.StudyDescription == "CT CHEST"
    assert out.SeriesDescription == ""
    basic = _apply(_rich(), Options(clean_descriptors=False))
    assert "StudyDescription" not in basic
    forbidden = identifying_tokens(["Wang^Fang", "MRN 12345", "General Hospital"])
    assert clean_text("CT CHEST 1.25 mm", forbidden) == "CT CHEST 1.25 mm"
    assert clean_text("wang follow-up", forbidden) == ""
    assert clean_text("scan 20240131", forbidden) == ""
    assert clean_text("mail a@b.cn", forbidden) == ""


def test_pseudonyms_are_keyed_stable_and_per_person() -> None:
    assert person_pseudonym(KEY, "person:1") == person_pseudonym(KEY, "person:1")
    assert person_pseudonym(KEY, "person:1") != person_pseudonym(KEY, "person:2")
    assert person_pseudonym(KEY, "person:1") != person_pseudonym(b"x" * 32, "person:1")
    shift = date_shift_days(KEY, "person:1")
    assert 365 <= shift <= 3650 and shift == date_shift_days(KEY, "person:1")
    assert shift_date("20240301", 1) == "20240229" and shift_date("2024", 1) == ""
    assert (date(2024, 3, 1) - date(2023, 3, 1)).days == 366  # intervals: one shift per person


@pytest.mark.parametrize(("facts", "refused"), [
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.2"), False),
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.2", burned_in="YES"), True),
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.7"), True),
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.7", burned_in="NO"), True),
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.7", burned_in="NO",
                   method_codes=frozenset({"113101"})), False),
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.104.1", burned_in="NO"), True),
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.88.34"), True),
    (InstanceFacts("1.2.840.10008.5.1.4.1.1.88.34", own_report=True), False),
], ids=["ct", "ct-burned-in", "sc", "sc-marked-no", "sc-cleaned", "pdf", "other-sr", "own-sr"])
def test_refusals_are_conservative(facts: InstanceFacts, refused: bool) -> None:
    assert (refusal(facts) is not None) is refused
