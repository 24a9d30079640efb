"""A series' WADO-RS metadata as sent: built once, stored in the index, served as bytes.

Why: a viewer's first wait is the series metadata (300 instances: ~600 kB of DICOM JSON,
~15 kB gzipped). Joining the per-instance JSON and compressing it at every request costs
more than sending it. Here the response body -- identity and gzip, BulkDataURIs already
absolute for the request's DICOMweb base -- is kept in ``series_metadata`` (migration
0013) and a request reads one small row to learn whether the copy it holds in memory is
still the stored one.

Correct across nodes without any message between them: the trigger of migration 0013
deletes a series' rows in the transaction that adds, replaces or deletes one of its
instances, and a build is ordered with such changes (a write transaction on SQLite, the
series row ``FOR UPDATE`` on PostgreSQL), so a stored row is never older than the
instances. A missing row is built off the request path; the request that found it
missing answers from the instances, as before. At most ``BASES_PER_SERIES`` bases are
kept per series, so ``Host`` headers cannot grow the index.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import secrets
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Select, bindparam, func, select

from cloudfilm.services.archive.prepared import PreparedRead
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow, SeriesRow, StudyRow
from cloudfilm.storage.index.read_models import SeriesMetadataRow

log = logging.getLogger(__name__)

BULK_PREFIX = b'"BulkDataURI":"'
BASES_PER_SERIES = 4
MEMORY_BYTES = 64 << 20  # this node's copies of stored bodies, least recently used out first
GZIP_LEVEL = 6  # built once, sent many times: worth the better ratio


@dataclass(frozen=True)
class MetadataBody:
    """One response body in both encodings (``gzip`` empty when not made)."""

    identity: bytes
    gzip: bytes


def join_metadata(chunks: list[bytes], base: str) -> bytes:
    """The instances' DICOM JSON as one array, BulkDataURIs made absolute under ``base``
    (stored relative to the DICOMweb root, PS3.18 §F.2.6)."""
    body = b"[" + b",".join(chunks) + b"]"
    return body.replace(BULK_PREFIX, BULK_PREFIX + base.encode() + b"/")


def base_hash(base: str) -> str:
    return hashlib.sha256(base.encode()).hexdigest()


def _series_pk(study: str, series: str) -> Select[int]:
    return (select(SeriesRow.id).join(StudyRow, SeriesRow.study_pk == StudyRow.id)
            .where(StudyRow.study_uid == study, SeriesRow.series_uid == series))


_STAMP = (select(SeriesMetadataRow.series_pk, SeriesMetadataRow.stamp)
          .join(SeriesRow, SeriesMetadataRow.series_pk == SeriesRow.id)
          .join(StudyRow, SeriesRow.study_pk == StudyRow.id)
          .where(StudyRow.study_uid == bindparam("study"),
                 SeriesRow.series_uid == bindparam("series"),
                 SeriesMetadataRow.base_hash == bindparam("base_hash")))


class SeriesMetadata:
    """``stored`` on the request path; ``build_later`` when it found nothing."""

    def __init__(self, index: Index, *, memory_bytes: int = MEMORY_BYTES) -> None:
        self.index = index
        self.memory_bytes = memory_bytes
        self._held: OrderedDict[tuple[int, str], tuple[str, MetadataBody]] = OrderedDict()
        self._held_bytes = 0
        self._lock = threading.Lock()
        self._builder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="series-metadata")
        self._building: set[tuple[str, str, str]] = set()
        self._stamp = PreparedRead(index, _STAMP)

    def stored(self, study: str, series: str, base: str) -> MetadataBody | None:
        """The stored body, or None when none is stored for this series and base."""
        digest = base_hash(base)
        found = self._stamp.first(study=study, series=series, base_hash=digest)
        if found is None:
            return None
        series_pk, stamp = found
        key = (series_pk, digest)
        with self._lock:
            held = self._held.get(key)
            if held is not None and held[0] == stamp:
                self._held.move_to_end(key)
                return held[1]
        with self.index.engine.connect() as connection:
            row = connection.execute(
                select(SeriesMetadataRow.identity, SeriesMetadataRow.gzip).where(
                    SeriesMetadataRow.series_pk == series_pk, SeriesMetadataRow.base_hash == digest,
                    SeriesMetadataRow.stamp == stamp)).first()
        if row is None:  # replaced in between: the caller answers from the instances
            return None
        body = MetadataBody(bytes(row.identity), bytes(row.gzip))
        self._hold(key, stamp, body)
        return body

    def _hold(self, key: tuple[int, str], stamp: str, body: MetadataBody) -> None:
        size = len(body.identity) + len(body.gzip)
        if size > self.memory_bytes // 4:
            return
        with self._lock:
            old = self._held.pop(key, None)
            if old is not None:
                self._held_bytes -= len(old[1].identity) + len(old[1].gzip)
            self._held[key] = (stamp, body)
            self._held_bytes += size
            while self._held_bytes > self.memory_bytes:
                _, (_, dropped) = self._held.popitem(last=False)
                self._held_bytes -= len(dropped.identity) + len(dropped.gzip)

    def build_later(self, study: str, series: str, base: str) -> None:
        """Build and store the body in the background (once at a time per series and base)."""
        key = (study, series, base)
        with self._lock:
            if key in self._building:
                return
            self._building.add(key)
        self._builder.submit(self._build_logged, key)

    def _build_logged(self, key: tuple[str, str, str]) -> None:
        try:
            self.build(*key)
        except Exception:  # requests go on answering from the instances
            log.exception("could not store the metadata of series %s", key[1])
        finally:
            with self._lock:
                self._building.discard(key)

    def build(self, study: str, series: str, base: str) -> bool:
        """Store the body for ``base`` unless it is stored, the series is gone, or it has
        ``BASES_PER_SERIES`` bases already; True if stored."""
        digest = base_hash(base)
        with self.index.write_session() as session:
            series_pk = session.scalar(_series_pk(study, series).with_for_update(of=SeriesRow))
            if series_pk is None:
                return False
            stored = session.scalar(select(func.count()).where(
                SeriesMetadataRow.series_pk == series_pk)) or 0
            exists = session.scalar(select(func.count()).where(
                SeriesMetadataRow.series_pk == series_pk, SeriesMetadataRow.base_hash == digest))
            if exists or stored >= BASES_PER_SERIES:
                return False
            chunks = list(session.scalars(
                select(InstanceRow.metadata_json).where(InstanceRow.series_pk == series_pk)
                .order_by(InstanceRow.instance_number, InstanceRow.id)))
            if not chunks:
                return False
            identity = join_metadata(chunks, base)
            session.add(SeriesMetadataRow(
                series_pk=series_pk, base_hash=digest, stamp=secrets.token_hex(8),
                instances=len(chunks), identity=identity,
                gzip=gzip.compress(identity, compresslevel=GZIP_LEVEL, mtime=0)))
            session.commit()
        return True

    def close(self) -> None:
        self._builder.shutdown(wait=True, cancel_futures=True)
