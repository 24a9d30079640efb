"""Studies the stable-study watcher took to issue a cloud film (services/access/film_autoissue.py).

One row per study, ever: the unique ``study_uid`` is how two ``serve`` processes on one
database agree that only one of them issues the study's automatic film. ``film_id`` is
the film it became (null while being issued, or if issuing failed and will be retried).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from cloudfilm.storage.index.models import Base


class AutoFilmRow(Base):
    __tablename__ = "auto_films"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_uid: Mapped[str] = mapped_column(String(64), unique=True)
    node_name: Mapped[str] = mapped_column(String(64))  # whose --issue-films it was
    claimed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    film_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
