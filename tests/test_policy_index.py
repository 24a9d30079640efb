"""services/access/policy.py against a real index (SQLite and PostgreSQL): ownership through
person_records, grants loaded from rows, and the ``visible=`` clause for QueryService.

The core property: for every principal, the studies a QIDO search returns with
``Policy.visible_clause`` are exactly those ``Policy.check`` allows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from cloudfilm.config import Settings
from cloudfilm.domain.access import ANONYMOUS, Permission, Principal, Role
from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import Query
from cloudfilm.services.access.people import PeopleService
from cloudfilm.services.access.policy import Policy, visible_instances_clause
from cloudfilm.services.archive.query import UnknownStudy
from cloudfilm.services.context import Archive
from cloudfilm.storage.index.access_models import GrantRow, PersonRow, UserRow
from cloudfilm.storage.index.models import StudyRow
from conftest import database_url_for
from factory import make_instance, to_bytes

OPERATOR = Principal("user", username="op", role=Role.OPERATOR)
NOW = datetime.now(UTC)


@dataclass
class World:
    archive: Archive
    alice: int
    bob: int
    studies: dict[str, str]  # name -> Study Instance UID
    physician: Principal
    grants: dict[str, int]


def _store(archive: Archive, tmp: Path, name: str, patient_id: str, issuer: str,
           instances: int = 1, modality: str = "CT") -> str:
    first = make_instance(patient_id=patient_id, issuer=issuer)
    study, series = first.StudyInstanceUID, first.SeriesInstanceUID
    paths = []
    for n in range(instances):
        ds = make_instance(study=study, series=series, patient_id=patient_id, issuer=issuer,
                           modality=modality,
                           instance_number=n + 1, rows=4, columns=4)
        path = tmp / f"{name}-{n}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    assert all(o.ok for o in archive.ingest.ingest_files(paths))
    return study


def _grant(archive: Archive, person: int, owner: int, *, studies: list[str] | None = None,
           audience: str = "link", physician: int | None = None, future: bool = False,
           created: datetime = NOW) -> int:
    with archive.index.write_session() as session:
        row = GrantRow(owner_user_id=owner, person_id=person, audience=audience,
                       study_uids=json.dumps(studies) if studies is not None else None,
                       include_future=future, physician_user_id=physician, permissions="view",
                       created_at=created, valid_from=created, open_count=0)
        session.add(row)
        session.commit()
        return row.id


def _users(archive: Archive, alice: int) -> tuple[int, int]:
    with archive.index.write_session() as session:
        owner = UserRow(username="alice", role="patient", person_id=alice)
        doctor = UserRow(username="dr", role="physician")
        session.add_all([owner, doctor])
        session.commit()
        return owner.id, doctor.id


def _build(archive: Archive, tmp: Path) -> World:
    people = PeopleService(archive)
    alice = people.create_person(OPERATOR, "Alice", "19600101", "F")
    bob = people.create_person(OPERATOR, "Bob", "19700101", "M")
    studies = {"old_a": _store(archive, tmp, "old_a", "A-1", "HOSP-A", instances=3),
               "new_b": _store(archive, tmp, "new_b", "B-1", "HOSP-B", modality="MR"),
               "bob": _store(archive, tmp, "bob", "C-1", "HOSP-A"),
               "unlinked": _store(archive, tmp, "unlinked", "U-1", "HOSP-U")}
    for person, pid, issuer in ((alice, "A-1", "HOSP-A"), (alice, "B-1", "HOSP-B"),
                                (bob, "C-1", "HOSP-A")):
        people.link(OPERATOR, person, pid, issuer)
    with archive.index.write_session() as session:  # old_a arrived 10 days ago
        session.execute(update(StudyRow).where(StudyRow.study_uid == studies["old_a"])
                        .values(created_at=NOW - timedelta(days=10)))
        session.commit()
    owner, doctor = _users(archive, alice)
    grants = {
        "link_old": _grant(archive, alice, owner, studies=[studies["old_a"]]),
        "timeline": _grant(archive, alice, owner, created=NOW - timedelta(days=5)),
        "future": _grant(archive, alice, owner, future=True),
        "doctor": _grant(archive, alice, owner, audience="physician", physician=doctor,
                         studies=[studies["new_b"]]),
    }
    return World(archive, alice, bob, studies,
                 Principal("user", doctor, "dr", Role.PHYSICIAN), grants)


@pytest.fixture(scope="module")
def world(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp(f"policy-{database_kind}")
    url, schema = database_url_for(database_kind, tmp / "data")
    archive = Archive.open(Settings.load(tmp / "data", url))
    try:
        yield _build(archive, tmp)
    finally:
        archive.close()
        if schema:
            schema.drop()


def _share(world: World, name: str) -> Principal:
    return Principal("share", share_grant_id=world.grants[name])


def _principals(world: World) -> dict[str, Principal]:
    return {
        "anonymous": ANONYMOUS,
        "alice": Principal("user", 1, "alice", Role.PATIENT, own_person_id=world.alice),
        "carer": Principal("user", 2, "carer", Role.CAREGIVER, acting_for=frozenset({world.bob})),
        "admin": Principal("user", 3, "root", Role.ADMIN),
        "physician": world.physician,
        "other-physician": Principal("user", 999, "dr2", Role.PHYSICIAN),
        **{f"share:{n}": _share(world, n) for n in ("link_old", "timeline", "future")},
    }


EXPECTED = {  # principal -> studies it may view
    "anonymous": set(),
    "alice": {"old_a", "new_b"},
    "carer": {"bob"},
    "admin": {"old_a", "new_b", "bob", "unlinked"},
    "physician": {"new_b"},
    "other-physician": set(),
    "share:link_old": {"old_a"},
    "share:timeline": {"old_a"},  # new_b arrived after the grant; no include_future
    "share:future": {"old_a", "new_b"},
}


def _visible_uids(world: World, principal: Principal) -> set[str]:
    clause = Policy(world.archive).visible_clause(principal, Permission.VIEW)
    result = world.archive.query.search_studies(Query(Level.STUDY), visible=clause)
    return {item["0020000D"]["Value"][0] for item in result.items}


def _names(world: World, uids: set[str]) -> set[str]:
    return {name for name, uid in world.studies.items() if uid in uids}


def test_study_ref_follows_person_records(world: World) -> None:
    policy = Policy(world.archive)
    old = policy.study_ref(world.studies["old_a"])
    assert old is not None and old.person_id == world.alice
    assert abs((old.indexed_at - (NOW - timedelta(days=10))).total_seconds()) < 2
    assert policy.study_ref(world.studies["bob"]).person_id == world.bob  # type: ignore[union-attr]
    assert policy.study_ref(world.studies["unlinked"]).person_id is None  # type: ignore[union-attr]
    assert policy.study_ref("1.2.3.404") is None


@pytest.mark.parametrize("who", sorted(EXPECTED))
def test_check_allows_exactly_the_expected_studies(world: World, who: str) -> None:
    principal = _principals(world)[who]
    policy = Policy(world.archive)
    allowed = {name for name, uid in world.studies.items()
               if policy.check(principal, Permission.VIEW, uid).allowed}
    assert allowed == EXPECTED[who]


@pytest.mark.parametrize("who", sorted(EXPECTED))
def test_visible_clause_returns_what_check_allows(world: World, who: str) -> None:
    principal = _principals(world)[who]
    assert _names(world, _visible_uids(world, principal)) == EXPECTED[who]


def test_download_needs_the_download_permission(world: World) -> None:
    share = _share(world, "link_old")
    policy = Policy(world.archive)
    assert policy.check(share, Permission.VIEW, world.studies["old_a"]).allowed
    assert not policy.check(share, Permission.DOWNLOAD, world.studies["old_a"]).allowed
    assert policy.scope(share, Permission.DOWNLOAD).nothing


def test_clause_works_for_series_and_instance_searches_with_counts(world: World) -> None:
    """The uncorrelated subqueries must also work where the outer query selects series."""
    share = _share(world, "timeline")
    clause = Policy(world.archive).visible_clause(share)
    query = world.archive.query
    instances = query.search_instances(Query(Level.IMAGE), world.studies["old_a"], visible=clause)
    assert len(instances.items) == 3
    series = query.search_series(Query(Level.SERIES, includefields=frozenset({0x00201209})),
                                 world.studies["old_a"], visible=clause)
    assert [s["00201209"]["Value"][0] for s in series.items] == [3]
    with pytest.raises(UnknownStudy):
        query.search_instances(Query(Level.IMAGE), world.studies["new_b"], visible=clause)
    patients = query.search_patients(Query(Level.PATIENT), visible=clause)
    assert [p["00100020"]["Value"][0] for p in patients.items] == ["A-1"]


def test_everything_and_nothing_scopes(world: World) -> None:
    policy = Policy(world.archive)
    assert policy.visible_clause(Principal("user", 3, "root", Role.ADMIN)) is None
    nothing = visible_instances_clause(policy.scope(ANONYMOUS))
    assert world.archive.query.search_studies(Query(Level.STUDY), visible=nothing).items == []


def _set_doctor_grant(world: World, **values: object) -> None:
    with world.archive.index.write_session() as session:
        session.execute(update(GrantRow).where(GrantRow.id == world.grants["doctor"])
                        .values(**values))
        session.commit()


def test_revoked_and_expired_grants_stop_at_once(world: World) -> None:
    policy = Policy(world.archive)
    physician, uid = world.physician, world.studies["new_b"]
    assert policy.check(physician, Permission.VIEW, uid).allowed
    try:
        _set_doctor_grant(world, valid_until=date.today() - timedelta(days=1))
        assert not policy.check(physician, Permission.VIEW, uid).allowed
        assert _visible_uids(world, physician) == set()
        _set_doctor_grant(world, valid_until=None, revoked_at=NOW)
        assert not policy.check(physician, Permission.VIEW, uid).allowed
        assert _visible_uids(world, physician) == set()
    finally:
        _set_doctor_grant(world, valid_until=None, revoked_at=None)
    assert _names(world, _visible_uids(world, physician)) == {"new_b"}


def test_unlinking_a_record_takes_its_studies_out_of_every_scope(world: World) -> None:
    people, policy = PeopleService(world.archive), Policy(world.archive)
    alice = _principals(world)["alice"]
    people.unlink(OPERATOR, world.alice, "B-1", "HOSP-B")
    try:
        assert not policy.check(alice, Permission.VIEW, world.studies["new_b"]).allowed
        assert _names(world, _visible_uids(world, alice)) == {"old_a"}
    finally:
        people.link(OPERATOR, world.alice, "B-1", "HOSP-B")
    assert _names(world, _visible_uids(world, alice)) == {"old_a", "new_b"}


def test_a_person_without_records_sees_nothing(world: World) -> None:
    with world.archive.index.write_session() as session:
        person = PersonRow(display_name="Nobody")
        session.add(person)
        session.commit()
        lonely = Principal("user", 77, "nobody", Role.PATIENT, own_person_id=person.id)
    assert _visible_uids(world, lonely) == set()


def test_uploads_to_new_and_existing_studies(world: World) -> None:
    policy, principals = Policy(world.archive), _principals(world)
    alice, carer = principals["alice"], principals["carer"]
    assert policy.check_upload(alice, "1.2.3.new", world.alice).allowed
    assert not policy.check_upload(alice, "1.2.3.new", world.bob).allowed
    assert policy.check_upload(carer, "1.2.3.new", world.bob).allowed
    assert not policy.check_upload(alice, world.studies["bob"], world.alice).allowed  # Bob's
    assert not policy.check_upload(principals["physician"], "1.2.3.new", world.alice).allowed
    assert not policy.check_upload(_share(world, "future"), "1.2.3.new", world.alice).allowed
