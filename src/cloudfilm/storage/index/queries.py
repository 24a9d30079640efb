"""Run a `Query` against the index tables (QIDO-RS, PS3.18 §10.6; C-FIND, PS3.4 C.4.1).

The same SQL runs on SQLite and PostgreSQL: LIKE is case-sensitive on both (SQLite
has ``PRAGMA case_sensitive_like=ON``), person names are matched against case-folded
columns, and wildcards become LIKE patterns with ``ESCAPE '!'`` so a literal ``%``
or ``_`` in a value matches only itself.

Access control seam: every function takes ``visible``, an optional boolean clause
over `InstanceRow` (e.g. ``InstanceRow.id.in_(granted_ids)``). When given, a
patient, study or series matches only if it has a visible instance, and computed
attributes (counts, ModalitiesInStudy) count visible instances only. A subquery
inside ``visible`` that names other index tables must not be correlated to the
outer query (build it with ``.correlate(None)``), because series- and
instance-level queries already select from those tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    ScalarSelect,
    Select,
    and_,
    exists,
    false,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.orm import QueryableAttribute, Session, aliased

from cloudfilm.domain import names
from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Condition, Kind, Match, Query
from cloudfilm.storage.index.access_models import PersonRecordRow
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow

Visible = ColumnElement[bool] | None
Attr = QueryableAttribute[Any]
ESCAPE = "!"
RANK = {Level.PATIENT: 0, Level.STUDY: 1, Level.SERIES: 2, Level.IMAGE: 3}


@dataclass(frozen=True)
class Key:
    """How one match key maps to the index: its level, columns and matching style."""

    level: Level
    style: str  # text | int | list (backslash-joined) | pn3 (three groups) | pn1 | modalities
    columns: tuple[Attr, ...] = ()
    words: Attr | None = None  # the word column for fuzzy matching of person names


KEYS: dict[tuple[int, ...], Key] = {
    (0x00100010,): Key(
        Level.PATIENT,
        "pn3",
        (PatientRow.name_alphabetic, PatientRow.name_ideographic, PatientRow.name_phonetic),
        PatientRow.name_words,
    ),
    (0x00100020,): Key(Level.PATIENT, "text", (PatientRow.patient_id,)),
    (0x00100021,): Key(Level.PATIENT, "text", (PatientRow.issuer,)),
    (0x00100030,): Key(Level.PATIENT, "text", (PatientRow.birth_date,)),
    (0x00100040,): Key(Level.PATIENT, "text", (PatientRow.sex,)),
    (0x0020000D,): Key(Level.STUDY, "text", (StudyRow.study_uid,)),
    (0x00080020,): Key(Level.STUDY, "text", (StudyRow.study_date,)),
    (0x00080030,): Key(Level.STUDY, "text", (StudyRow.study_time,)),
    (0x00080050,): Key(Level.STUDY, "text", (StudyRow.accession_number,)),
    (0x00200010,): Key(Level.STUDY, "text", (StudyRow.study_id,)),
    (0x00080090,): Key(Level.STUDY, "pn1", (StudyRow.referring_name,), StudyRow.referring_words),
    (0x00081030,): Key(Level.STUDY, "text", (StudyRow.description,)),
    (0x00080061,): Key(Level.STUDY, "modalities"),
    (0x00080060,): Key(Level.SERIES, "text", (SeriesRow.modality,)),
    (0x0020000E,): Key(Level.SERIES, "text", (SeriesRow.series_uid,)),
    (0x00200011,): Key(Level.SERIES, "int", (SeriesRow.series_number,)),
    (0x0008103E,): Key(Level.SERIES, "text", (SeriesRow.description,)),
    (0x00400244,): Key(Level.SERIES, "text", (SeriesRow.pps_start_date,)),
    (0x00400245,): Key(Level.SERIES, "text", (SeriesRow.pps_start_time,)),
    (0x00400275, 0x00401001): Key(Level.SERIES, "list", (SeriesRow.requested_procedure_ids,)),
    (0x00400275, 0x00400009): Key(Level.SERIES, "list", (SeriesRow.scheduled_step_ids,)),
    (0x00080018,): Key(Level.IMAGE, "text", (InstanceRow.sop_uid,)),
    (0x00080016,): Key(Level.IMAGE, "text", (InstanceRow.sop_class_uid,)),
    (0x00200013,): Key(Level.IMAGE, "int", (InstanceRow.instance_number,)),
    (0x00280010,): Key(Level.IMAGE, "int", (InstanceRow.rows,)),
    (0x00280011,): Key(Level.IMAGE, "int", (InstanceRow.columns,)),
    (0x00280100,): Key(Level.IMAGE, "int", (InstanceRow.bits_allocated,)),
    (0x00280008,): Key(Level.IMAGE, "int", (InstanceRow.number_of_frames,)),
}


@dataclass(frozen=True)
class Page:
    """One page of matching rows; ``truncated`` when more rows follow it."""

    rows: Sequence[Row[Any]]
    truncated: bool


def supports(condition: Condition, level: Level) -> bool:
    """Whether the index can match this key at this level (others are ignored, PS3.18 §8.3.4.1)."""
    key = KEYS.get(condition.path)
    if key is None:
        return False
    if condition.kind is Kind.EMPTY and key.style == "modalities":
        return False
    return RANK[key.level] <= RANK[level]


# -- value → SQL -------------------------------------------------------------------------


def like_pattern(value: str) -> str:
    """``*``/``?`` → ``%``/``_``; literal ``%``, ``_`` and ``!`` escaped (PS3.4 C.2.2.2.4)."""
    escaped = (
        value.replace(ESCAPE, ESCAPE * 2).replace("%", ESCAPE + "%").replace("_", ESCAPE + "_")
    )
    return escaped.replace("*", "%").replace("?", "_")


def _text(column: Attr, match: Match) -> ColumnElement[bool]:
    """Single value, wildcard or range on a text column (PS3.4 C.2.2.2.1/.4/.5)."""
    if match.kind is Kind.WILDCARD:
        return column.like(like_pattern(match.value), escape=ESCAPE)
    if match.kind is Kind.RANGE:  # entities without a value never match a range
        bounds = [column != ""]
        if match.lower:
            bounds.append(column >= match.lower)
        if match.upper:
            bounds.append(column <= match.upper)
        return and_(*bounds)
    return column == match.value


def _in_list(column: Attr, pattern: str, separator: str) -> ColumnElement[bool]:
    """``pattern`` (already a LIKE pattern) matches one element of a separator-joined column."""
    return or_(
        *(
            column.like(p, escape=ESCAPE)
            for p in (
                pattern,
                f"{pattern}{separator}%",
                f"%{separator}{pattern}",
                f"%{separator}{pattern}{separator}%",
            )
        )
    )


def _fold_group(group: str) -> str:
    return names.fold(names.strip_trailing_separators(group))


def _name_group(column: Attr, group: str) -> ColumnElement[bool]:
    value = _fold_group(group)
    if "*" in value or "?" in value:
        return column.like(like_pattern(value), escape=ESCAPE)
    return column == value


def _pn3(columns: tuple[Attr, ...], value: str) -> ColumnElement[bool]:
    """Groups separated by '=' match their own column; one group matches any (PS3.5 §6.2.1)."""
    if "=" not in value:
        return or_(*(_name_group(column, value) for column in columns))
    parts = [
        _name_group(column, group)
        for column, group in zip(columns, names.split_groups(value), strict=True)
        if group not in ("", "*")
    ]
    return and_(*parts) if parts else true()


def _pn1(column: Attr, value: str) -> ColumnElement[bool]:
    """One column holds ``alphabetic=ideographic=phonetic``: each group asked for must be one."""
    groups = [g for g in names.split_groups(value) if g not in ("", "*")]
    parts = [_in_list(column, like_pattern(_fold_group(g)), "=") for g in groups]
    return and_(*parts) if parts else true()


def _fuzzy(words: Attr, value: str) -> ColumnElement[bool]:
    """Every query word prefixes a name word, ignoring case, '^' and spaces (PS3.18 §8.3.4.6)."""
    found = names.words(value.replace("*", " "))
    return (
        and_(*(words.like(f"% {like_pattern(w)}%", escape=ESCAPE) for w in found))
        if found
        else true()
    )


def _match(key: Key, match: Match, fuzzy: bool) -> ColumnElement[bool]:
    if key.style in ("pn3", "pn1") and fuzzy and key.words is not None:
        return _fuzzy(key.words, match.value)
    if key.style == "pn3":
        return _pn3(key.columns, match.value)
    column = key.columns[0]
    if key.style == "pn1":
        return _pn1(column, match.value)
    if key.style == "int":
        return column == int(match.value)
    if key.style == "list":
        return _in_list(column, like_pattern(match.value), "\\")
    return _text(column, match)


def _empty(key: Key) -> ColumnElement[bool]:
    """Empty value matching (PS3.4 C.2.2.2.7): the attribute has no value."""
    if key.style == "int":
        return key.columns[0].is_(None)
    return and_(*(column == "" for column in key.columns))


def _modalities(condition: Condition, visible: Visible) -> ColumnElement[bool]:
    """ModalitiesInStudy: the study has a (visible) series of one of the modalities."""
    series = aliased(SeriesRow)
    wanted = or_(*(_text(series.modality, m) for m in condition.matches))
    query = select(series.id).where(series.study_pk == StudyRow.id, wanted)
    if visible is not None:
        query = query.where(
            exists(
                select(InstanceRow.id)
                .where(InstanceRow.series_pk == series.id, visible)
                .correlate_except(InstanceRow)
            )
        )
    return exists(query)


def condition_clause(condition: Condition, fuzzy: bool, visible: Visible) -> ColumnElement[bool]:
    """The WHERE clause of one supported, non-universal condition."""
    key = KEYS[condition.path]
    if condition.kind is Kind.EMPTY:
        return _empty(key)
    if key.style == "modalities":
        return _modalities(condition, visible)
    return (
        or_(*(_match(key, m, fuzzy) for m in condition.matches)) if condition.matches else false()
    )


def clauses(query: Query, visible: Visible = None) -> list[ColumnElement[bool]]:
    """Clauses for every condition the index supports at the query's level."""
    return [
        condition_clause(c, query.fuzzymatching, visible)
        for c in query.matching()
        if supports(c, query.level)
    ]


# -- visibility --------------------------------------------------------------------------


def _series_visible(visible: ColumnElement[bool]) -> ColumnElement[bool]:
    return exists(
        select(InstanceRow.id)
        .where(InstanceRow.series_pk == SeriesRow.id, visible)
        .correlate_except(InstanceRow)
    )


def _study_visible(visible: ColumnElement[bool]) -> ColumnElement[bool]:
    inner = aliased(SeriesRow)
    return exists(
        select(InstanceRow.id)
        .join(inner, InstanceRow.series_pk == inner.id)
        .where(inner.study_pk == StudyRow.id, visible)
        .correlate_except(InstanceRow, inner)
    )


def _patient_visible(visible: ColumnElement[bool]) -> ColumnElement[bool]:
    studies, series = aliased(StudyRow), aliased(SeriesRow)
    return exists(
        select(InstanceRow.id)
        .join(series, InstanceRow.series_pk == series.id)
        .join(studies, series.study_pk == studies.id)
        .where(studies.patient_pk == PatientRow.id, visible)
        .correlate_except(InstanceRow, series, studies)
    )


# -- searches ----------------------------------------------------------------------------


def _page(session: Session, statement: Select[*tuple[Any, ...]], offset: int, limit: int) -> Page:
    """Fetch one row more than asked, so truncation is known without a COUNT (PS3.18 §8.3.4.4)."""
    rows = session.execute(statement.offset(offset).limit(limit + 1)).all()
    return Page(rows[:limit], len(rows) > limit)


def find_patients(session: Session, query: Query, *, limit: int, visible: Visible = None) -> Page:
    """Patients (C-FIND Patient Root, PS3.4 C.6.1.1.2); rows: ``id, attrs``."""
    statement = select(PatientRow.id, PatientRow.attrs).where(*clauses(query, visible))
    if visible is not None:
        statement = statement.where(_patient_visible(visible))
    return _page(session, statement.order_by(PatientRow.id), query.offset, limit)


def find_studies(session: Session, query: Query, *, limit: int, visible: Visible = None) -> Page:
    """Studies, newest first; rows: ``id, study_uid, attrs, patient_attrs``."""
    statement = (
        select(
            StudyRow.id, StudyRow.study_uid, StudyRow.attrs, PatientRow.attrs.label("patient_attrs")
        )
        .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
        .where(*clauses(query, visible))
    )
    if visible is not None:
        statement = statement.where(_study_visible(visible))
    statement = statement.order_by(
        StudyRow.study_date.desc(), StudyRow.study_time.desc(), StudyRow.id.desc()
    )
    return _page(session, statement, query.offset, limit)


def find_series(
    session: Session,
    query: Query,
    *,
    limit: int,
    study_pk: int | None = None,
    visible: Visible = None,
) -> Page:
    """Series of one study or of all (study keys allowed too, PS3.18 §10.6.1.2.2).

    Rows: ``id, series_uid, attrs, study_pk, study_uid, study_attrs, patient_attrs``.
    """
    statement = (
        select(
            SeriesRow.id,
            SeriesRow.series_uid,
            SeriesRow.attrs,
            SeriesRow.study_pk,
            StudyRow.study_uid,
            StudyRow.attrs.label("study_attrs"),
            PatientRow.attrs.label("patient_attrs"),
        )
        .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
        .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
        .where(*clauses(query, visible))
    )
    if study_pk is not None:
        statement = statement.where(SeriesRow.study_pk == study_pk)
    if visible is not None:
        statement = statement.where(_series_visible(visible))
    order = (SeriesRow.series_number.is_(None), SeriesRow.series_number, SeriesRow.id)
    return _page(session, statement.order_by(*order), query.offset, limit)


def find_instances(
    session: Session,
    query: Query,
    *,
    limit: int,
    study_pk: int | None = None,
    series_pk: int | None = None,
    visible: Visible = None,
) -> Page:
    """Instances of a series, a study or all (PS3.18 §10.6.1.2.3).

    Rows: ``id, sop_uid, metadata_json, series_pk, series_uid, study_pk, study_uid``.
    """
    statement = (
        select(
            InstanceRow.id,
            InstanceRow.sop_uid,
            InstanceRow.metadata_json,
            InstanceRow.series_pk,
            SeriesRow.series_uid,
            SeriesRow.study_pk,
            StudyRow.study_uid,
        )
        .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
        .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
        .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
        .where(*clauses(query, visible))
    )
    if study_pk is not None:
        statement = statement.where(SeriesRow.study_pk == study_pk)
    if series_pk is not None:
        statement = statement.where(InstanceRow.series_pk == series_pk)
    if visible is not None:
        statement = statement.where(visible)
    order = (InstanceRow.instance_number.is_(None), InstanceRow.instance_number, InstanceRow.id)
    return _page(session, statement.order_by(*order), query.offset, limit)


# -- resources named in the path ---------------------------------------------------------


def study_pk_for(session: Session, study_uid: str, visible: Visible = None) -> int | None:
    """The study's row id, or None when unknown (or not visible: no existence leak)."""
    statement = select(StudyRow.id).where(StudyRow.study_uid == study_uid)
    if visible is not None:
        statement = statement.where(_study_visible(visible))
    return session.scalars(statement).first()


def series_pk_for(
    session: Session, study_pk: int, series_uid: str, visible: Visible = None
) -> int | None:
    """The series' row id if it belongs to that study (and is visible)."""
    statement = select(SeriesRow.id).where(
        SeriesRow.series_uid == series_uid, SeriesRow.study_pk == study_pk
    )
    if visible is not None:
        statement = statement.where(_series_visible(visible))
    return session.scalars(statement).first()


# -- computed attributes (PS3.4 C.3.4), for one page only --------------------------------


@dataclass
class StudyCounts:
    series: int = 0
    instances: int = 0
    modalities: tuple[str, ...] = ()


def _instances_of_series(visible: Visible) -> ScalarSelect[int]:
    """How many (visible) instances the outer query's ``SeriesRow`` holds.

    A correlated scalar subquery, so every database runs it as one index lookup on
    ``instances.series_pk`` per series of the page. A join grouped over the page instead
    leaves the plan to the statistics: with stale ones PostgreSQL hashed the whole
    ``instances`` table for one page, a cost that grows with the table (docs/benchmarks.md,
    the scale curve).
    """
    statement = select(func.count()).select_from(InstanceRow).where(
        InstanceRow.series_pk == SeriesRow.id)
    if visible is not None:
        statement = statement.where(visible)
    return statement.correlate(SeriesRow).scalar_subquery()


def study_counts(
    session: Session, study_pks: Sequence[int], visible: Visible = None
) -> dict[int, StudyCounts]:
    """NumberOfStudyRelatedSeries/Instances and ModalitiesInStudy for a page of studies.

    One row per series of the page, with its instance count; a series with no (visible)
    instance counts for nothing.
    """
    if not study_pks:
        return {}
    statement = select(SeriesRow.study_pk, SeriesRow.modality, _instances_of_series(visible)
                       ).where(SeriesRow.study_pk.in_(set(study_pks)))
    found: dict[int, StudyCounts] = {pk: StudyCounts() for pk in study_pks}
    for study_pk, modality, instances in session.execute(statement):
        if not instances:
            continue
        counts = found[study_pk]
        counts.series += 1
        counts.instances += instances
        if modality and modality not in counts.modalities:
            counts.modalities = tuple(sorted((*counts.modalities, modality)))
    return found


def series_counts(
    session: Session, series_pks: Sequence[int], visible: Visible = None
) -> dict[int, int]:
    """NumberOfSeriesRelatedInstances for a page of series."""
    if not series_pks:
        return {}
    statement = select(SeriesRow.id, _instances_of_series(visible)).where(
        SeriesRow.id.in_(set(series_pks)))
    found = {pk: 0 for pk in series_pks}
    found.update({pk: count for pk, count in session.execute(statement)})
    return found


def patient_counts(
    session: Session, patient_pks: Sequence[int], visible: Visible = None
) -> dict[int, tuple[int, int, int]]:
    """(studies, series, instances) per patient (PS3.4 C.3.4), from one row per series."""
    if not patient_pks:
        return {}
    statement = (
        select(StudyRow.patient_pk, StudyRow.id, _instances_of_series(visible))
        .join(SeriesRow, SeriesRow.study_pk == StudyRow.id)
        .where(StudyRow.patient_pk.in_(set(patient_pks)))
    )
    studies: dict[int, set[int]] = {pk: set() for pk in patient_pks}
    series = dict.fromkeys(patient_pks, 0)
    instances = dict.fromkeys(patient_pks, 0)
    for patient_pk, study_pk, count in session.execute(statement):
        if count:
            studies[patient_pk].add(study_pk)
            series[patient_pk] += 1
            instances[patient_pk] += count
    return {pk: (len(studies[pk]), series[pk], instances[pk]) for pk in patient_pks}


def study_has_visible_instance(visible: ColumnElement[bool]) -> ColumnElement[bool]:
    """The study (``StudyRow`` of the outer query) has an instance the caller may see:
    ``visible`` is the policy's filter over ``InstanceRow``, ``SeriesRow`` and ``StudyRow``."""
    series = aliased(SeriesRow)
    return exists(
        select(InstanceRow.id).join(series, InstanceRow.series_pk == series.id)
        .where(series.study_pk == StudyRow.id, visible)
        .correlate_except(InstanceRow, series))


def record_of_patient() -> ColumnElement[bool]:
    """The join of a hospital record to its patient row: study → patient → person.

    A person's record is (PatientID, IssuerOfPatientID), not a key of ``patients``, so
    every query that asks whose folder a study is in joins on both columns, this way.
    """
    return and_(PersonRecordRow.patient_id == PatientRow.patient_id,
                PersonRecordRow.issuer == PatientRow.issuer)
