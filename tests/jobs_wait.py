"""Waiting for background jobs in tests: poll what a user would look at, never sleep a
guessed time."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_for_tracking(http: httpx.Client, study_uid: str, timeout: float = 300.0) -> dict[str, Any]:
    """``GET /api/studies/{study}/nodules`` once the folder's settle job has run (the
    measurements tracked, the assessment and SR refreshed); its answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer = http.get(f"/api/studies/{study_uid}/nodules")
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["tracking"] == "done":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"tracking of {study_uid} still pending after {timeout:g} s")
        time.sleep(0.2)


def wait_for_tracking_in_page(page: Any, base_url: str, study_uid: str,
                              timeout: float = 300.0) -> dict[str, Any]:
    """The same through a Playwright page's session (its cookies)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = page.request.get(f"{base_url}/api/studies/{study_uid}/nodules")
        assert answer.status == 200, answer.text()
        body: dict[str, Any] = answer.json()
        if body["tracking"] == "done":
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"tracking of {study_uid} still pending after {timeout:g} s")
        page.wait_for_timeout(200)
