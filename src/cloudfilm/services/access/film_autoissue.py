"""Automatic cloud films: a node with ``--issue-films`` has each of its hospital's studies
issued a film once the study is complete (issue 12, part 1).

"Complete" is Orthanc's *stable study*: no instance stored for ``CLOUDFILM_STABLE_AGE``
seconds (60, Orthanc's ``StableAge``). A study gets an automatic film when

- its patient record's IssuerOfPatientID is the issuer of a node with films on, and it
  arrived (``studies.created_at``) at or after the node's ``issue_films_since``: turning
  the option on never floods an existing archive;
- it is stable (SQLite keeps index times to the second, so one more second is waited);
- it never had a film, automatic or from the desk, revoked ones included: a withdrawn
  film is not brought back, and a study films once (a later instance changes nothing).

The film is the desk's (`FilmService.issue`: view and download, no end date, no PIN),
issued and audited as ``auto:<node name>``. Two ``serve`` processes on one database
agree through ``auto_films`` (unique per study): whoever inserts the row issues. A claim
whose film never came (the process died) is taken over after `CLAIM_LEASE`.

`issue_stable_films` is the ``films.autoissue`` job, which the workers enqueue every
``min(STABLE_AGE / 2, 5)`` seconds (services/jobs/handlers.py).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from sqlalchemy import and_, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from cloudfilm.domain.access import Principal, Role
from cloudfilm.domain.clock import as_utc, utcnow
from cloudfilm.services.access.films import FilmService
from cloudfilm.services.exchange.nodes import FilmIssuer
from cloudfilm.storage.index.access_models import FilmRow
from cloudfilm.storage.index.auto_film_models import AutoFilmRow
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

log = logging.getLogger(__name__)

STAMP_RESOLUTION = timedelta(seconds=1)  # SQLite's CURRENT_TIMESTAMP keeps whole seconds
CLAIM_LEASE = timedelta(minutes=10)  # a claim with no film after this is taken over
# A study row is visible once its index transaction commits; those that began this long
# ago are all visible, so the watcher need not look further back than this (or than
# the oldest study still waiting).
COMMIT_GRACE = timedelta(minutes=10)
BATCH = 200


def auto_principal(node_name: str) -> Principal:
    """Who issues a node's automatic films: the desk's rights, named for the audit trail."""
    return Principal(kind="node", username=f"auto:{node_name}", role=Role.OPERATOR)


@dataclass(frozen=True)
class Waiting:
    """A study of a films-on hospital with no film yet."""

    study_uid: str
    issuer: str
    created_at: datetime
    last_stored: datetime | None  # its newest instance's time; None if it has none


class FilmAutoIssue:
    """Finds stable studies of films-on hospitals without a film and issues one each."""

    def __init__(self, archive: Archive, stable_age: int) -> None:
        self.archive = archive
        self.index = archive.index
        self.films = FilmService(archive)
        self.stable_age = timedelta(seconds=stable_age)
        self._floor: datetime | None = None  # every study created before it is settled

    def run_once(self, now: datetime | None = None) -> int:
        """Issue the films due at ``now``; returns how many were issued."""
        now = as_utc(now or utcnow())
        issuers = self._issuers()
        if not issuers:
            self._floor = None
            return 0
        issued = sum(self._issue(uid, issuers[issuer], now)
                     for uid, issuer in self._stale_claims(issuers, now))
        waiting = self._waiting(issuers)
        pending = []
        for study in waiting:
            if study.last_stored is None:
                continue  # nothing stored (left): nothing to film
            if not self._stable(study.last_stored, now):
                pending.append(study)
            elif self._issue(study.study_uid, issuers[study.issuer], now):
                issued += 1
        self._advance_floor(now, pending, waiting)
        return issued

    def _issuers(self) -> dict[str, FilmIssuer]:
        """Per IssuerOfPatientID, the node that turned films on first (it names the films)."""
        chosen: dict[str, FilmIssuer] = {}
        for node in self.archive.nodes.film_issuers():
            if node.issuer and (node.issuer not in chosen
                                or node.since < chosen[node.issuer].since):
                chosen[node.issuer] = node
        return chosen

    def _stale_claims(self, issuers: dict[str, FilmIssuer],
                      now: datetime) -> list[tuple[str, str]]:
        """(study, issuer) of claims whose film never came within `CLAIM_LEASE`, in scope."""
        stmt = (select(AutoFilmRow.study_uid, PatientRow.issuer)
                .join(StudyRow, StudyRow.study_uid == AutoFilmRow.study_uid)
                .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
                .where(AutoFilmRow.film_id.is_(None), AutoFilmRow.claimed_at < now - CLAIM_LEASE,
                       PatientRow.issuer.in_(list(issuers)),
                       ~exists().where(FilmRow.study_uid == AutoFilmRow.study_uid))
                .limit(BATCH))
        with self.index.session() as session:
            return [(r.study_uid, r.issuer) for r in session.execute(stmt).all()]

    def _waiting(self, issuers: dict[str, FilmIssuer]) -> list[Waiting]:
        """Studies in scope with no film and no claim, oldest first (created since the
        floor)."""
        last_stored = (select(func.max(InstanceRow.created_at))
                       .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
                       .where(SeriesRow.study_pk == StudyRow.id)
                       .scalar_subquery())
        stmt = (select(StudyRow.study_uid, PatientRow.issuer, StudyRow.created_at,
                       last_stored.label("last_stored"))
                .join(PatientRow, StudyRow.patient_pk == PatientRow.id)
                .where(or_(*(and_(PatientRow.issuer == node.issuer,
                                  StudyRow.created_at >= node.since)
                             for node in issuers.values())),
                       ~exists().where(FilmRow.study_uid == StudyRow.study_uid),
                       ~exists().where(AutoFilmRow.study_uid == StudyRow.study_uid))
                .order_by(StudyRow.created_at, StudyRow.id).limit(BATCH))
        if self._floor is not None:
            stmt = stmt.where(StudyRow.created_at >= self._floor - STAMP_RESOLUTION)
        with self.index.session() as session:
            rows = session.execute(stmt).all()
        return [Waiting(r.study_uid, r.issuer, as_utc(r.created_at),
                        as_utc(r.last_stored) if r.last_stored is not None else None)
                for r in rows]

    def _stable(self, last_stored: datetime, now: datetime) -> bool:
        return now - last_stored >= self.stable_age + STAMP_RESOLUTION

    def _advance_floor(self, now: datetime, pending: list[Waiting],
                       seen: list[Waiting]) -> None:
        """Look no further back next time than the oldest study still waiting, the last
        one seen when the batch was full, or `COMMIT_GRACE` ago."""
        candidates = [now - COMMIT_GRACE]
        if pending:
            candidates.append(pending[0].created_at)
        if len(seen) == BATCH:
            candidates.append(seen[-1].created_at)
        self._floor = min(candidates)

    def _issue(self, study_uid: str, node: FilmIssuer, now: datetime) -> bool:
        """Claim the study, then issue its film; False if it is not ours to issue now."""
        if not self._claim(study_uid, node.name, now):
            return False
        try:
            info = self.films.issue(auto_principal(node.name), study_uid)
        except Exception:  # the claim stays: retried once its lease ends
            log.exception("automatic film for study %s (node %s) failed; retried in %s",
                          study_uid, node.name, CLAIM_LEASE)
            return False
        with self.index.write_session() as session:
            session.execute(update(AutoFilmRow).where(AutoFilmRow.study_uid == study_uid)
                            .values(film_id=info.id))
            session.commit()
        log.info("film %s issued for study %s (node %s)", info.id, study_uid, node.name)
        return True

    def _claim(self, study_uid: str, node_name: str, now: datetime) -> bool:
        """Take the study: a new ``auto_films`` row (unique per study), or one whose film
        never came within `CLAIM_LEASE`. False when another process has it or a film
        appeared meanwhile."""
        with self.index.write_session() as session:
            if session.scalar(select(FilmRow.id).where(FilmRow.study_uid == study_uid)
                              .limit(1)) is not None:
                return False
            row = session.scalars(select(AutoFilmRow)
                                  .where(AutoFilmRow.study_uid == study_uid)).first()
            if row is None:
                session.add(AutoFilmRow(study_uid=study_uid, node_name=node_name,
                                        claimed_at=now))
                try:
                    session.commit()
                except IntegrityError:  # another process inserted it first
                    return False
                return True
            taken = session.execute(
                update(AutoFilmRow).where(AutoFilmRow.id == row.id, AutoFilmRow.film_id.is_(None),
                                          AutoFilmRow.claimed_at < now - CLAIM_LEASE)
                .values(claimed_at=now, node_name=node_name))
            session.commit()
            return bool(getattr(taken, "rowcount", 0) == 1)


_watcher: FilmAutoIssue | None = None  # this process's, so it keeps its floor between runs
_watcher_lock = threading.Lock()


def issue_stable_films(archive: Archive) -> int:
    """One round of the watcher (the ``films.autoissue`` job); returns films issued."""
    global _watcher
    with _watcher_lock:
        if (_watcher is None or _watcher.archive is not archive
                or _watcher.stable_age != timedelta(seconds=archive.settings.stable_age)):
            _watcher = FilmAutoIssue(archive, archive.settings.stable_age)
        watcher = _watcher
    return watcher.run_once()
