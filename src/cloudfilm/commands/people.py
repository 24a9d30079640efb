"""``cloudfilm claim-code`` and ``cloudfilm person add|show|link|unlink|suggest``.

Issue "People, access and sharing": an operator links each hospital's record
(IssuerOfPatientID, PatientID) to a Person, or prints a claim code for the patient of a
study (10 characters, single use, 90 days) that the patient enters in the portal.
Every link and unlink is audited, with the operator's login name as the actor.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.domain.access import Principal, Role
from cloudfilm.services.access.people import CLAIM_DAYS, PeopleService, ServiceError


def cli_operator() -> Principal:
    """The person at the console acts as an operator (they hold the server's files)."""
    try:
        who = getpass.getuser()
    except (KeyError, OSError):
        who = "unknown"
    return Principal(kind="user", username=f"cli:{who}", role=Role.OPERATOR)


def _fail(exc: ServiceError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return 1 if exc.status == 404 else 2


def run_claim_code(args: argparse.Namespace) -> int:
    """Print the code alone on stdout (for scripts); the rest goes to stderr."""
    try:
        with opened(args, recover=False) as archive:
            code, expires = PeopleService(archive).create_claim_code(args.study_uid, args.days)
    except ServiceError as exc:
        return _fail(exc)
    print(code)
    print(f"claim code for study {args.study_uid}: single use, valid until "
          f"{expires.date().isoformat()}", file=sys.stderr)
    return 0


def run_add(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            person_id = PeopleService(archive).create_person(
                cli_operator(), args.name, args.birth_date or "", args.sex or "", args.user)
    except ServiceError as exc:
        return _fail(exc)
    print(person_id)
    return 0


def run_show(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            people = PeopleService(archive)
            person = people.person(args.person_id)
            records = people.records(args.person_id)
    except ServiceError as exc:
        return _fail(exc)
    print(f"person {person.id}\t{person.display_name}\t{person.birth_date}\t{person.sex}")
    for r in records:
        print(f"  {r.issuer or '-'}\t{r.patient_id}\t{r.name}\t{r.studies} studies\t{r.method}")
    return 0


def run_link(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            record = PeopleService(archive).link(cli_operator(), args.person_id, args.patient_id,
                                                 args.issuer or "")
    except ServiceError as exc:
        return _fail(exc)
    print(f"linked {record.issuer or '-'}/{record.patient_id} to person {args.person_id} "
          f"({record.studies} studies)")
    return 0


def run_unlink(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            PeopleService(archive).unlink(cli_operator(), args.person_id, args.patient_id,
                                          args.issuer or "")
    except ServiceError as exc:
        return _fail(exc)
    print(f"unlinked {args.issuer or '-'}/{args.patient_id} from person {args.person_id}")
    return 0


def run_suggest(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            found = PeopleService(archive).suggestions(cli_operator(), args.person_id)
    except ServiceError as exc:
        return _fail(exc)
    for r in found:
        print(f"{r.issuer or '-'}\t{r.patient_id}\t{r.name}\t{r.birth_date}\t{r.sex}\t"
              f"{r.studies} studies")
    return 0


def _record_args(parser: argparse.ArgumentParser) -> None:
    add_data_arg(parser)
    parser.add_argument("person_id", type=int)
    parser.add_argument("--patient-id", required=True, help="the hospital's PatientID")
    parser.add_argument("--issuer", default="", help="IssuerOfPatientID (the hospital)")


def register(commands: Any) -> None:
    claim = commands.add_parser("claim-code", help="print a claim code for a study's patient")
    add_data_arg(claim)
    claim.add_argument("study_uid")
    claim.add_argument("--days", type=int, default=CLAIM_DAYS, help="validity (default 90)")
    claim.set_defaults(func=run_claim_code)
    person = commands.add_parser("person", help="persons and their hospital records")
    actions = person.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="create a person; prints its id")
    add_data_arg(add)
    add.add_argument("name")
    add.add_argument("--birth-date", help="YYYYMMDD")
    add.add_argument("--sex", help="M, F or O")
    add.add_argument("--user", help="the patient account this person is")
    add.set_defaults(func=run_add)
    show = actions.add_parser("show", help="a person and their linked records")
    add_data_arg(show)
    show.add_argument("person_id", type=int)
    show.set_defaults(func=run_show)
    for name, func in (("link", run_link), ("unlink", run_unlink)):
        sub = actions.add_parser(name, help=f"{name} a hospital record")
        _record_args(sub)
        sub.set_defaults(func=func)
    suggest = actions.add_parser("suggest", help="unlinked records with matching demographics")
    add_data_arg(suggest)
    suggest.add_argument("person_id", type=int)
    suggest.set_defaults(func=run_suggest)
