"""Nodule follow-up reminders (services/notify/followup_reminders.py) on a real index, both
databases: the due reminder from ``days_before`` days ahead and not a day earlier, the
overdue one after the window, none once a newer CT is stored, each message once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cloudfilm.config import NotifySettings
from cloudfilm.services.context import Archive
from cloudfilm.services.jobs.worker import start_worker
from cloudfilm.services.notify.followup_reminders import (
    KIND_DUE,
    KIND_OVERDUE,
    enqueue_followup_reminders,
)
from cloudfilm.services.notify.notifications import list_in_app
from cloudfilm.storage.index.access_models import (
    CaregiverRow,
    OutboxRow,
    PersonRecordRow,
    PersonRow,
    UserRow,
)
from cloudfilm.storage.index.models import PatientRow
from cloudfilm.storage.index.nodule_models import NoduleAssessmentRow
from factory import make_instance, to_bytes

EXAM = date(2025, 3, 1)
EARLIEST, LATEST = date(2025, 9, 1), date(2026, 3, 1)
DAYS = 30


def at(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


@dataclass
class Folder:
    person: int
    patient: int  # the patient's own account
    carer: int
    carer_without_mail: int
    former_carer: int
    stranger: int
    tmp: Path

    @property
    def told(self) -> list[tuple[int, str]]:
        """Who is told, on which channel: the patient and the active caregivers."""
        return sorted([(self.patient, "in-app"), (self.patient, "email"), (self.carer, "in-app"),
                       (self.carer, "email"), (self.carer_without_mail, "in-app")])


def add_user(archive: Archive, name: str, role: str, email: str | None = None,
             person_id: int | None = None) -> int:
    with archive.index.write_session() as session:
        row = UserRow(username=f"{name}-{time.monotonic_ns()}", role=role, email=email,
                      display_name=name.title(), person_id=person_id)
        session.add(row)
        session.commit()
        return row.id


def link(archive: Archive, person: int, patient_id: str, issuer: str) -> None:
    with archive.index.write_session() as session:
        session.add(PersonRecordRow(person_id=person, patient_id=patient_id, issuer=issuer,
                                    method="operator"))
        session.commit()


def store_study(archive: Archive, folder: Folder, day: date, *, patient_id: str = "P-ALICE",
                issuer: str = "HOSP-A", modality: str = "CT") -> str:
    ds = make_instance(patient_id=patient_id, issuer=issuer, patient_name="Example^Alice",
                       study_date=day.strftime("%Y%m%d"), modality=modality, rows=4, columns=4)
    path = folder.tmp / f"{ds.SOPInstanceUID}.dcm"
    path.write_bytes(to_bytes(ds))
    assert all(outcome.ok for outcome in archive.ingest.ingest_files([path]))
    return str(ds.StudyInstanceUID)


def family(archive: Archive, tmp: Path) -> Folder:
    with archive.index.write_session() as session:
        person = PersonRow(display_name="Alice Example")
        session.add(person)
        session.commit()
    folder = Folder(person.id,
                    add_user(archive, "alice", "patient", "alice@example.org", person.id),
                    add_user(archive, "carol", "caregiver", "carol@example.org"),
                    add_user(archive, "cody", "caregiver"),
                    add_user(archive, "fred", "caregiver", "fred@example.org"),
                    add_user(archive, "sam", "patient", "sam@example.org"), tmp)
    with archive.index.write_session() as session:
        for carer, status in ((folder.carer, "active"), (folder.carer_without_mail, "active"),
                              (folder.former_carer, "removed")):
            session.add(CaregiverRow(person_id=person.id, caregiver_user_id=carer, status=status))
        session.commit()
    link(archive, person.id, "P-ALICE", "HOSP-A")
    return folder


def assess(archive: Archive, study_uid: str, day: date, earliest: date | None,
           latest: date | None, *, person: int | None = None, patient_pk: int | None = None,
           guideline: str = "fleischner-2017") -> int:
    with archive.index.write_session() as session:
        row = NoduleAssessmentRow(
            person_id=person, patient_pk=patient_pk, study_uid=study_uid, study_date=day,
            guideline=guideline, category="Table A (solid), single, low risk, 6-8 mm",
            recommendation="CT at 6-12 months, then consider CT at 18-24 months.",
            rule="Fleischner 2017 (MacMahon et al., Radiology 2017;284:228-243), Table A",
            next_scan_earliest=earliest, next_scan_latest=latest)
        session.add(row)
        session.commit()
        return row.id


def queued(archive: Archive, kind: str) -> list[OutboxRow]:
    with archive.index.session() as session:
        return list(session.scalars(select(OutboxRow).where(OutboxRow.kind == kind)
                                    .order_by(OutboxRow.id)))


def recipients(rows: list[OutboxRow]) -> list[tuple[int | None, str]]:
    return sorted((r.recipient_user_id, r.channel) for r in rows)


@pytest.fixture
def folder(archive: Archive, tmp_path: Path) -> Folder:
    return family(archive, tmp_path)


@pytest.fixture
def assessment(archive: Archive, folder: Folder) -> int:
    study = store_study(archive, folder, EXAM)
    return assess(archive, study, EXAM, EARLIEST, LATEST, person=folder.person)


def test_the_due_reminder_starts_days_before_the_window_and_not_a_day_earlier(
        archive: Archive, folder: Folder, assessment: int) -> None:
    first_day = EARLIEST - timedelta(days=DAYS)
    assert enqueue_followup_reminders(archive, at(first_day - timedelta(days=1)), DAYS) == 0
    assert enqueue_followup_reminders(archive, at(first_day), DAYS) == 5
    rows = queued(archive, KIND_DUE)
    assert recipients(rows) == folder.told
    assert {r.dedupe_key for r in rows} == {
        f"{KIND_DUE}:{assessment}:{EARLIEST.isoformat()}:{user}:{channel}"
        for user, channel in folder.told}
    assert rows[0].subject == ("Reminder: Alice Example's next lung CT is due from "
                               "September 1, 2025 / 提醒：Alice Example下次肺部CT复查从2025年9月1日开始")
    body = rows[0].body
    assert "between September 1, 2025 and March 1, 2026" in body
    assert "2025年9月1日到2026年3月1日之间" in body
    assert "not a diagnosis" in body and "不是诊断" in body
    assert next(r for r in rows if r.channel == "email" and r.recipient_user_id
                == folder.patient).recipient_address == "alice@example.org"


def test_each_reminder_is_queued_once(archive: Archive, folder: Folder, assessment: int) -> None:
    day = EARLIEST - timedelta(days=DAYS)
    assert enqueue_followup_reminders(archive, at(day), DAYS) == 5
    assert enqueue_followup_reminders(archive, at(day) + timedelta(hours=1), DAYS) == 0
    assert enqueue_followup_reminders(archive, at(EARLIEST), DAYS) == 0
    assert enqueue_followup_reminders(archive, at(LATEST), DAYS) == 0
    assert len(queued(archive, KIND_DUE)) == 5 and queued(archive, KIND_OVERDUE) == []


def test_an_overdue_reminder_follows_the_end_of_the_window(
        archive: Archive, folder: Folder, assessment: int) -> None:
    assert enqueue_followup_reminders(archive, at(EARLIEST), DAYS) == 5
    assert enqueue_followup_reminders(archive, at(LATEST + timedelta(days=1)), DAYS) == 5
    assert enqueue_followup_reminders(archive, at(LATEST + timedelta(days=40)), DAYS) == 0
    rows = queued(archive, KIND_OVERDUE)
    assert recipients(rows) == folder.told
    assert rows[0].subject.startswith("Alice Example's follow-up lung CT was due by March 1, 2026")
    assert "No newer CT scan has reached cloudfilm yet" in rows[0].body
    assert "云胶片里还没有收到新的CT" in rows[0].body


def test_a_late_first_scan_sends_only_the_overdue_reminder(
        archive: Archive, folder: Folder, assessment: int) -> None:
    assert enqueue_followup_reminders(archive, at(LATEST + timedelta(days=3)), DAYS) == 5
    assert queued(archive, KIND_DUE) == []


def test_a_newer_ct_from_any_hospital_record_stops_the_reminders(
        archive: Archive, folder: Folder, assessment: int) -> None:
    link(archive, folder.person, "A-77", "HOSP-B")
    store_study(archive, folder, date(2025, 8, 20), patient_id="A-77", issuer="HOSP-B",
                modality="MR")  # not a CT
    store_study(archive, folder, EXAM, patient_id="A-77", issuer="HOSP-B")  # not newer
    assert enqueue_followup_reminders(archive, at(EARLIEST), DAYS) == 5
    store_study(archive, folder, date(2025, 9, 10), patient_id="A-77", issuer="HOSP-B")
    assert enqueue_followup_reminders(archive, at(LATEST + timedelta(days=1)), DAYS) == 0
    assert queued(archive, KIND_OVERDUE) == []


def test_only_the_newest_assessment_of_a_folder_counts(
        archive: Archive, folder: Folder, assessment: int) -> None:
    later = date(2025, 6, 1)
    newest = assess(archive, "1.2.826.0.1.3680043.8.498.99", later, None, None,
                    person=folder.person)  # no routine follow-up: nothing to remind
    assert enqueue_followup_reminders(archive, at(EARLIEST), DAYS) == 0
    with archive.index.write_session() as session:
        row = session.get(NoduleAssessmentRow, newest)
        assert row is not None
        row.next_scan_earliest = row.next_scan_latest = date(2025, 12, 1)
        session.commit()
    assert enqueue_followup_reminders(archive, at(date(2025, 11, 15)), DAYS) == 5
    assert {r.dedupe_key.split(":")[1] for r in queued(archive, KIND_DUE)
            if r.dedupe_key} == {str(newest)}
    assert "around December 1, 2025" in queued(archive, KIND_DUE)[0].body


def test_an_assessment_filed_under_a_hospital_record_reaches_its_linked_person(
        archive: Archive, folder: Folder) -> None:
    study = store_study(archive, folder, EXAM)
    with archive.index.session() as session:
        patient_pk = session.scalars(select(PatientRow.id).where(
            PatientRow.patient_id == "P-ALICE", PatientRow.issuer == "HOSP-A")).one()
    assess(archive, study, EXAM, EARLIEST, LATEST, patient_pk=patient_pk,
           guideline="lung-rads-2022")
    assert enqueue_followup_reminders(archive, at(EARLIEST), DAYS) == 5
    assert recipients(queued(archive, KIND_DUE)) == folder.told
    assert "Lung-RADS (2022)" in queued(archive, KIND_DUE)[0].body


def test_an_unlinked_hospital_record_has_nobody_to_remind(archive: Archive,
                                                          folder: Folder) -> None:
    study = store_study(archive, folder, EXAM, patient_id="X-1", issuer="HOSP-C")
    with archive.index.session() as session:
        patient_pk = session.scalars(select(PatientRow.id).where(
            PatientRow.patient_id == "X-1")).one()
    assess(archive, study, EXAM, EARLIEST, LATEST, patient_pk=patient_pk)
    assert enqueue_followup_reminders(archive, at(EARLIEST), DAYS) == 0


def test_the_background_worker_delivers_follow_up_reminders_in_app(
        archive: Archive, folder: Folder) -> None:
    today = datetime.now(UTC).date()
    study = store_study(archive, folder, today - timedelta(days=180))
    assess(archive, study, today - timedelta(days=180), today + timedelta(days=10),
           today + timedelta(days=100), person=folder.person)
    archive.settings = replace(archive.settings,
                               notify=NotifySettings(interval=0.2, followup_days=30))
    handle = start_worker(archive)
    try:
        deadline = time.monotonic() + 30
        while not list_in_app(archive.index, folder.carer) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        handle.stop()
    [message] = list_in_app(archive.index, folder.carer)
    assert message["kind"] == KIND_DUE and "Alice Example" in message["subject"]
    assert [m["kind"] for m in list_in_app(archive.index, folder.patient)] == [KIND_DUE]
    assert list_in_app(archive.index, folder.stranger) == []
