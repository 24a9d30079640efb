"""The demo's cloud film: one hospital film a newcomer can open, keep and sign up with.

Why: the entry point of cloudfilm in China is the QR code on a printed report (issue 12,
part 8), so ``make run`` hands a newcomer one film at once. It is issued for the newest
study of the second demo patient, whose records no demo account holds: keeping it signs
a new patient up (the first demo patient's records already belong to ``demo-patient``,
and keeping those would rightly be refused). The film is issued once; later runs find it
again through its id, kept in ``demo-film.json`` (the secret itself is never stored: the
URL is derived from the server key, as for every film).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cloudfilm.domain.access import Principal, Role
from cloudfilm.services.access.films import FilmService
from cloudfilm.services.access.people import NotFound

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive

DEMO_FILM_FILE = "demo-film.json"
DESK = Principal("user", None, "demo-desk", Role.OPERATOR)


@dataclass(frozen=True)
class DemoFilm:
    film_id: int
    path: str  # /s/<secret>
    birth_date: str  # YYYY-MM-DD: what the newcomer types when keeping it
    patient_name: str


def ensure_demo_film(archive: Archive, truth: dict[str, Any]) -> DemoFilm | None:
    """The demo film (issued now if there is none yet, or if it was withdrawn); None when
    the demo has a single patient."""
    if len(truth["patients"]) < 2:
        return None
    patient = truth["patients"][1]
    films, kept = FilmService(archive), archive.settings.data_dir / DEMO_FILM_FILE
    info = None
    if kept.exists():
        try:
            film, grant = films.get(DESK, int(json.loads(kept.read_text())["film_id"]))
            info = films.info(film, grant)
        except (NotFound, ValueError, KeyError):
            info = None
    if info is None or info.status != "active":
        info = films.issue(DESK, patient["studies"][-1]["study_uid"])
        kept.write_text(json.dumps({"film_id": info.id}) + "\n")
    born = patient["birth_date"]
    return DemoFilm(info.id, info.path, f"{born[:4]}-{born[4:6]}-{born[6:]}",
                    patient["patient_name"])
