"""Use cases: ingest, query, retrieve, render, import, check, demo."""
