"""Retrieve: instances, metadata, frames and bulk data, straight from the index and blobs.

Metadata is pre-computed DICOM JSON kept in the index, so a 300-instance series is
one query and a join, never 300 file parses (the complaint about Orthanc in
anchors.md); a series' whole response is kept too, compressed
(services/archive/series_metadata.py). Frames are byte ranges of the stored object,
read as such (pread on a file system, a ranged GET on an object store); nothing here
knows where the blobs live.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, TypeVarTuple

import orjson
import pydicom
from sqlalchemy import Select, bindparam, select

from cloudfilm.domain.dicom_json import is_bulk, vr_of
from cloudfilm.services.archive.prepared import PreparedRead
from cloudfilm.services.archive.series_metadata import SeriesMetadata
from cloudfilm.services.imaging import pixels
from cloudfilm.storage.blobs import BlobStore
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow, SeriesRow, StudyRow

READ_AHEAD, READ_AHEAD_BYTES = 8, 4 << 20  # at most 32 MB ahead per response
_READERS = ThreadPoolExecutor(max_workers=READ_AHEAD, thread_name_prefix="blob-read-ahead")


class NotStored(LookupError):
    """No stored object matches the requested UIDs."""


@dataclass(frozen=True)
class StoredInstance:
    study_uid: str
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    transfer_syntax_uid: str
    blob_key: str
    size: int
    number_of_frames: int
    frames: list[list[list[int]]] | None


_COLUMNS = (StudyRow.study_uid, SeriesRow.series_uid, InstanceRow.sop_uid, InstanceRow.sop_class_uid,
            InstanceRow.transfer_syntax_uid, InstanceRow.blob_key, InstanceRow.size,
            InstanceRow.number_of_frames)


_Columns = TypeVarTuple("_Columns")


def _scoped(statement: Select[*_Columns], study: str, series: str | None,
            sop: str | None) -> Select[*_Columns]:
    statement = statement.join(SeriesRow, InstanceRow.series_pk == SeriesRow.id).join(
        StudyRow, SeriesRow.study_pk == StudyRow.id).where(StudyRow.study_uid == study)
    if series:
        statement = statement.where(SeriesRow.series_uid == series)
    if sop:
        statement = statement.where(InstanceRow.sop_uid == sop)
    return statement.order_by(SeriesRow.series_number, SeriesRow.id, InstanceRow.instance_number,
                              InstanceRow.id)


_ONE_INSTANCE = (select(*_COLUMNS, InstanceRow.frames)
                 .join(SeriesRow, InstanceRow.series_pk == SeriesRow.id)
                 .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
                 .where(InstanceRow.sop_uid == bindparam("sop"),
                        SeriesRow.series_uid == bindparam("series"),
                        StudyRow.study_uid == bindparam("study")))


def _describe(study: str, series: str | None, sop: str | None) -> str:
    if sop:
        return f"instance {sop}"
    return f"series {series}" if series else f"study {study}"


class RetrieveService:
    def __init__(self, index: Index, blobs: BlobStore) -> None:
        self.index = index
        self.blobs = blobs
        self.series_metadata = SeriesMetadata(index)
        self._one_instance = PreparedRead(index, _ONE_INSTANCE)

    def instances(self, study: str, series: str | None = None,
                  sop: str | None = None) -> list[StoredInstance]:
        with self.index.session() as session:
            rows = session.execute(_scoped(select(*_COLUMNS), study, series, sop)).all()
        if not rows:
            raise NotStored(_describe(study, series, sop))
        return [StoredInstance(*row, frames=None) for row in rows]

    def instance(self, study: str, series: str, sop: str) -> StoredInstance:
        """One instance with its frame byte ranges (a prepared read: a frame request,
        issue 14, can afford no ORM session)."""
        row = self._one_instance.first(study=study, series=series, sop=sop)
        if row is None:
            raise NotStored(_describe(study, series, sop))
        study_uid, series_uid, sop_uid, sop_class, syntax, blob_key, size, count, ranges = row
        return StoredInstance(study_uid, series_uid, sop_uid, sop_class, syntax, blob_key, size,
                              count, frames=orjson.loads(ranges))

    def metadata(self, study: str, series: str | None = None, sop: str | None = None) -> list[bytes]:
        """Each instance's DICOM JSON, bulk data URIs still relative to the DICOMweb root."""
        with self.index.session() as session:
            rows = session.execute(
                _scoped(select(InstanceRow.metadata_json), study, series, sop)).scalars().all()
        if not rows:
            raise NotStored(_describe(study, series, sop))
        return list(rows)

    def open(self, instance: StoredInstance) -> BinaryIO:
        """The stored Part-10 object as a seekable stream (use it in a ``with``)."""
        return self.blobs.open(instance.blob_key)

    def file_chunks(self, instance: StoredInstance) -> Iterator[bytes]:
        return self.blobs.iter_bytes(instance.blob_key)

    def files_read_ahead(self, instances: Sequence[StoredInstance]
                         ) -> Iterator[tuple[StoredInstance, Iterator[bytes]]]:
        """Each instance with its stored bytes, the next few fetched while one is sent.

        For a store whose reads are round trips (S3: one GET per object), a series read one
        object after the other waits out every round trip; here up to READ_AHEAD objects of
        up to READ_AHEAD_BYTES each are in flight at once, so memory stays bounded. Larger
        objects stream as they are read."""
        upcoming = iter(instances)
        pending: deque[tuple[StoredInstance, Future[bytes] | None]] = deque()

        def fetch(item: StoredInstance) -> None:
            small = item.size <= READ_AHEAD_BYTES
            pending.append((item, _READERS.submit(self.blobs.read_bytes, item.blob_key)
                            if small else None))

        for item in upcoming:
            fetch(item)
            if len(pending) >= READ_AHEAD:
                break
        try:
            while pending:
                item, future = pending.popleft()
                if (following := next(upcoming, None)) is not None:
                    fetch(following)
                yield item, (iter([future.result()]) if future is not None
                             else self.file_chunks(item))
        finally:
            for _, future in pending:  # the client left: fetch nothing more
                if future is not None:
                    future.cancel()

    def local_file(self, instance: StoredInstance) -> BinaryIO | None:
        """The stored Part-10 object as an OS file (for sendfile), if the store has one."""
        return self.blobs.local_file(instance.blob_key)

    def stored_frame(self, instance: StoredInstance, number: int) -> bytes | None:
        """Frame ``number`` (1-based) as stored, or None when only decoding can get it."""
        if instance.frames is None:
            return None
        if not 1 <= number <= len(instance.frames):
            raise NotStored(f"frame {number} of instance {instance.sop_uid} "
                            f"(it has {len(instance.frames)})")
        fragments = instance.frames[number - 1]
        return b"".join(self.blobs.read_range(instance.blob_key, off, length)
                        for off, length in fragments)

    def bulk_value(self, instance: StoredInstance, path: list[str]) -> bytes:
        """The value behind a BulkDataURI: ``TAG`` or ``SEQTAG/INDEX/.../TAG``."""
        missing = NotStored(f"bulk data {'/'.join(path)} of instance {instance.sop_uid}")
        with self.open(instance) as stream:  # deferred values are read (ranged) from the stream
            ds = pydicom.dcmread(stream, defer_size=1024)
            try:
                for seq_key, index in zip(path[0:-1:2], path[1:-1:2], strict=True):
                    ds = ds[int(seq_key, 16)].value[int(index)]
                tag = int(path[-1], 16)
                element = ds[tag]
            except (KeyError, IndexError, ValueError) as exc:
                raise missing from exc
            value = element.value
        if not is_bulk(tag, vr_of(tag, element.VR), len(value or b"")):
            raise missing
        return bytes(value)

    def decoded_frame(self, instance: StoredInstance, number: int) -> bytes:
        """Frame ``number`` decoded to uncompressed little-endian bytes (colour as RGB)."""
        with self.open(instance) as stream:
            array, ds = pixels.read_frame(stream, number - 1)
            description = pixels.decoded_description(pixels.PixelDescription.from_dataset(ds))
        return pixels.native_frame_bytes(array, description)
