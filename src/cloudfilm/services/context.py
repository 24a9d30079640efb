"""The archive as a process opens it: index, blob store and the services over them (the
composition root of services/)."""

from __future__ import annotations

from dataclasses import dataclass

from cloudfilm.config import Settings
from cloudfilm.domain.audit import audit_key
from cloudfilm.services.audit.log import AuditLog
from cloudfilm.services.audit.syslog import forwarder_from_env
from cloudfilm.services.access.credentials import load_server_key
from cloudfilm.services.archive.deletion import DeletionService
from cloudfilm.services.archive.ingest import IngestService
from cloudfilm.services.exchange.nodes import NodeService
from cloudfilm.services.notify.outbox import Outbox
from cloudfilm.services.archive.query import QueryService
from cloudfilm.services.access.ratelimit import RateLimiter
from cloudfilm.services.archive.retrieve import RetrieveService
from cloudfilm.storage.blobs import FileSystemBlobStore, secure_data_dir
from cloudfilm.storage.index.db import Index


@dataclass
class Archive:
    settings: Settings
    index: Index
    blobs: FileSystemBlobStore
    ingest: IngestService
    retrieve: RetrieveService
    deletion: DeletionService
    query: QueryService
    nodes: NodeService
    audit: AuditLog
    outbox: Outbox
    rate_limiter: RateLimiter
    server_key: bytes

    @classmethod
    def open(cls, settings: Settings, *, recover: bool = True) -> "Archive":
        """Migrate the index, then finish any write a crash interrupted."""
        secure_data_dir(settings.data_dir)
        index = Index(settings.database_url)
        index.migrate()
        blobs = FileSystemBlobStore(settings.data_dir)
        server_key = load_server_key(settings.data_dir)
        archive = cls(settings, index, blobs,
                      ingest=IngestService(index, blobs, overwrite=settings.overwrite),
                      retrieve=RetrieveService(index, blobs),
                      deletion=DeletionService(index, blobs),
                      query=QueryService(index),
                      nodes=NodeService(index),
                      audit=AuditLog(index, key=audit_key(server_key),
                                     anchor_dir=settings.data_dir,
                                     forwarder=forwarder_from_env()),
                      outbox=Outbox(index),
                      rate_limiter=RateLimiter(index),
                      server_key=server_key)
        if recover:
            archive.ingest.recover()
        return archive

    def close(self) -> None:
        self.audit.close()  # the closing checkpoint needs the index
        self.index.dispose()
        self.blobs.close()
