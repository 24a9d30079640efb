"""The built-in detector as a job: ``POST /api/studies/{uid}/nodules/detect`` enqueues
``nodules.detect``, which runs `services.detection.finder.detect_study` and stores what it
finds as candidates from source ``builtin`` (its pending ones of the study replaced, so a
re-run is idempotent; decided ones stay)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudfilm.services.ai.candidates import BUILTIN, CandidateService, NewCandidate
from cloudfilm.services.archive.retrieve import NotStored

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

DETECT_JOB = "nodules.detect"


def _key(study_uid: str) -> str:
    return f"{DETECT_JOB}:{study_uid}"


def enqueue_detect(archive: Archive, study_uid: str) -> int | str:
    """Queue a detection of the study; the job's id, or its key when one is waiting."""
    key = _key(study_uid)
    job = archive.jobs.enqueue(DETECT_JOB, {"study": study_uid}, dedupe_key=key)
    return key if job is None else job


def detection_state(archive: Archive, study_uid: str) -> dict[str, Any]:
    """Where the study's latest detection is, so a viewer polls until it ends and can say
    why it failed: ``queued`` or ``running`` (``error``: the last try's, when retrying),
    ``failed`` (tries exhausted), or ``idle`` (finished, or never asked)."""
    job = archive.jobs.latest(_key(study_uid))
    if job is None:
        return {"state": "idle", "error": ""}
    return {"state": job.state, "error": job.last_error.splitlines()[-1][:300]
            if job.last_error.strip() else ""}


def detect_candidates(archive: Archive, payload: dict[str, Any]) -> None:
    """The ``nodules.detect`` job: ``{"study": uid}``."""
    from cloudfilm.services.detection.finder import (
        DETECTOR_NAME,
        DETECTOR_VERSION,
        detect_study,
    )
    study_uid = str(payload["study"])
    try:
        found = detect_study(archive, study_uid)
    except NotStored:
        return  # deleted since it was asked for
    CandidateService(archive).replace_builtin(study_uid, [
        NewCandidate(d.series_uid, BUILTIN, DETECTOR_NAME, DETECTOR_VERSION,
                     (float(d.center_mm[0]), float(d.center_mm[1]), float(d.center_mm[2])),
                     float(d.diameter_mm), float(d.volume_mm3), float(d.score),
                     d.instance_uid, float(d.column), float(d.row)) for d in found])
