"""Alembic environment: runs on the connection the Index hands over."""

from alembic import context

from cloudfilm.storage.index import (
    access_models,  # noqa: F401 - registers the tables
    ai_models,  # noqa: F401
    auto_film_models,  # noqa: F401
    job_models,  # noqa: F401
    nodule_models,  # noqa: F401
    read_models,  # noqa: F401
    research_models,  # noqa: F401
)
from cloudfilm.storage.index.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
