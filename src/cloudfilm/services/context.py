"""The archive as a process opens it: index, blob store and the services over them (the
composition root of services/)."""

from __future__ import annotations

from dataclasses import dataclass

from cloudfilm.config import Settings
from cloudfilm.domain.audit import audit_key
from cloudfilm.services.access.credentials import load_server_key
from cloudfilm.services.access.ratelimit import RateLimiter
from cloudfilm.services.access.read_access import ReadAccess
from cloudfilm.services.archive.deletion import DeletionService
from cloudfilm.services.archive.ingest import IngestService
from cloudfilm.services.archive.query import QueryService
from cloudfilm.services.archive.retrieve import RetrieveService
from cloudfilm.services.audit.log import AuditLog
from cloudfilm.services.audit.syslog import forwarder_for
from cloudfilm.services.exchange.nodes import NodeService
from cloudfilm.services.jobs.queue import JobQueue, open_queue
from cloudfilm.services.notify.outbox import Outbox
from cloudfilm.storage.blob_url import open_blob_store
from cloudfilm.storage.blobs import BlobStore, secure_data_dir
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.staging import log_durability_to


@dataclass
class Archive:
    settings: Settings
    index: Index
    blobs: BlobStore
    ingest: IngestService
    retrieve: RetrieveService
    deletion: DeletionService
    query: QueryService
    nodes: NodeService
    audit: AuditLog
    outbox: Outbox
    rate_limiter: RateLimiter
    server_key: bytes
    jobs: JobQueue
    read_access: ReadAccess | None = None  # made at first use (services/access/read_access.py)

    @classmethod
    def open(cls, settings: Settings, *, recover: bool = True) -> Archive:
        """Migrate the index, then finish any write a crash interrupted."""
        secure_data_dir(settings.data_dir)
        log_durability_to(settings.durability_log)
        blobs = open_blob_store(settings.blob_url, settings.data_dir,
                                cache_bytes=settings.blob_cache_mb << 20)
        index = Index(settings.database_url)
        index.migrate()
        server_key = load_server_key(settings.data_dir, settings.secret_key)
        archive = cls(settings, index, blobs,
                      ingest=IngestService(index, blobs, overwrite=settings.overwrite),
                      retrieve=RetrieveService(index, blobs),
                      deletion=DeletionService(index, blobs),
                      query=QueryService(index),
                      nodes=NodeService(index),
                      audit=AuditLog(index, key=audit_key(server_key),
                                     anchor_dir=settings.data_dir,
                                     forwarder=forwarder_for(settings.syslog)),
                      outbox=Outbox(index),
                      rate_limiter=RateLimiter(index),
                      server_key=server_key,
                      jobs=open_queue(settings, index))
        if recover:
            archive.ingest.recover()
            archive.audit.flush_views(adopt=True)  # views a killed process left in its journal
        return archive

    def close(self) -> None:
        if self.read_access is not None:
            self.read_access.close()  # token and session uses still pending
        self.retrieve.series_metadata.close()
        self.audit.close()  # the closing checkpoint needs the index
        self.jobs.close()
        self.index.dispose()
        self.blobs.close()
