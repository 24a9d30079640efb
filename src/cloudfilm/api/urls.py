"""Absolute URLs for RetrieveURL and BulkDataURI (PS3.18 §10.4.1.2, Annex F)."""

from __future__ import annotations

from starlette.requests import Request


def site_base(request: Request) -> str:
    configured: str | None = request.app.state.archive.settings.public_url
    if configured:
        return configured.rstrip("/")
    host = request.headers.get("host") or f"{request.url.hostname}:{request.url.port}"
    return f"{request.url.scheme}://{host}"


def dicomweb_base(request: Request) -> str:
    return f"{site_base(request)}/dicomweb"


def study_url(base: str, study: str) -> str:
    return f"{base}/studies/{study}"


def instance_url(base: str, study: str, series: str, instance: str) -> str:
    return f"{base}/studies/{study}/series/{series}/instances/{instance}"
