"""The "Download" button of the study and case-folder pages, shown only to a caller the
policy lets download (``Permission.DOWNLOAD``): a view-only link or grant sees no button,
and the routes behind it (api/export.py) refuse such a caller with a 404 anyway."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cloudfilm.domain.access import Permission, Principal
from cloudfilm.i18n import Localizer
from cloudfilm.services.access.people import PeopleService
from cloudfilm.services.access.policy import Policy
from cloudfilm.services.context import Archive


def study_download(archive: Archive, loc: Localizer, who: Principal,
                   study_uid: str) -> dict[str, Any] | None:
    """The button's links for one study, or None when ``who`` may only view it."""
    if not Policy(archive).check(who, Permission.DOWNLOAD, study_uid).allowed:
        return None
    base = f"/api/studies/{quote(study_uid)}"
    return {"originals_url": f"{base}/originals.zip", "disc_url": f"{base}/export.zip",
            "intro": loc.gettext("Keep your own copy of this scan. It has no time limit.")}


def folder_download(archive: Archive, loc: Localizer, who: Principal,
                    person_id: int) -> dict[str, Any] | None:
    """The button's links for every scan of the folder ``who`` may download, or None."""
    studies = PeopleService(archive).studies_for(who, person_id, Permission.DOWNLOAD)
    if not studies:
        return None
    base = f"/api/persons/{person_id}"
    return {"originals_url": f"{base}/originals.zip", "disc_url": f"{base}/export.zip",
            "intro": loc.ngettext("Keep your own copy of %(num)s scan. It has no time limit.",
                                  "Keep your own copy of all %(num)s scans. They have no time "
                                  "limit.", len(studies))}
