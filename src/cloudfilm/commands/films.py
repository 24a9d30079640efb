"""``cloudfilm film issue STUDY_UID``: the hospital desk's cloud film from the console.

Prints the same JSON as ``POST /api/films`` (issue 12); ``--slip FILE`` also writes the
printable slip. The absolute URLs start with
``--base-url``, else ``CLOUDFILM_PUBLIC_URL``, else ``http://127.0.0.1:8080`` (what
``cloudfilm serve`` binds by default). The console user acts as an operator.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.commands.people import cli_operator
from cloudfilm.domain.clock import utcnow
from cloudfilm.services.access.films import FilmService, film_json, parse_film_request
from cloudfilm.services.access.people import ServiceError

DEFAULT_BASE = "http://127.0.0.1:8080"


def _fail(exc: ServiceError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1 if exc.status == 404 else 2


def run_issue(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"study_uid": args.study_uid, "valid_until": args.valid_until}
    try:
        uid, until, _ = parse_film_request(body, utcnow().date())
        with opened(args, recover=False) as archive:
            films = FilmService(archive)
            info = films.issue(cli_operator(), uid, until)
            base = (args.base_url or archive.settings.public_url or DEFAULT_BASE).rstrip("/")
            if args.slip:
                write_slip(films, info.id, base, Path(args.slip))
    except ServiceError as exc:
        return _fail(exc)
    print(json.dumps(film_json(base, info), ensure_ascii=False))
    return 0


def write_slip(films: FilmService, film_id: int, base: str, path: Path) -> None:
    """The film's printable slip (the same PDF as ``/api/films/{id}/slip.pdf``)."""
    from cloudfilm.web.films import film_slip_pdf

    info, facts = films.slip(cli_operator(), film_id)
    path.write_bytes(film_slip_pdf(info, facts, base))


def run_revoke(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            FilmService(archive).revoke(cli_operator(), args.film_id)
    except ServiceError as exc:
        return _fail(exc)
    print(f"film {args.film_id} withdrawn", file=sys.stderr)
    return 0


def register(commands: Any) -> None:
    film = commands.add_parser("film", help="hospital-issued cloud films (a link to one study)")
    actions = film.add_subparsers(dest="action", required=True)
    issue = actions.add_parser("issue", help="issue a cloud film; prints its JSON")
    add_data_arg(issue)
    issue.add_argument("study_uid")
    issue.add_argument("--valid-until", help="last day the link works (YYYY-MM-DD); "
                                             "default: no end date")
    issue.add_argument("--base-url", help="public address of the server for the printed URLs")
    issue.add_argument("--slip", metavar="FILE", help="also write the printable slip (PDF) here")
    issue.set_defaults(func=run_issue)
    revoke = actions.add_parser("revoke", help="withdraw a film at once")
    add_data_arg(revoke)
    revoke.add_argument("film_id", type=int)
    revoke.set_defaults(func=run_revoke)
