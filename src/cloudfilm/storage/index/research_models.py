"""Research exports (issue 15): who asked for which de-identified export, and its result.

``request`` is the selection and options as asked (JSON); ``manifest`` the export's
manifest (JSON: counts, refusals, no mapping back); ``blob_key`` names the zip in the blob
store once ``status`` is ``done``. Only the creator (``user_id``) or an admin may read it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, ForeignKey, Integer, String, Text, func
from sqlalchemy.orm import Mapped, mapped_column

from cloudfilm.storage.index.models import Base

STATUSES = ("running", "done", "failed")


class ResearchExportRow(Base):
    __tablename__ = "research_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True, index=True)
    created_by: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="running")
    request: Mapped[str] = mapped_column(Text, default="{}")
    manifest: Mapped[str] = mapped_column(Text, default="{}")
    error: Mapped[str] = mapped_column(Text, default="")
    blob_key: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
