"""The SQL index: one row per patient, study, series and instance (SQLAlchemy 2 + Alembic)."""
