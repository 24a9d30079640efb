"""Unit tests of QIDO/C-FIND query parsing (PS3.4 C.2.2.2, PS3.18 §8.3.4): no server, no DB."""

from __future__ import annotations

import pydicom
import pytest
from pydicom.sequence import Sequence

from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import (
    Kind,
    Match,
    Query,
    QueryError,
    make_condition,
    parse_query,
    query_from_identifier,
    time_lower,
    time_upper,
)

PATIENT_NAME, STUDY_DATE, STUDY_TIME, STUDY_UID = 0x00100010, 0x00080020, 0x00080030, 0x0020000D


def parse(*pairs: tuple[str, str], level: Level = Level.STUDY) -> Query:
    return parse_query(list(pairs), level)


def only(query: Query):
    assert len(query.conditions) == 1
    return query.conditions[0]


# -- matching kinds ----------------------------------------------------------------------


def test_single_value() -> None:
    condition = only(parse(("PatientID", "ABC-123")))
    assert condition.path == (0x00100020,)
    assert condition.vr == "LO"
    assert condition.kind is Kind.SINGLE
    assert condition.matches == (Match(Kind.SINGLE, value="ABC-123"),)


def test_keyword_and_hex_tag_are_the_same_key() -> None:
    by_keyword = only(parse(("StudyInstanceUID", "1.2.3")))
    by_tag = only(parse(("0020000D", "1.2.3")))
    lower_hex = only(parse(("0020000d", "1.2.3")))
    assert by_keyword.path == by_tag.path == lower_hex.path == (STUDY_UID,)
    assert by_keyword.matches == by_tag.matches


@pytest.mark.parametrize(
    "value", ["1.2.3\\1.2.4\\1.2.5", "1.2.3,1.2.4,1.2.5", "1.2.3,1.2.4\\1.2.5"]
)
def test_uid_list(value: str) -> None:
    condition = only(parse(("StudyInstanceUID", value)))
    assert condition.kind is Kind.LIST
    assert [m.value for m in condition.matches] == ["1.2.3", "1.2.4", "1.2.5"]
    assert all(m.kind is Kind.SINGLE for m in condition.matches)


def test_multiple_values_for_codes() -> None:
    condition = only(parse(("ModalitiesInStudy", "CT\\MR")))
    assert condition.kind is Kind.LIST
    assert [m.value for m in condition.matches] == ["CT", "MR"]


def test_comma_is_literal_in_text() -> None:
    condition = only(parse(("StudyDescription", "CT, CHEST")))
    assert condition.kind is Kind.SINGLE
    assert condition.matches[0].value == "CT, CHEST"


@pytest.mark.parametrize("value", ["Doe*", "D?e^John", "*oe*"])
def test_wildcards(value: str) -> None:
    condition = only(parse(("PatientName", value)))
    assert condition.kind is Kind.WILDCARD
    assert condition.matches[0].value == value


@pytest.mark.parametrize("value", ["", "*"])
def test_universal(value: str) -> None:
    condition = only(parse(("PatientName", value)))
    assert condition.kind is Kind.UNIVERSAL
    assert condition.matches == ()
    assert parse(("PatientName", value)).matching() == ()


def test_universal_star_for_any_vr() -> None:
    assert only(parse(("StudyDate", "*"))).kind is Kind.UNIVERSAL
    assert only(parse(("StudyInstanceUID", "*"))).kind is Kind.UNIVERSAL


def test_empty_value_matching() -> None:
    assert only(parse(("AccessionNumber", '""'))).kind is Kind.EMPTY


@pytest.mark.parametrize(
    ("value", "lower", "upper"),
    [
        ("20200101-20201231", "20200101", "20201231"),
        ("20200101-", "20200101", ""),
        ("-20201231", "", "20201231"),
    ],
)
def test_date_ranges(value: str, lower: str, upper: str) -> None:
    condition = only(parse(("StudyDate", value)))
    assert condition.kind is Kind.RANGE
    assert condition.matches == (Match(Kind.RANGE, lower=lower, upper=upper),)


def test_single_date_is_exact() -> None:
    condition = only(parse(("StudyDate", "20250301")))
    assert condition.kind is Kind.SINGLE
    assert condition.matches[0].value == "20250301"


def test_time_range_bounds_cover_whole_periods() -> None:
    condition = only(parse(("StudyTime", "10-1130")))
    assert condition.matches == (Match(Kind.RANGE, lower="100000.000000", upper="113059.999999"),)


def test_single_time_names_a_period() -> None:
    condition = only(parse(("StudyTime", "1015")))
    assert condition.kind is Kind.RANGE
    assert condition.matches[0].lower == "101500.000000"
    assert condition.matches[0].upper == "101559.999999"


@pytest.mark.parametrize(
    ("value", "lower", "upper"),
    [
        ("07", "070000.000000", "075959.999999"),
        ("0730", "073000.000000", "073059.999999"),
        ("073015", "073015.000000", "073015.999999"),
        ("073015.5", "073015.500000", "073015.599999"),
        ("07:30", "073000.000000", "073059.999999"),
    ],
)
def test_time_bounds(value: str, lower: str, upper: str) -> None:
    assert time_lower(value) == lower
    assert time_upper(value) == upper


def test_datetime_range_with_timezones() -> None:
    condition = only(parse(("AcquisitionDateTime", "20200101120000+0100-20200102")))
    assert condition.kind is Kind.RANGE
    assert condition.matches[0].lower == "20200101120000+0100"
    assert condition.matches[0].upper == "20200102"


def test_datetime_with_negative_offset_is_one_value() -> None:
    condition = only(parse(("AcquisitionDateTime", "20200101120000-0500")))
    assert condition.kind is Kind.SINGLE
    assert condition.matches[0].value == "20200101120000-0500"


def test_empty_list_members_are_dropped() -> None:
    condition = only(parse(("ModalitiesInStudy", "CT,")))
    assert condition.kind is Kind.SINGLE
    assert condition.matches[0].value == "CT"
    assert only(parse(("ModalitiesInStudy", "CT\\*"))).kind is Kind.UNIVERSAL


def test_range_in_a_list() -> None:
    condition = only(parse(("StudyDate", "20200101-20200131\\20200301")))
    assert condition.kind is Kind.LIST
    assert [m.kind for m in condition.matches] == [Kind.RANGE, Kind.SINGLE]


@pytest.mark.parametrize(
    "key",
    [
        "RequestAttributesSequence.RequestedProcedureID",
        "00400275.00401001",
        "RequestAttributesSequence.00401001",
    ],
)
def test_sequence_matching(key: str) -> None:
    condition = only(parse((key, "RP-7"), level=Level.SERIES))
    assert condition.path == (0x00400275, 0x00401001)
    assert condition.top == 0x00400275
    assert condition.tag == 0x00401001
    assert condition.kind is Kind.SINGLE
    assert condition.parameter == key


def test_sequence_alone_is_returned_not_matched() -> None:
    assert only(parse(("RequestAttributesSequence", ""))).kind is Kind.UNIVERSAL


def test_repeated_keys_are_all_kept() -> None:
    query = parse(("PatientID", "A"), ("PatientID", "B"))
    assert [c.matches[0].value for c in query.conditions] == ["A", "B"]


# -- other parameters --------------------------------------------------------------------


def test_includefield_keyword_hex_comma_and_repeats() -> None:
    query = parse(
        ("includefield", "StudyDescription,00081032"), ("includefield", "InstitutionName")
    )
    assert query.includefields == {0x00081030, 0x00081032, 0x00080080}
    assert query.include_all is False
    assert query.conditions == ()


def test_includefield_all() -> None:
    query = parse(("includefield", "all"))
    assert query.include_all is True
    assert query.includefields == frozenset()


def test_includefield_dotted_returns_its_sequence() -> None:
    assert parse(
        ("includefield", "RequestAttributesSequence.RequestedProcedureID")
    ).includefields == {0x00400275}


def test_defaults() -> None:
    query = parse()
    assert (query.limit, query.offset, query.fuzzymatching, query.include_defaults) == (
        None,
        0,
        False,
        True,
    )
    assert query.level is Level.STUDY


def test_limit_offset_fuzzymatching() -> None:
    query = parse(("limit", "25"), ("offset", "50"), ("fuzzymatching", "TRUE"))
    assert (query.limit, query.offset, query.fuzzymatching) == (25, 50, True)
    assert parse(("fuzzymatching", "false")).fuzzymatching is False


def test_control_parameters_are_not_match_keys() -> None:
    assert parse(("accept", "application/dicom+json"), ("charset", "utf-8")).conditions == ()


def test_level_is_kept() -> None:
    assert parse(level=Level.IMAGE).level is Level.IMAGE


# -- errors name their parameter ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pair", "parameter", "words"),
    [
        (("PatientNam", "x"), "PatientNam", "unknown attribute keyword"),
        (("Foo.PatientID", "x"), "Foo.PatientID", "unknown attribute keyword 'Foo'"),
        (("bogus", "1"), "bogus", "unknown query parameter"),
        (("PatientID.PatientName", "x"), "PatientID.PatientName", "not a sequence"),
        (("RequestAttributesSequence", "x"), "RequestAttributesSequence", "sequence"),
        (("StudyDate", "20200301-20200101"), "StudyDate", "ends before it starts"),
        (("StudyDate", "2020-03-01"), "StudyDate", "range"),
        (("StudyDate", "20201301"), "StudyDate", "not a valid date"),
        (("StudyDate", "2020"), "StudyDate", "not a date"),
        (("StudyDate", "2020*"), "StudyDate", "wildcards"),
        (("StudyTime", "2561"), "StudyTime", "not a valid time"),
        (("StudyTime", "12-10"), "StudyTime", "ends before it starts"),
        (("StudyTime", "ab"), "StudyTime", "not a time"),
        (("StudyInstanceUID", "1.2.*"), "StudyInstanceUID", "wildcards"),
        (("StudyInstanceUID", "1.2.abc"), "StudyInstanceUID", "not a UID"),
        (("SeriesNumber", "two"), "SeriesNumber", "not an integer"),
        (("SliceThickness", "thin"), "SliceThickness", "not a number"),
        (("AcquisitionDateTime", "2020x"), "AcquisitionDateTime", "not a date-time"),
        (("limit", "ten"), "limit", "positive integer"),
        (("limit", "-1"), "limit", "positive integer"),
        (("limit", "0"), "limit", "at least 1"),
        (("offset", "-5"), "offset", "non-negative integer"),
        (("offset", "1.5"), "offset", "non-negative integer"),
        (("fuzzymatching", "yes"), "fuzzymatching", "'true' or 'false'"),
        (("includefield", "StudyDescription,NoSuchThing"), "includefield", "NoSuchThing"),
    ],
)
def test_errors_name_the_parameter(pair: tuple[str, str], parameter: str, words: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(pair)
    assert caught.value.parameter == parameter
    assert words in caught.value.problem
    assert isinstance(caught.value, ValueError)


def test_make_condition_validates_like_parse() -> None:
    with pytest.raises(QueryError, match="StudyDate"):
        make_condition((STUDY_DATE,), "tomorrow", "StudyDate")


# -- C-FIND identifiers ------------------------------------------------------------------


def test_query_from_identifier() -> None:
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = "Doe^J*"
    ds.PatientID = ""
    ds.StudyDate = "20200101-20201231"
    ds.StudyInstanceUID = ["1.2.3", "1.2.4"]
    ds.ModalitiesInStudy = ""
    item = pydicom.Dataset()
    item.RequestedProcedureID = "RP1"
    item.ScheduledProcedureStepID = ""
    ds.RequestAttributesSequence = Sequence([item])
    query = query_from_identifier(ds, Level.STUDY)
    kinds = {c.path: c.kind for c in query.conditions}
    assert kinds[(PATIENT_NAME,)] is Kind.WILDCARD
    assert kinds[(0x00100020,)] is Kind.UNIVERSAL
    assert kinds[(STUDY_DATE,)] is Kind.RANGE
    assert kinds[(STUDY_UID,)] is Kind.LIST
    assert kinds[(0x00400275, 0x00401001)] is Kind.SINGLE
    assert (0x00400275, 0x00400009) not in kinds  # an empty key inside an item is only returned
    assert 0x00080052 not in query.includefields and 0x00080005 not in query.includefields
    assert {
        PATIENT_NAME,
        0x00100020,
        STUDY_DATE,
        STUDY_UID,
        0x00080061,
        0x00400275,
    } == query.includefields
    assert query.include_defaults is False
    assert query.level is Level.STUDY


@pytest.mark.filterwarnings("ignore:Invalid value for VR DA")
def test_identifier_errors_name_the_keyword() -> None:
    ds = pydicom.Dataset()
    ds.StudyDate = "20201301"
    with pytest.raises(QueryError) as caught:
        query_from_identifier(ds, Level.STUDY)
    assert caught.value.parameter == "StudyDate"
