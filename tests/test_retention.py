"""Retention: per-source minimum years, legal holds, grants that block deletion, the report
(`cloudfilm retention ...`), and `may_delete` for the deletion paths. Nothing is deleted.
Both databases."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from pydicom.uid import generate_uid
from sqlalchemy import func, select

from cloudfilm.config import Settings
from cloudfilm.services.archive.retention import Retention, RetentionError, add_years
from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.importer import import_paths
from cloudfilm.storage.index.access_models import (
    GrantRow,
    PersonRecordRow,
    PersonRow,
    UserRow,
)
from cloudfilm.storage.index.models import InstanceRow
from conftest import database_url_for, run_cli
from factory import make_instance, to_bytes


@dataclass(frozen=True)
class Studies:
    a_old: str  # HOSP_A, 2010-01-15
    a_new: str  # HOSP_A, 2024-03-01
    b_old: str  # HOSP_B, 2005-06-01
    no_issuer: str  # no IssuerOfPatientID, 2000-01-01
    no_date: str  # HOSP_A, no StudyDate (counted from arrival)


@dataclass
class Setup:
    archive: Archive
    studies: Studies
    retention: Retention

    def cli(self, *args: str) -> tuple[int, str]:
        done = run_cli([*args, "--data", str(self.archive.settings.data_dir)],
                       self.archive.settings.database_url)
        return done.returncode, done.stdout + done.stderr

    def report(self) -> dict[str, list[str]]:
        """``retention report`` as {study: [source, date, years, eligible, status, blocked]}."""
        code, out = self.cli("retention", "report")
        assert code == 0, out
        lines = out.strip().splitlines()
        assert lines[0].startswith("STUDY\tSOURCE") and "Nothing was deleted." in lines[-1]
        return {cols[0]: cols[1:] for cols in (line.split("\t") for line in lines[1:-1])}


def write_studies(folder: Path) -> Studies:
    specs = {"a_old": ("PA1", "HOSP_A", "20100115"), "a_new": ("PA1", "HOSP_A", "20240301"),
             "b_old": ("PB1", "HOSP_B", "20050601"), "no_issuer": ("PX", "", "20000101"),
             "no_date": ("PA2", "HOSP_A", "")}
    uids = {}
    folder.mkdir()
    for name, (patient, issuer, when) in specs.items():
        uids[name] = generate_uid()
        ds = make_instance(study=uids[name], patient_id=patient, issuer=issuer, study_date=when)
        (folder / f"{name}.dcm").write_bytes(to_bytes(ds))
    return Studies(**uids)


@pytest.fixture
def setup(database_kind: str, tmp_path: Path) -> Iterator[Setup]:
    data_dir = tmp_path / "data"
    url, schema = database_url_for(database_kind, data_dir)
    archive = Archive.open(Settings.load(data_dir, url), recover=False)
    try:
        studies = write_studies(tmp_path / "in")
        results = import_paths(archive.ingest, [tmp_path / "in"], lambda r: None, [])
        assert len(results) == 5
        yield Setup(archive, studies, Retention(archive.index))
    finally:
        archive.close()
        if schema:
            schema.drop()


def link_person(archive: Archive, patient_id: str, issuer: str) -> int:
    with archive.index.write_session() as session:
        person = PersonRow(display_name="Alice")
        session.add(person)
        session.flush()
        session.add(PersonRecordRow(person_id=person.id, patient_id=patient_id, issuer=issuer,
                                    method="operator"))
        session.commit()
        return person.id


def add_grant(archive: Archive, person: int, study_uids: list[str] | None, **fields: object) -> int:
    with archive.index.write_session() as session:
        owner = UserRow(username=f"owner{person}-{len(str(fields))}-{id(fields)}", role="patient")
        session.add(owner)
        session.flush()
        now = datetime.now(UTC)
        values: dict[str, object] = {
            "owner_user_id": owner.id, "person_id": person, "audience": "link",
            "permissions": "view", "created_at": now, "valid_from": now - timedelta(days=1),
            "valid_until": now.date() + timedelta(days=30),
            "study_uids": None if study_uids is None else json.dumps(study_uids)} | fields
        row = GrantRow(**values)
        session.add(row)
        session.commit()
        return row.id


def stored_instances(archive: Archive) -> int:
    with archive.index.session() as session:
        return int(session.scalar(select(func.count()).select_from(InstanceRow)) or 0)


# --- policies --------------------------------------------------------------------------------

def test_without_a_policy_every_study_is_kept_forever(setup: Setup) -> None:
    report = setup.report()
    assert set(report) == set(vars(setup.studies).values())
    a_old = report[setup.studies.a_old]
    assert a_old == ["HOSP_A", "2010-01-15", "forever", "never", "kept", "-"]
    assert report[setup.studies.no_issuer][0] == "(no issuer)"
    assert report[setup.studies.no_date][1] == "-"
    assert all(setup.retention.may_delete(uid)[0] is False for uid in report)
    assert "keeps it forever" in setup.retention.may_delete(setup.studies.a_old)[1]


def test_policies_per_source_with_a_default(setup: Setup) -> None:
    s = setup.studies
    assert setup.cli("retention", "policy", "set", "HOSP_A", "--min-years", "10")[0] == 0
    assert setup.cli("retention", "policy", "set", "*", "--min-years", "20")[0] == 0
    code, out = setup.cli("retention", "policy", "set", "HOSP_B", "--forever")
    assert code == 0 and "keep forever" in out
    report = setup.report()
    assert report[s.a_old][2:5] == ["10", "2020-01-15", "may be deleted"]
    assert report[s.a_new][2:5] == ["10", "2034-03-01", "kept"]
    assert report[s.b_old][2:5] == ["forever", "never", "kept"]  # the source's own policy wins
    assert report[s.no_issuer][2:5] == ["20", "2020-01-01", "may be deleted"]  # the default
    arrived = datetime.now(UTC).date()
    assert report[s.no_date][3] == add_years(arrived, 10).isoformat()
    assert setup.retention.may_delete(s.a_old) == (True,
                                                   "retention of 10 years ended on 2020-01-15")
    allowed, why = setup.retention.may_delete(s.a_new)
    assert not allowed and why == "kept until 2034-03-01 (10 years)"
    assert setup.retention.may_delete(s.a_new, datetime(2034, 3, 1, tzinfo=UTC))[0]
    assert setup.retention.policies() == {"HOSP_A": 10, "*": 20, "HOSP_B": None}
    code, out = setup.cli("retention", "policy", "list")
    assert out.splitlines() == ["*\t20", "HOSP_A\t10", "HOSP_B\tforever"]


def test_add_years_keeps_the_calendar_day() -> None:
    assert add_years(date(2010, 1, 15), 10) == date(2020, 1, 15)
    assert add_years(date(2024, 2, 29), 1) == date(2025, 2, 28)
    assert add_years(date(2024, 2, 29), 4) == date(2028, 2, 29)


def test_a_negative_minimum_is_refused(setup: Setup) -> None:
    with pytest.raises(RetentionError):
        setup.retention.set_policy("HOSP_A", -1)
    code, out = setup.cli("retention", "policy", "set", "HOSP_A", "--min-years", "-3")
    assert code == 2 and "zero or more" in out


# --- what blocks deletion --------------------------------------------------------------------

def test_a_legal_hold_on_a_study_blocks_it_until_released(setup: Setup) -> None:
    s = setup.studies
    setup.retention.set_policy("*", 0)
    code, out = setup.cli("retention", "hold", "add", "--study", s.a_old, "--reason", "litigation")
    assert code == 0 and out.startswith("legal hold 1 on study")
    report = setup.report()
    assert report[s.a_old][4:] == ["kept", "legal hold #1 (litigation)"]
    assert report[s.a_new][4:] == ["may be deleted", "-"]
    assert setup.retention.may_delete(s.a_old) == (False, "blocked by legal hold #1 (litigation)")
    code, out = setup.cli("retention", "hold", "list")
    assert out.startswith(f"1\tstudy {s.a_old}\t") and "\tactive\tlitigation" in out
    assert setup.cli("retention", "hold", "release", "1") == (0, "released legal hold 1\n")
    assert setup.retention.may_delete(s.a_old)[0] is True
    assert setup.cli("retention", "hold", "list")[1] == ""
    code, out = setup.cli("retention", "hold", "release", "1")
    assert code == 1 and "already released" in out
    assert setup.cli("retention", "hold", "release", "99")[0] == 1


def test_a_legal_hold_on_a_person_blocks_all_their_studies(setup: Setup) -> None:
    s = setup.studies
    setup.retention.set_policy("*", 0)
    person = link_person(setup.archive, "PA1", "HOSP_A")
    hold = setup.retention.add_hold("insurance dispute", person_id=person)
    blocked = {uid for uid in vars(s).values() if not setup.retention.may_delete(uid)[0]}
    assert blocked == {s.a_old, s.a_new}  # PA1 at HOSP_A; PA2 and other sources are free
    setup.retention.release_hold(hold)
    assert all(setup.retention.may_delete(uid)[0] for uid in vars(s).values())


def test_hold_arguments_are_checked(setup: Setup) -> None:
    with pytest.raises(RetentionError):
        setup.retention.add_hold("both", study_uid="1.2", person_id=1)
    with pytest.raises(RetentionError):
        setup.retention.add_hold("neither")
    with pytest.raises(RetentionError):
        setup.retention.add_hold("  ", study_uid="1.2")
    code, out = setup.cli("retention", "hold", "add", "--reason", "x")
    assert code == 2 and "one of the arguments --study --person is required" in out


def test_active_grants_block_deletion_and_ended_ones_do_not(setup: Setup) -> None:
    s = setup.studies
    setup.retention.set_policy("*", 0)
    person = link_person(setup.archive, "PA1", "HOSP_A")
    now = datetime.now(UTC)
    add_grant(setup.archive, person, [s.a_old], revoked_at=now - timedelta(hours=1))
    add_grant(setup.archive, person, [s.a_old], valid_until=now.date() - timedelta(days=1))
    add_grant(setup.archive, person, [s.b_old])  # another person's study: no effect
    add_grant(setup.archive, person, [s.a_old], valid_from=now + timedelta(days=1))  # not yet
    assert setup.retention.may_delete(s.a_old)[0] is True
    live = add_grant(setup.archive, person, [s.a_old])
    allowed, why = setup.retention.may_delete(s.a_old)
    assert not allowed and f"grant #{live}" in why
    assert setup.retention.may_delete(s.a_new)[0] is True
    until = now.date() + timedelta(days=30)
    assert setup.report()[s.a_old][5] == f"grant #{live} (active until {until.isoformat()})"
    assert not setup.retention.may_delete(s.a_old, now + timedelta(days=29))[0]
    assert setup.retention.may_delete(s.a_old, now + timedelta(days=31))[0]  # it has ended


def test_a_timeline_grant_blocks_the_studies_it_covers(setup: Setup) -> None:
    s = setup.studies
    setup.retention.set_policy("*", 0)
    person = link_person(setup.archive, "PA1", "HOSP_A")
    before = datetime.now(UTC) - timedelta(days=2)
    # a timeline grant without include_future covers only what had arrived when it was made
    add_grant(setup.archive, person, None, created_at=before, valid_from=before)
    assert setup.retention.may_delete(s.a_old)[0] is True  # arrived after the grant was made
    forward = add_grant(setup.archive, person, None, created_at=before, valid_from=before,
                        include_future=True)
    assert {setup.retention.may_delete(u)[1] for u in (s.a_old, s.a_new)} == {
        f"blocked by grant #{forward} (active until "
        f"{(datetime.now(UTC).date() + timedelta(days=30)).isoformat()})"}


def test_an_unknown_study_may_be_deleted_as_there_is_nothing_to_keep(setup: Setup) -> None:
    assert setup.retention.may_delete("1.2.3.4.5") == (True, "the study is not stored")


# --- nothing is deleted, and changes are audited ---------------------------------------------

def test_reporting_deletes_nothing_and_changes_are_audited(setup: Setup) -> None:
    blobs = sorted(p.name for p in (setup.archive.settings.data_dir / "blobs").rglob("*")
                   if p.is_file())
    assert stored_instances(setup.archive) == 5 and len(blobs) == 5
    assert setup.cli("retention", "policy", "set", "*", "--min-years", "0")[0] == 0
    assert setup.cli("retention", "hold", "add", "--study", setup.studies.a_old,
                     "--reason", "audit me")[0] == 0
    report = setup.report()
    assert sum(cols[4] == "may be deleted" for cols in report.values()) == 4
    assert stored_instances(setup.archive) == 5
    assert sorted(p.name for p in (setup.archive.settings.data_dir / "blobs").rglob("*")
                  if p.is_file()) == blobs
    records = setup.archive.audit.query()
    assert [(r.entry.action, r.entry.detail["retention"]) for r in records] == [
        ("admin", "policy-set"), ("admin", "hold-add")]
    assert records[1].entry.study_uid == setup.studies.a_old
    assert records[0].entry.actor.startswith("cli:")
    assert setup.archive.audit.verify().intact
