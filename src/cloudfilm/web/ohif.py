"""Placeholder: filled by the portal/viewer work (issue 5)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
