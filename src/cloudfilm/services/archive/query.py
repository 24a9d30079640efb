"""Search the archive: a `Query` in, DICOM JSON results out (QIDO-RS, PS3.18 §10.6.3; C-FIND).

Each result holds the level's default return attributes (PS3.18 Tables
10.6.3-3/4/5), the match keys and the ``includefield`` attributes the level may
return; requested attributes the archive does not have come back empty
(``{"vr": ..}``). Stored values come from the level's ``attrs`` (instances: their
full metadata); counts, ModalitiesInStudy, InstanceAvailability and RetrieveURL
are computed for the returned page only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from sqlalchemy.orm import Session

from cloudfilm.domain import levels
from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Query, vr_for
from cloudfilm.storage.index import queries
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.queries import Page
from cloudfilm.storage.index.queries import Visible as Visible  # for callers outside storage

MAX_RESULTS = 1000
RETRIEVE_URL = 0x00081190
INSTANCE_AVAILABILITY = 0x00080056
SPECIFIC_CHARACTER_SET = 0x00080005
PATIENT_COMPUTED = frozenset({0x00201200, 0x00201202, 0x00201204})
PATIENT_DEFAULT_RETURN: tuple[int, ...] = (
    0x00080005,
    0x00100010,
    0x00100020,
    0x00100021,
    0x00100030,
    0x00100040,
)

Json = dict[str, Any]


class UnknownResource(LookupError):
    """A study or series named in the request path does not exist (PS3.18 §8.6.3: 404)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what} not found")
        self.what = what


class UnknownStudy(UnknownResource):
    def __init__(self, study_uid: str) -> None:
        super().__init__(f"study {study_uid}")


class UnknownSeries(UnknownResource):
    def __init__(self, series_uid: str) -> None:
        super().__init__(f"series {series_uid}")


@dataclass
class SearchResult:
    """One page of results; ``capped``: the server maximum, not the client, set the page size."""

    items: list[Json]
    truncated: bool
    ignored: list[str] = field(default_factory=list)
    limit: int = MAX_RESULTS
    offset: int = 0
    capped: bool = False


# -- which attributes a level returns ----------------------------------------------------


def _returnable(level: Level) -> Callable[[int], bool]:
    """PS3.18 §10.6.3.3: lower-level attributes asked of a higher level are not returned."""
    own = {
        Level.PATIENT: {Level.PATIENT},
        Level.STUDY: {Level.PATIENT, Level.STUDY},
        Level.SERIES: {Level.PATIENT, Level.STUDY, Level.SERIES},
        Level.IMAGE: {Level.PATIENT, Level.STUDY, Level.SERIES, Level.IMAGE},
    }[level]
    extra = {
        Level.PATIENT: PATIENT_COMPUTED | {SPECIFIC_CHARACTER_SET},
        Level.STUDY: levels.COMPUTED_STUDY | set(levels.STUDY_DEFAULT_RETURN),
        Level.SERIES: levels.COMPUTED_STUDY
        | levels.COMPUTED_SERIES
        | set(levels.STUDY_DEFAULT_RETURN)
        | set(levels.SERIES_DEFAULT_RETURN),
        Level.IMAGE: set(),
    }[level]
    return lambda tag: level is Level.IMAGE or tag in extra or levels.level_of(tag) in own


def wanted_tags(query: Query, defaults: Iterable[int], *, with_urls: bool) -> list[int]:
    """Defaults, then match keys, then include fields, each once, in a stable order."""
    allowed = _returnable(query.level)
    tags = list(defaults) if query.include_defaults else []
    tags += [c.top for c in query.conditions if allowed(c.top)]
    tags += sorted(t for t in query.includefields if allowed(t))
    unique = list(dict.fromkeys(tags))
    return unique if with_urls else [t for t in unique if t != RETRIEVE_URL]


def _absolute(value: Any, base: str) -> Any:
    """Prefix relative BulkDataURIs, in nested sequences too (PS3.18 §F.2.4)."""
    if not isinstance(value, dict):
        return value
    if "BulkDataURI" in value and "://" not in value["BulkDataURI"]:
        return {**value, "BulkDataURI": f"{base}/{value['BulkDataURI']}"}
    if value.get("vr") == "SQ" and value.get("Value"):
        items = [{k: _absolute(v, base) for k, v in item.items()} for item in value["Value"]]
        return {**value, "Value": items}
    return value


def build_item(
    wanted: list[int], source: Json, computed: Json, *, include_all: bool, base_url: str | None
) -> Json:
    """One DICOM JSON result; absent requested attributes are empty (PS3.18 §10.6.3.3)."""
    out: Json = dict(source) if include_all else {}
    for tag in wanted:
        key = f"{tag:08X}"
        out[key] = computed.get(key) or source.get(key) or {"vr": vr_for(tag)}
    if base_url is not None:
        out = {k: _absolute(v, base_url) for k, v in out.items()}
    return dict(sorted(out.items()))


def _loads(text: str | bytes | None) -> Json:
    return orjson.loads(text) if text else {}


def _integer(value: int) -> Json:
    return {"vr": "IS", "Value": [value]}


def _study_computed(counts: queries.StudyCounts) -> Json:
    modalities = (
        {"vr": "CS", "Value": list(counts.modalities)} if counts.modalities else {"vr": "CS"}
    )
    return {
        "00080061": modalities,
        "00201206": _integer(counts.series),
        "00201208": _integer(counts.instances),
    }


def _url(base_url: str | None, *parts: str) -> Json:
    if base_url is None:
        return {}
    path = "/".join(f"{kind}/{uid}" for kind, uid in zip(("studies", "series", "instances"), parts, strict=False))
    return {"00081190": {"vr": "UR", "Value": [f"{base_url}/{path}"]}}


ONLINE: Json = {"00080056": {"vr": "CS", "Value": ["ONLINE"]}}


def instance_defaults(study_uid: str | None, series_uid: str | None) -> tuple[int, ...]:
    """PS3.18 §10.6.3.3.3: all instances add study and series defaults, a study's the series'."""
    defaults = levels.INSTANCE_DEFAULT_RETURN
    if series_uid is None:
        defaults += levels.SERIES_DEFAULT_RETURN
    if study_uid is None:
        defaults += levels.STUDY_DEFAULT_RETURN
    return defaults


class QueryService:
    """Runs searches in short read sessions; one grouped query per computed attribute set."""

    def __init__(self, index: Index, max_results: int = MAX_RESULTS) -> None:
        self.index = index
        self.max_results = max_results

    # -- paging and ignored keys ---------------------------------------------------------

    def _limit(self, query: Query) -> tuple[int, bool]:
        """The page size: the client's limit up to the server maximum (PS3.18 §8.3.4.4)."""
        if query.limit is None or query.limit > self.max_results:
            return self.max_results, True
        return query.limit, False

    def _result(self, query: Query, page: Page, items: list[Json]) -> SearchResult:
        limit, capped = self._limit(query)
        ignored = [c.parameter for c in query.matching() if not queries.supports(c, query.level)]
        return SearchResult(
            items, page.truncated, ignored, limit, query.offset, capped and page.truncated
        )

    # -- searches ------------------------------------------------------------------------

    def search_patients(self, query: Query, *, visible: Visible = None) -> SearchResult:
        """Patient level (C-FIND Patient Root, PS3.4 C.6.1.1.2) with the related counts."""
        query = replace(query, level=Level.PATIENT)
        wanted = wanted_tags(query, PATIENT_DEFAULT_RETURN, with_urls=False)
        with self.index.session() as session:
            page = queries.find_patients(
                session, query, limit=self._limit(query)[0], visible=visible
            )
            counts: dict[int, tuple[int, int, int]] = {}
            if PATIENT_COMPUTED.intersection(wanted):
                counts = queries.patient_counts(session, [r.id for r in page.rows], visible)
        items = []
        for row in page.rows:
            studies, series, instances = counts.get(row.id, (0, 0, 0))
            computed = {
                "00201200": _integer(studies),
                "00201202": _integer(series),
                "00201204": _integer(instances),
            }
            items.append(
                build_item(
                    wanted,
                    _loads(row.attrs),
                    computed,
                    include_all=query.include_all,
                    base_url=None,
                )
            )
        return self._result(query, page, items)

    def search_studies(
        self, query: Query, *, base_url: str | None = None, visible: Visible = None
    ) -> SearchResult:
        """Studies, newest first (PS3.18 §10.6.3.3.1)."""
        query = replace(query, level=Level.STUDY)
        wanted = wanted_tags(query, levels.STUDY_DEFAULT_RETURN, with_urls=base_url is not None)
        with self.index.session() as session:
            page = queries.find_studies(
                session, query, limit=self._limit(query)[0], visible=visible
            )
            counts = self._study_counts(session, wanted, [r.id for r in page.rows], visible)
        items = []
        for row in page.rows:
            source = {**_loads(row.patient_attrs), **_loads(row.attrs)}
            computed = {**ONLINE, **counts.get(row.id, {}), **_url(base_url, row.study_uid)}
            items.append(
                build_item(
                    wanted, source, computed, include_all=query.include_all, base_url=base_url
                )
            )
        return self._result(query, page, items)

    def search_series(
        self,
        query: Query,
        study_uid: str | None = None,
        *,
        base_url: str | None = None,
        visible: Visible = None,
    ) -> SearchResult:
        """Series of one study, or of all studies with study attributes too (PS3.18 §10.6.3.3.2)."""
        query = replace(query, level=Level.SERIES)
        defaults = levels.SERIES_DEFAULT_RETURN + (
            levels.STUDY_DEFAULT_RETURN if study_uid is None else ()
        )
        wanted = wanted_tags(query, defaults, with_urls=base_url is not None)
        with self.index.session() as session:
            study_pk = self._study_pk(session, study_uid, visible)
            page = queries.find_series(
                session, query, limit=self._limit(query)[0], study_pk=study_pk, visible=visible
            )
            counts = self._study_counts(session, wanted, [r.study_pk for r in page.rows], visible)
            per_series = self._series_counts(session, wanted, [r.id for r in page.rows], visible)
        items = []
        for row in page.rows:
            source = {**_loads(row.patient_attrs), **_loads(row.study_attrs), **_loads(row.attrs)}
            computed = {
                **counts.get(row.study_pk, {}),
                **per_series.get(row.id, {}),
                **_url(base_url, row.study_uid, row.series_uid),
            }
            items.append(
                build_item(
                    wanted, source, computed, include_all=query.include_all, base_url=base_url
                )
            )
        return self._result(query, page, items)

    def search_instances(
        self,
        query: Query,
        study_uid: str | None = None,
        series_uid: str | None = None,
        *,
        base_url: str | None = None,
        visible: Visible = None,
    ) -> SearchResult:
        """Instances of a series, a study or all, plus the levels above the path leaves open."""
        query = replace(query, level=Level.IMAGE)
        defaults = instance_defaults(study_uid, series_uid)
        wanted = wanted_tags(query, defaults, with_urls=base_url is not None)
        with self.index.session() as session:
            study_pk = self._study_pk(session, study_uid, visible)
            series_pk = self._series_pk(session, study_pk, series_uid, visible)
            limit = self._limit(query)[0]
            page = queries.find_instances(
                session, query, limit=limit, study_pk=study_pk, series_pk=series_pk, visible=visible
            )
            study_pks, series_pks = (
                [r.study_pk for r in page.rows],
                [r.series_pk for r in page.rows],
            )
            counts = self._study_counts(session, wanted, study_pks, visible)
            per_series = self._series_counts(session, wanted, series_pks, visible)
        items = []
        for row in page.rows:
            computed = {
                **ONLINE,
                **counts.get(row.study_pk, {}),
                **per_series.get(row.series_pk, {}),
                **_url(base_url, row.study_uid, row.series_uid, row.sop_uid),
            }
            source = _loads(row.metadata_json)
            items.append(
                build_item(
                    wanted, source, computed, include_all=query.include_all, base_url=base_url
                )
            )
        return self._result(query, page, items)

    # -- helpers -------------------------------------------------------------------------

    @staticmethod
    def _study_pk(session: Session, study_uid: str | None, visible: Visible) -> int | None:
        if study_uid is None:
            return None
        pk = queries.study_pk_for(session, study_uid, visible)
        if pk is None:
            raise UnknownStudy(study_uid)
        return pk

    @staticmethod
    def _series_pk(
        session: Session, study_pk: int | None, series_uid: str | None, visible: Visible
    ) -> int | None:
        if series_uid is None or study_pk is None:
            return None
        pk = queries.series_pk_for(session, study_pk, series_uid, visible)
        if pk is None:
            raise UnknownSeries(series_uid)
        return pk

    @staticmethod
    def _study_counts(
        session: Session, wanted: list[int], study_pks: list[int], visible: Visible
    ) -> dict[int, Json]:
        """Study computed attributes, only when asked for (one grouped query)."""
        if not levels.COMPUTED_STUDY.intersection(wanted):
            return {}
        found = queries.study_counts(session, list(dict.fromkeys(study_pks)), visible)
        return {pk: _study_computed(counts) for pk, counts in found.items()}

    @staticmethod
    def _series_counts(
        session: Session, wanted: list[int], series_pks: list[int], visible: Visible
    ) -> dict[int, Json]:
        if not levels.COMPUTED_SERIES.intersection(wanted):
            return {}
        found = queries.series_counts(session, list(dict.fromkeys(series_pks)), visible)
        return {pk: {"00201209": _integer(count)} for pk, count in found.items()}
