"""Stored research exports: ``POST /api/research/exports`` and what reads them back.

An export runs when it is asked for (in the request's worker thread; a cohort of a few
hundred instances takes seconds) and its zip goes to the blob store, so any node can
serve it; the row keeps the status and the manifest. Only the creator or an admin reads
an export (`domain.access.may_read_research_export`); anyone else gets the 404 of a
missing one. Creation, reading and refusals are audited.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime
from typing import Any

from cloudfilm.domain.access import Principal, may_export_research, may_read_research_export
from cloudfilm.domain.deidentification import Options
from cloudfilm.services.access.people import Forbidden, Invalid, NotFound, audit_entry
from cloudfilm.services.context import Archive
from cloudfilm.services.research.cohort import Selection, SelectionError
from cloudfilm.services.research.export import ResearchExport
from cloudfilm.services.research.sinks import ZipSink
from cloudfilm.storage.index.research_models import ResearchExportRow

_OPTION_KEYS = {"retain_longitudinal_modified_dates": "retain_dates",
                "retain_patient_characteristics": "retain_characteristics",
                "clean_descriptors": "clean_descriptors",
                "retain_safe_private": "retain_safe_private"}
_LISTS = {"studies": str, "persons": int, "modality": str, "hospital": str,
          "nodule_type": str, "growth": str, "category": str}


def _list(body: dict[str, Any], key: str) -> tuple[Any, ...]:
    value = body.get(key, [])
    kind = _LISTS[key]
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool)
                                              for v in value):
        raise Invalid(f"{key} must be a list of {'numbers' if kind is int else 'text'}")
    return tuple(value)


def _day(body: dict[str, Any], key: str) -> date | None:
    value = body.get(key)
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise Invalid(f"{key} must be a date such as 2024-05-31") from None


def _size(body: dict[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Invalid(f"{key} must be a number of millimetres")
    return float(value)


def parse_request(body: dict[str, Any]) -> tuple[Selection, Options]:
    """The JSON body: the same selectors and options as ``cloudfilm research export``."""
    unknown = set(body) - {"all", "from", "until", "min_size_mm", "max_size_mm", "guideline",
                           "options", *_LISTS}
    if unknown:
        raise Invalid(f"unknown field {sorted(unknown)[0]!r}")
    guideline = body.get("guideline")
    if guideline is not None and not isinstance(guideline, str):
        raise Invalid("guideline must be fleischner or lungrads")
    selection = Selection(
        everything=body.get("all") is True, study_uids=_list(body, "studies"),
        person_ids=_list(body, "persons"), date_from=_day(body, "from"),
        date_until=_day(body, "until"), modalities=_list(body, "modality"),
        hospitals=_list(body, "hospital"), nodule_types=_list(body, "nodule_type"),
        min_size_mm=_size(body, "min_size_mm"), max_size_mm=_size(body, "max_size_mm"),
        growth=_list(body, "growth"), categories=_list(body, "category"), guideline=guideline)
    raw = body.get("options", {})
    if not isinstance(raw, dict) or set(raw) - set(_OPTION_KEYS) or \
            not all(isinstance(v, bool) for v in raw.values()):
        raise Invalid(f"options: true or false for {', '.join(_OPTION_KEYS)}")
    options = Options(**{_OPTION_KEYS[k]: v for k, v in raw.items()})
    try:
        selection.check()
    except SelectionError as exc:
        raise Invalid(str(exc)) from None
    return selection, options


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def export_json(row: ResearchExportRow) -> dict[str, Any]:
    done = row.status == "done"
    created: datetime | None = row.created_at
    return {"id": row.id, "status": row.status, "created_by": row.created_by,
            "created_at": _iso(created), "finished_at": _iso(row.finished_at),
            "manifest": json.loads(row.manifest or "{}"), "error": row.error or None,
            "size": row.size, "archive": f"/api/research/exports/{row.id}/archive" if done else None}


class ResearchExports:
    def __init__(self, archive: Archive) -> None:
        self.archive = archive

    def create(self, who: Principal, body: dict[str, Any], source: str = "") -> dict[str, Any]:
        if not may_export_research(who):
            raise Forbidden("research exports are for researchers and admins")
        selection, options = parse_request(body)
        with self.archive.index.write_session() as session:
            row = ResearchExportRow(user_id=who.user_id, created_by=who.username[:128],
                                    status="running", request=json.dumps(body))
            session.add(row)
            session.commit()
            export_id = row.id
        sink = ZipSink(self.archive.blobs)
        try:
            manifest = ResearchExport(self.archive, selection, options).run(
                sink, who, export_id=export_id, destination="archive", source=source)
            key = f"research/export-{export_id}-{secrets.token_hex(8)}.zip"
            size = sink.publish(key)
        except Exception as exc:
            sink.abort()
            self._finish(export_id, status="failed", error=str(exc)[:500])
            if isinstance(exc, SelectionError):
                raise Invalid(str(exc)) from None
            raise
        return self._finish(export_id, status="done", manifest=manifest, key=key, size=size)

    def _finish(self, export_id: int, *, status: str, manifest: dict[str, Any] | None = None,
                key: str | None = None, size: int | None = None,
                error: str = "") -> dict[str, Any]:
        with self.archive.index.write_session() as session:
            row = session.get_one(ResearchExportRow, export_id)
            row.status, row.error, row.blob_key, row.size = status, error, key, size
            row.manifest = json.dumps(manifest or {})
            row.finished_at = datetime.now(UTC)
            session.commit()
            return export_json(row)

    def _row(self, who: Principal, export_id: int, source: str) -> ResearchExportRow:
        with self.archive.index.session() as session:
            row = session.get(ResearchExportRow, export_id)
        if row is None or not may_read_research_export(who, row.user_id):
            self.archive.audit.record(audit_entry(
                who, "research-export", outcome="failure", source=source,
                detail={"export": export_id, "reason": "no such export of this user"}))
            raise NotFound(f"research export {export_id} not found")
        return row

    def get(self, who: Principal, export_id: int, source: str = "") -> dict[str, Any]:
        return export_json(self._row(who, export_id, source))

    def list(self, who: Principal) -> list[dict[str, Any]]:
        from sqlalchemy import select

        if not may_export_research(who):
            raise Forbidden("research exports are for researchers and admins")
        with self.archive.index.session() as session:
            rows = session.scalars(select(ResearchExportRow).order_by(ResearchExportRow.id.desc()))
            return [export_json(r) for r in rows if may_read_research_export(who, r.user_id)]

    def archive_blob(self, who: Principal, export_id: int, source: str = "") -> tuple[str, int]:
        """The zip's blob key and size, for streaming; audited as a download."""
        row = self._row(who, export_id, source)
        if row.status != "done" or not row.blob_key:
            raise NotFound(f"research export {export_id} has no archive ({row.status})")
        self.archive.audit.record(audit_entry(
            who, "research-export", source=source,
            detail={"export": export_id, "what": "archive download"}))
        return row.blob_key, int(row.size or 0)
