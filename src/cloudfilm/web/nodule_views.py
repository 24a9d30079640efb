"""What the portal shows about nodules: the study's panel and the folder's trajectories.

Why a module apart from `pages`: the same data feeds the study page (measurements,
guideline result, physician controls), the case folder (a growth chart per nodule and
the physician's nodule × scan-date tracking table) and the plain-language text for
patients; building it here keeps the page handlers thin.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from cloudfilm.domain.access import Principal, Role
from cloudfilm.i18n import N_, Localizer
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.ai.candidates import BUILTIN, CandidateService
from cloudfilm.services.context import Archive
from cloudfilm.services.nodules.model import NoduleError, NotFound
from cloudfilm.services.nodules.service import NoduleService
from cloudfilm.web import explanations, growth_chart, guideline_words

TYPE_LABELS = {"solid": N_("solid"), "part-solid": N_("part-solid"),
               "ground-glass": N_("ground-glass")}
LINK_LABELS = {"auto": N_("matched automatically: please confirm"),
               "confirmed": N_("confirmed by a physician"), "new": N_("new nodule"),
               "unlinked": N_("not followed")}
GUIDELINE_LABELS = {"fleischner-2017": N_("Fleischner 2017 (incidental nodules)"),
                    "lung-rads-2022": N_("Lung-RADS v2022 (screening)")}
SEX_LABELS = {"M": N_("male"), "F": N_("female"), "O": N_("other")}
CANDIDATE_STATUS = {"pending": N_("to review"), "accepted": N_("accepted"),
                    "rejected": N_("rejected")}
CALCIFICATIONS = ("none", "diffuse", "central", "laminated", "popcorn", "indeterminate")
LOBES = ("RUL", "RML", "RLL", "LUL", "LLL")


def is_clinician(who: Principal) -> bool:
    return who.kind == "user" and who.role in (Role.PHYSICIAN, Role.OPERATOR, Role.ADMIN)


def may_write(archive: Archive, who: Principal, study_uid: str, person_id: int | None) -> bool:
    """Show the nodule forms only to a clinician whose grant allows writing (else they 403)."""
    return is_clinician(who) and Policy(archive).check_upload(who, study_uid, person_id).allowed


def _size_text(loc: Localizer, m: dict[str, Any]) -> str:
    return loc.gettext("%(mean)s mm (%(long)s × %(short)s mm)", mean=m["mean_diameter_mm"],
                       long=m["long_axis_mm"], short=m["short_axis_mm"])


def _change_text(loc: Localizer, change: dict[str, Any] | None) -> str:
    if not change:
        return loc.gettext("first measurement")
    vdt = change.get("vdt_days")
    vdt_text = (loc.gettext("stable or smaller") if vdt is None
                else loc.gettext("doubling time %(days)s days", days=vdt))
    return loc.gettext("%(delta)+.1f mm, volume %(percent)+.0f%% since %(date)s; %(vdt)s",
                       delta=change["diameter_mm"], percent=change["volume_percent"],
                       date=loc.date(change["since"]), vdt=vdt_text)


def ai_candidates(archive: Archive, loc: Localizer, who: Principal,
                  study_uid: str) -> list[dict[str, Any]] | None:
    """The study's AI candidates as a clinician reads them; None for everyone else, who
    never sees a finding before a physician has accepted it (IHE AIR; api/ai_candidates)."""
    if not is_clinician(who):
        return None
    rows = []
    for c in CandidateService(archive).study_candidates(study_uid):
        size = loc.gettext("%(diameter)s mm", diameter=c["diameter_mm"])
        if c["volume_mm3"] is not None:
            size += f" ({c['volume_mm3']} mm³)"
        label = (c["measurement"] or {}).get("label")
        rows.append(c | {
            "source_text": loc.gettext("built-in finder") if c["source"] == BUILTIN
            else loc.gettext("AI service %(name)s", name=c["source"]),
            "score_text": "—" if c["score"] is None else f"{c['score']:.2f}",
            "size_text": size,
            "status_text": loc.gettext("accepted as nodule %(label)s", label=label)
            if c["status"] == "accepted" and label
            else loc.gettext(CANDIDATE_STATUS.get(c["status"], c["status"]))})
    return rows


def study_panel(archive: Archive, loc: Localizer, who: Principal, study_uid: str,
                person_id: int | None) -> dict[str, Any]:
    """Measurements of this study with their change, the guideline result, and the choices
    a physician has (link to another nodule of the folder, confirm, new, unlink)."""
    service = NoduleService(archive)
    service.sync(study_uid)
    measurements = service.study_measurements(study_uid)
    assessment = service.assessment(study_uid)
    changes: dict[int, dict[str, Any] | None] = {}
    others: list[dict[str, Any]] = []
    if person_id is not None:
        for nodule in service.trajectories(service.folder_of_person(person_id)):
            for m in nodule["measurements"]:
                if m["study_uid"] == study_uid:
                    changes[m["id"]] = m.get("change")
            others.append({"id": nodule["id"], "label": nodule["label"]})
    rows = []
    for m in measurements:
        rows.append(m | {
            "type_text": loc.gettext(TYPE_LABELS.get(m["type"], m["type"])),
            "size_text": _size_text(loc, m),
            "change_text": _change_text(loc, changes.get(m["id"])),
            "link_text": loc.gettext(LINK_LABELS.get(m["link"], m["link"])),
            "viewer_href": f"/view/{study_uid}?series={m['series_uid']}&instance={m['instance_uid']}"})
    next_scan = (assessment or {}).get("next_scan")
    clinician = is_clinician(who)
    return {
        "measurements": rows, "assessment": assessment,
        "category_text": guideline_words.category_text(loc, assessment, clinician)
        if assessment else "",
        "recommendation_text": guideline_words.recommendation_text(loc, assessment, clinician)
        if assessment else "",
        "rule_text": guideline_words.rule_text(loc, assessment) if assessment else "",
        "guideline_text": loc.gettext(GUIDELINE_LABELS[assessment["guideline"]])
        if assessment else "",
        "next_scan_text": loc.gettext("between %(earliest)s and %(latest)s",
                                      earliest=loc.date(next_scan["earliest"]),
                                      latest=loc.date(next_scan["latest"]))
        if next_scan and next_scan["earliest"] != next_scan["latest"]
        else loc.date(next_scan["earliest"]) if next_scan else "",
        "clinician": clinician, "nodule_choices": others,
        "may_write": may_write(archive, who, study_uid, person_id),
        "ai_candidates": ai_candidates(archive, loc, who, study_uid),
        "guidelines": [(k, loc.gettext(v)) for k, v in GUIDELINE_LABELS.items()],
        "types": [(k, loc.gettext(v)) for k, v in TYPE_LABELS.items()],
        "calcifications": CALCIFICATIONS, "lobes": LOBES,
        "risk": ((assessment or {}).get("input") or {}).get("patient", {}).get("risk", "high"),
        "brock": {n["id"]: n.get("brock_probability") for n in (assessment or {}).get("nodules", [])},
    }


def folder_trajectories(archive: Archive, loc: Localizer, who: Principal,
                        person_id: int) -> dict[str, Any]:
    """Growth charts (one per nodule) and the nodule × scan-date table."""
    nodules = NoduleService(archive).visible_trajectories(who, person_id)
    dates = sorted({m["study_date"] for n in nodules for m in n["measurements"]})
    charts, table = [], []
    for nodule in nodules:
        by_date = {m["study_date"]: m for m in nodule["measurements"]}
        latest = nodule["measurements"][-1]
        charts.append({"label": nodule["label"], "chart": growth_chart.chart(nodule["measurements"]),
                       "rows": [{"date_text": loc.date(m["study_date"]), "size": _size_text(loc, m),
                                 "volume": m["volume_mm3"],
                                 "change": _change_text(loc, m.get("change")),
                                 "vdt": (m.get("change") or {}).get("vdt_days")}
                                for m in nodule["measurements"]],
                       "type_text": loc.gettext(TYPE_LABELS.get(latest["type"], latest["type"])),
                       "lobe": latest["lobe"]})
        table.append({"label": nodule["label"], "cells": [
            None if d not in by_date else {
                "mean": by_date[d]["mean_diameter_mm"], "volume": by_date[d]["volume_mm3"],
                "link": by_date[d]["link"], "study_uid": by_date[d]["study_uid"],
                "vdt": (by_date[d].get("change") or {}).get("vdt_days")}
            for d in dates]})
    return {"charts": charts, "dates": [(d, loc.date(d)) for d in dates], "table": table,
            "clinician": is_clinician(who)}


def study_explanation(archive: Archive, loc: Localizer, study_uid: str) -> Any:
    """The plain-language text for this study's nodules (None when nothing was assessed)."""
    service = NoduleService(archive)
    assessment = service.assessment(study_uid)
    if not assessment:
        return None
    facts = service.study_facts(study_uid)
    changes: dict[int, dict[str, Any]] = {}
    if facts.folder.person_id is not None or facts.folder.patient_pk is not None:
        for nodule in service.trajectories(facts.folder):
            for m in nodule["measurements"]:
                if m["study_uid"] == study_uid and m.get("change"):
                    changes[m["id"]] = m["change"]
    nodules = []
    for m in service.study_measurements(study_uid):
        if m["link"] == "unlinked":
            continue
        c = changes.get(m["id"])
        nodules.append(explanations.NoduleFacts(
            label=m["label"] or "", nodule_type=m["type"],
            mean_diameter_mm=float(c["mean_diameter_mm"] if c else m["mean_diameter_mm"]),
            volume_mm3=m["volume_mm3"], calcification=m["calcification"],
            change=None if c is None else explanations.NoduleChange(
                prior_date=date.fromisoformat(c["since"]),
                prior_mean_diameter_mm=float(c["prior_mean_diameter_mm"]),
                growth_mm=float(c["diameter_mm"]), volume_change_percent=c["volume_percent"],
                vdt_days=c["vdt_days"], volume_measured=c["vdt_basis"] == "volume")))
    if not nodules:
        return None
    window = assessment.get("next_scan") or {}
    summary = explanations.StudyNoduleSummary(tuple(nodules), explanations.ExamAssessment(
        guideline=assessment["guideline"], category=assessment["category"],
        exam_date=facts.study_date,
        next_scan_earliest=date.fromisoformat(window["earliest"]) if window else None,
        next_scan_latest=date.fromisoformat(window["latest"]) if window else None,
        next_scan_optional=str(assessment.get("rule_id", "")).endswith("-high-lt6")))
    return explanations.explain_study(loc, summary)


def _display_name(loc: Localizer, alphabetic: str, ideographic: str) -> str:
    """PS3.5 6.2.1.1 PN groups: Chinese pages lead with the ideographic name."""
    latin = " ".join(alphabetic.split("^")).strip()
    chinese = "".join(ideographic.split("^")).strip()
    if latin and chinese:
        return f"{chinese} ({latin})" if loc.language == "zh" else f"{latin} ({chinese})"
    return chinese or latin


def clinician_header(archive: Archive, loc: Localizer, who: Principal, study_uid: str,
                     hospital: str) -> dict[str, str] | None:
    """Who the study is of, as a physician needs it at a glance: name, sex, age at the exam,
    birth date, hospital and PatientID (with its issuer). None for anyone but clinicians."""
    if not is_clinician(who):
        return None
    try:
        facts = NoduleService(archive).study_facts(study_uid)
    except (NoduleError, NotFound):
        return None
    sex = SEX_LABELS.get(facts.sex.upper())
    return {
        "name": _display_name(loc, facts.name_alphabetic, facts.name_ideographic)
        or loc.gettext("name not recorded"),
        "sex": loc.gettext(sex) if sex else loc.gettext("not recorded"),
        "age": loc.gettext("%(years)s years", years=facts.age) if facts.age is not None
        else loc.gettext("not recorded"),
        "birth_date": loc.date(f"{facts.birth_date[:4]}-{facts.birth_date[4:6]}-"
                               f"{facts.birth_date[6:8]}") if len(facts.birth_date) >= 8 else "",
        "hospital": hospital or facts.issuer or loc.gettext("not recorded"),
        "patient_id": f"{facts.patient_id} ({facts.issuer})" if facts.issuer
        else facts.patient_id}
