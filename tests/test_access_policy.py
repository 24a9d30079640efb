"""The access policy as a table: role × scope × grant state → allow or deny."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cloudfilm.domain.access import (
    ANONYMOUS,
    Audience,
    Grant,
    Permission,
    Principal,
    Role,
    StudyRef,
    decide,
    may_act_for,
    visible_scope,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
PAST = NOW - timedelta(days=30)
ALICE, BOB = 1, 2  # persons
OLD = StudyRef("1.2.old", ALICE, PAST - timedelta(days=1))
NEW = StudyRef("1.2.new", ALICE, NOW - timedelta(hours=1))
BOBS = StudyRef("1.2.bob", BOB, PAST)
UNLINKED = StudyRef("1.2.unlinked", None, PAST)


def grant(gid: int = 10, *, studies: set[str] | None = None, future: bool = False,
          audience: Audience = Audience.LINK, perms: tuple[Permission, ...] = (Permission.VIEW,),
          until: date | None = None, revoked: datetime | None = None, physician: int | None = None,
          person: int = ALICE) -> Grant:
    return Grant(gid, person, frozenset(studies) if studies is not None else None, future, audience,
                 frozenset(perms), created_at=PAST, valid_from=PAST, valid_until=until,
                 revoked_at=revoked, physician_user_id=physician)


PATIENT = Principal("user", 100, "alice", Role.PATIENT, own_person_id=ALICE)
CAREGIVER = Principal("user", 101, "carol", Role.CAREGIVER, acting_for=frozenset({ALICE}))
PHYSICIAN = Principal("user", 102, "dr", Role.PHYSICIAN)
OTHER_PHYSICIAN = Principal("user", 103, "dr2", Role.PHYSICIAN)
ADMIN = Principal("user", 104, "root", Role.ADMIN)
SHARE = Principal("share", share_grant_id=10)
NODE_ALL = Principal("node", username="PACS", node_sees_all=True)
NODE_NONE = Principal("node", username="MODALITY")

VIEW, DOWNLOAD, UPLOAD = Permission.VIEW, Permission.DOWNLOAD, Permission.UPLOAD
CASES = [
    # principal, permission, study, grants, allowed
    (ANONYMOUS, VIEW, OLD, [], False),
    (PATIENT, VIEW, OLD, [], True),
    (PATIENT, UPLOAD, NEW, [], True),
    (PATIENT, VIEW, BOBS, [], False),
    (PATIENT, VIEW, UNLINKED, [], False),
    (CAREGIVER, DOWNLOAD, OLD, [], True),
    (CAREGIVER, VIEW, BOBS, [], False),
    (ADMIN, VIEW, UNLINKED, [], True),
    (NODE_ALL, VIEW, BOBS, [], True),
    (NODE_NONE, VIEW, BOBS, [], False),
    (PHYSICIAN, VIEW, OLD, [], False),
    (PHYSICIAN, VIEW, OLD, [grant(audience=Audience.PHYSICIAN, physician=102)], True),
    (OTHER_PHYSICIAN, VIEW, OLD, [grant(audience=Audience.PHYSICIAN, physician=102)], False),
    (PHYSICIAN, DOWNLOAD, OLD, [grant(audience=Audience.PHYSICIAN, physician=102)], False),
    (PHYSICIAN, VIEW, OLD, [grant(audience=Audience.LINK, physician=None)], False),
    (SHARE, VIEW, OLD, [grant(studies={"1.2.old"})], True),
    (SHARE, VIEW, NEW, [grant(studies={"1.2.old"})], False),
    (SHARE, VIEW, BOBS, [grant(studies={"1.2.bob"})], False),  # grant's person is Alice
    (SHARE, VIEW, NEW, [grant()], False),  # timeline without future: studies up to creation
    (SHARE, VIEW, OLD, [grant()], True),
    (SHARE, VIEW, NEW, [grant(future=True)], True),
    (SHARE, VIEW, OLD, [grant(gid=11)], False),  # another grant than the session's
    (SHARE, VIEW, OLD, [grant(until=NOW.date())], True),  # the last day is included
    (SHARE, VIEW, OLD, [grant(until=NOW.date() - timedelta(days=1))], False),
    (SHARE, VIEW, OLD, [grant(revoked=NOW - timedelta(seconds=1))], False),
]


@pytest.mark.parametrize(("principal", "permission", "study", "grants", "allowed"), CASES)
def test_decide(principal: Principal, permission: Permission, study: StudyRef,
                grants: list[Grant], allowed: bool) -> None:
    assert decide(principal, permission, study, grants, NOW).allowed is allowed


@pytest.mark.parametrize(("principal", "permission", "study", "grants", "allowed"), CASES)
def test_visible_scope_agrees_with_decide(principal: Principal, permission: Permission,
                                          study: StudyRef, grants: list[Grant], allowed: bool) -> None:
    scope = visible_scope(principal, grants, NOW, permission)
    visible = (scope.everything or study.person_id in scope.person_ids
               or (study.person_id, study.study_uid) in scope.studies
               or any(study.person_id == p and study.indexed_at <= t for p, t in scope.timelines_until))
    assert visible is allowed


def test_caregiver_decisions_name_the_patient_they_act_for() -> None:
    assert decide(CAREGIVER, VIEW, OLD, [], NOW).on_behalf_of == ALICE


def test_only_the_patient_their_caregiver_or_an_admin_manage_a_folder() -> None:
    assert may_act_for(PATIENT, ALICE) and may_act_for(CAREGIVER, ALICE) and may_act_for(ADMIN, BOB)
    assert not may_act_for(PATIENT, BOB) and not may_act_for(PHYSICIAN, ALICE)
