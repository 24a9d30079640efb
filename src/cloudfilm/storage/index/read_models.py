"""What the read path keeps in the index so that every node can trust its caches (issue 14).

``access_epoch``: one row whose ``value`` grows, in the same transaction, with every
change that can narrow what a credential or a grant allows (triggers of migration 0013:
tokens, sessions, users, caregivers, grants, person records, a study's or record's
identity). A node caches principals and study decisions in memory, tagged with the
epoch it read *before* loading them, and reads the epoch once per request: an equal
value means nothing that could revoke them has committed since.

``series_metadata``: a series' WADO-RS metadata as sent, per DICOMweb base URL (the
BulkDataURIs are absolute), identity and gzip. A trigger on ``instances`` deletes a
series' rows in the transaction that adds, replaces or deletes one of its instances,
so a row that exists is current; ``stamp`` names one build, so a node may keep the
bytes in memory and only ask whether the stamp is still there.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, LargeBinary, String, func
from sqlalchemy.orm import Mapped, mapped_column

from cloudfilm.storage.index.models import Base

EPOCH_ROW = 1  # the one row of access_epoch


class AccessEpochRow(Base):
    __tablename__ = "access_epoch"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0)


class SeriesMetadataRow(Base):
    __tablename__ = "series_metadata"

    series_pk: Mapped[int] = mapped_column(ForeignKey("series.id", ondelete="CASCADE"),
                                           primary_key=True)
    base_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # SHA-256 of the base
    stamp: Mapped[str] = mapped_column(String(32))
    instances: Mapped[int] = mapped_column(Integer)
    identity: Mapped[bytes] = mapped_column(LargeBinary)
    gzip: Mapped[bytes] = mapped_column(LargeBinary)
    built_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
