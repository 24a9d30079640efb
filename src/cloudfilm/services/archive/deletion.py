"""Delete a study, series or instance: index rows and blobs together.

Order keeps the archive consistent across a crash: blobs move to trash (still
recoverable), the index rows go in one transaction, then trash is purged.
`IngestService.recover()` restores trashed blobs whose rows survived.
"""

from __future__ import annotations

from sqlalchemy import delete, exists, select
from sqlalchemy.orm import Session

from cloudfilm.services.archive.retrieve import NotStored
from cloudfilm.storage.blobs import BlobStore
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow, PatientRow, SeriesRow, StudyRow


class DeletionService:
    def __init__(self, index: Index, blobs: BlobStore) -> None:
        self.index = index
        self.blobs = blobs

    def delete(self, study: str, series: str | None = None, sop: str | None = None) -> int:
        """Remove the matching instances and any parents left empty; returns the count."""
        with self.index.write_session() as session:
            query = (select(InstanceRow.id, InstanceRow.blob_key, SeriesRow.id, StudyRow.id,
                            StudyRow.patient_pk)
                     .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
                     .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
                     .where(StudyRow.study_uid == study))
            if series:
                query = query.where(SeriesRow.series_uid == series)
            if sop:
                query = query.where(InstanceRow.sop_uid == sop)
            rows = session.execute(query).all()
            if not rows:
                raise NotStored(f"instance {sop}" if sop else f"series {series}" if series
                                else f"study {study}")
            keys = [row[1] for row in rows]
            self.blobs.move_to_trash(keys)
            for chunk in _chunks([row[0] for row in rows]):
                session.execute(delete(InstanceRow).where(InstanceRow.id.in_(chunk)))
            _drop_empty_parents(session, {r[2] for r in rows}, {r[3] for r in rows}, {r[4] for r in rows})
            session.commit()
        self.blobs.delete(keys)
        return len(keys)


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _drop_empty_parents(session: Session, series: set[int], studies: set[int],
                        patients: set[int]) -> None:
    session.execute(delete(SeriesRow).where(
        SeriesRow.id.in_(series), ~exists().where(InstanceRow.series_pk == SeriesRow.id)))
    session.execute(delete(StudyRow).where(
        StudyRow.id.in_(studies), ~exists().where(SeriesRow.study_pk == StudyRow.id)))
    session.execute(delete(PatientRow).where(
        PatientRow.id.in_(patients), ~exists().where(StudyRow.patient_pk == PatientRow.id)))
