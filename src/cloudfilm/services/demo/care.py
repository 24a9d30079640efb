"""The demo's nodule care: every demo nodule measured on every scan, tracked and assessed.

Why: a newcomer running ``make run`` should meet the nodule care as a patient and a
physician would after a year of follow-up (issue 12, part 8): nodules followed over three
scans, a guideline result per scan and, once the patient's folder exists, a reminder for
the next scan. The clicks are where the truth file puts each nodule's centre, and the
measurements go through the same semi-automatic segmentation and tracking as a
physician's click in the viewer (services/nodules/service.py); nothing is copied from the truth
but the click. Scans are measured newest first, the order a physician with a new scan
uses; tracking does not depend on it (tests/test_nodule_care.py measures in all orders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudfilm.services.nodules.model import NoduleError, NotFound
from cloudfilm.services.nodules.service import NoduleService

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

DEMO_MEASURER = "demo-physician"


@dataclass(frozen=True)
class CareSeeded:
    """What was measured, and each scan's guideline category."""

    measurements: int
    failed: list[str]
    categories: dict[str, str]  # study UID -> category of its assessment


def seed_nodule_care(archive: Archive, truth: dict[str, Any]) -> CareSeeded:
    """Measure every truth nodule on every study of every demo patient, newest scan first."""
    # On the command line: tracked here (the same settle as the job), not by a worker.
    nodules, failed, categories = NoduleService(archive, settle_now=True), [], {}
    measured = 0
    for patient in truth["patients"]:
        for study in reversed(patient["studies"]):
            for nodule in study["nodules"]:
                col, row, _ = nodule["center_voxel"]
                try:
                    nodules.measure_click(study["study_uid"], study["series_uid"],
                                          nodule["instance_uid_at_center"], col, row,
                                          DEMO_MEASURER)
                    measured += 1
                except (NoduleError, NotFound) as error:  # reported, not fatal
                    failed.append(f"{study['study_uid']} {nodule['id']}: {error}")
    for patient in truth["patients"]:
        for study in patient["studies"]:
            result = nodules.assessment(study["study_uid"])
            if result is not None:
                categories[study["study_uid"]] = str(result.get("category", ""))
    return CareSeeded(measured, failed, categories)
