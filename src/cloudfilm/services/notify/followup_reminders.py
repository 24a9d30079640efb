"""Follow-up reminders: tell a patient and their caregivers when the next lung CT is due.

Why: nodule surveillance runs for years, and a missed follow-up scan is the harm that
matters most; patients asked for proactive reminders (../shared/context/USERS.md).

Each study's nodule assessment (``nodule_assessments``, written by services/nodules/service.py)
names a window for the next scan. Only the newest assessment of a person's folder counts
(by study date, then row id); an assessment of a hospital record that is not linked to a
person is counted in the folder of the person it is linked to later, and skipped until
then (no account belongs to it). Then, comparing dates in UTC:

- ``follow-up-due`` from ``days_before`` days before the window opens
  (``now.date() >= next_scan_earliest - days_before``);
- ``follow-up-overdue`` once the window has closed (``now.date() > next_scan_latest``),
  instead of the due reminder if both would start at once;
- neither once a newer CT study (a study with a CT series, dated after the assessed
  study) is in the person's folder, from any hospital record. A CT without a study date
  does not count: nobody can tell whether it is newer.

Recipients are the person's own accounts and active caregivers (in-app always, e-mail
when the account has an address), as for share-expiry reminders (services/notify/reminders.py).
Accounts store no language, so every message is written in English and in Chinese.
The dedupe key (kind, assessment, the date it is about, user, channel) sends each once,
also after a crash mid-scan; a re-assessment that moves the window earns a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from babel.dates import format_date
from sqlalchemy import func, select

from cloudfilm.domain.clock import as_utc
from cloudfilm.services.notify.reminders import people_to_remind, reminder_messages
from cloudfilm.storage.index.access_models import OutboxRow, PersonRecordRow, PersonRow
from cloudfilm.storage.index.models import PatientRow, SeriesRow, StudyRow
from cloudfilm.storage.index.nodule_models import NoduleAssessmentRow
from cloudfilm.storage.index.queries import record_of_patient

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

KIND_DUE = "follow-up-due"
KIND_OVERDUE = "follow-up-overdue"
SUBJECT_MAX = 200  # outbox.subject is VARCHAR(200)
GUIDELINE_NAMES = {
    "fleischner-2017": ("the Fleischner Society guide (2017)", "Fleischner学会指南（2017年）"),
    "lung-rads-2022": ("Lung-RADS (2022)", "Lung-RADS（2022版）"),
}


@dataclass(frozen=True)
class FollowUp:
    """The newest assessment of a person's folder that names a window for the next scan."""

    assessment_id: int
    person_id: int
    name: str  # the person's display name ("" if none)
    study_date: date
    guideline: str
    earliest: date
    latest: date


def latest_follow_ups(archive: Archive) -> list[FollowUp]:
    """One per person: their newest assessment, if it names a next scan."""
    folder = func.coalesce(NoduleAssessmentRow.person_id, PersonRecordRow.person_id)
    stmt = (select(NoduleAssessmentRow, folder.label("folder"), PersonRow.display_name)
            .outerjoin(PatientRow, PatientRow.id == NoduleAssessmentRow.patient_pk)
            .outerjoin(PersonRecordRow, record_of_patient())
            .outerjoin(PersonRow, PersonRow.id == folder)
            .where(folder.is_not(None))
            .order_by(folder, NoduleAssessmentRow.study_date.desc(),
                      NoduleAssessmentRow.id.desc()))
    with archive.index.session() as session:
        rows = session.execute(stmt).all()
    follow_ups: list[FollowUp] = []
    seen: set[int] = set()
    for row, person_id, name in rows:
        if person_id in seen:
            continue
        seen.add(person_id)
        if row.next_scan_earliest is not None:
            follow_ups.append(FollowUp(row.id, person_id, name or "", row.study_date,
                                       row.guideline,
                                       row.next_scan_earliest,
                                       row.next_scan_latest or row.next_scan_earliest))
    return follow_ups


def reminder_due(follow_up: FollowUp, today: date, days_before: int) -> tuple[str, date] | None:
    """(kind, the date it is about) of the reminder due ``today``, if any."""
    if today > follow_up.latest:
        return KIND_OVERDUE, follow_up.latest
    if today >= follow_up.earliest - timedelta(days=days_before):
        return KIND_DUE, follow_up.earliest
    return None


def newer_ct_exists(archive: Archive, person_id: int, after: date) -> bool:
    """Is a CT study dated after ``after`` in any hospital record of the person?"""
    stmt = (select(StudyRow.id)
            .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
            .join(PersonRecordRow, record_of_patient())
            .join(SeriesRow, SeriesRow.study_pk == StudyRow.id)
            .where(PersonRecordRow.person_id == person_id, SeriesRow.modality == "CT",
                   StudyRow.study_date > after.strftime("%Y%m%d"))
            .limit(1))
    with archive.index.session() as session:
        return session.scalars(stmt).first() is not None


def _dates(day: date) -> tuple[str, str]:
    return (format_date(day, format="long", locale="en"),
            format_date(day, format="long", locale="zh_Hans_CN"))


def describe(follow_up: FollowUp, kind: str) -> tuple[str, str]:
    """Subject and body, English then Chinese (no diagnosis; the doctor explains)."""
    name = follow_up.name
    whose_en, whose_zh = (f"{name}'s", name) if name else ("your", "您")
    guide_en, guide_zh = GUIDELINE_NAMES.get(follow_up.guideline, (follow_up.guideline,) * 2)
    (scan_en, scan_zh), (first_en, first_zh), (last_en, last_zh) = (
        _dates(follow_up.study_date), _dates(follow_up.earliest), _dates(follow_up.latest))
    if kind == KIND_DUE:
        when_en = (f"around {first_en}" if follow_up.earliest == follow_up.latest
                   else f"between {first_en} and {last_en}")
        when_zh = (f"在{first_zh}前后" if follow_up.earliest == follow_up.latest
                   else f"在{first_zh}到{last_zh}之间")
        subject = (f"Reminder: {whose_en} next lung CT is due from {first_en} / "
                   f"提醒：{whose_zh}下次肺部CT复查从{first_zh}开始")
        english = (f"The lung CT scan of {scan_en} was checked with {guide_en}. It suggests "
                   f"{whose_en} next CT scan {when_en}.\n\nPlease book it with the hospital or "
                   "the doctor. When the new scan is in cloudfilm (sent by the hospital or "
                   "uploaded), these reminders stop.")
        chinese = (f"{whose_zh}{scan_zh}做的肺部CT，按照{guide_zh}，建议{when_zh}做下一次CT复查。"
                   "\n\n请和医院或医生预约。新的CT进入云胶片后（医院发送或自己上传），就不会再提醒。")
    else:
        subject = (f"{whose_en[0].upper()}{whose_en[1:]} follow-up lung CT was due by {last_en} / "
                   f"{whose_zh}的肺部CT复查已超过建议时间（{last_zh}前）")
        english = (f"After the lung CT scan of {scan_en}, {guide_en} suggested the next CT "
                   f"scan by {last_en}. No newer CT scan has reached cloudfilm yet.\n\n"
                   "If it has not been done, please book it with the hospital or the doctor. "
                   "If it has been done, ask the hospital to send it, or upload it, so the "
                   "doctors can compare.")
        chinese = (f"{whose_zh}{scan_zh}做的肺部CT之后，按照{guide_zh}，建议在{last_zh}前做下一次"
                   "CT复查。云胶片里还没有收到新的CT。\n\n如果还没做，请和医院或医生预约。"
                   "如果已经做了，请让医院发送，或者自己上传，方便医生比较。")
    body = (f"{english}\n\nThis is a reminder, not a diagnosis. The doctor will explain what "
            f"the results mean.\n\n---\n\n{chinese}\n\n这只是提醒，不是诊断。医生会解释检查结果的意思。\n")
    return subject[:SUBJECT_MAX], body


def _already_queued(archive: Archive, keys: list[str]) -> set[str]:
    with archive.index.session() as session:
        found = session.scalars(select(OutboxRow.dedupe_key).where(OutboxRow.dedupe_key.in_(keys)))
        return {key for key in found if key is not None}


def enqueue_followup_reminders(archive: Archive, now: datetime, days_before: int) -> int:
    """Queue the follow-up reminders due at ``now``; returns how many messages were queued."""
    today = as_utc(now).date()
    queued = 0
    for follow_up in latest_follow_ups(archive):
        due = reminder_due(follow_up, today, days_before)
        if due is None or newer_ct_exists(archive, follow_up.person_id, follow_up.study_date):
            continue
        kind, about = due
        subject, body = describe(follow_up, kind)
        messages = [message for user in people_to_remind(archive, follow_up.person_id,
                                                         patient_accounts=True)
                    for message in reminder_messages(
                        kind, f"{kind}:{follow_up.assessment_id}:{about.isoformat()}:{user.id}",
                        user, subject, body)]
        done = _already_queued(archive, [m.dedupe_key for m in messages if m.dedupe_key])
        queued += sum(archive.outbox.enqueue(m) is not None for m in messages
                      if m.dedupe_key not in done)
    return queued
