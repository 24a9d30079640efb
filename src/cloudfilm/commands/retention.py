"""``cloudfilm retention report|policy|hold``: how long studies are kept; nothing is deleted here.

report                                     per study: source, date, years, eligible on, blockers
policy set ISSUER --min-years N|--forever  (ISSUER ``*`` is the default for every source)
policy list
hold add (--study UID | --person ID) --reason TEXT
hold release ID
hold list [--all]
"""

from __future__ import annotations

import argparse
import getpass
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.domain.audit import AuditEntry
from cloudfilm.services.archive.retention import Retention, RetentionError, StudyRetention, summarise
from cloudfilm.services.context import Archive


def _audit(archive: Archive, detail: dict[str, Any], study_uid: str = "") -> None:
    """Retention changes are security configuration (DCM 110113 / 110129) in the audit log."""
    archive.audit.record(AuditEntry(actor=f"cli:{getpass.getuser()}", action="admin",
                                    actor_role="operator", study_uid=study_uid,
                                    source="localhost", detail=detail))


def _row(status: StudyRetention) -> str:
    years = "forever" if status.min_years is None else str(status.min_years)
    eligible = status.eligible_on.isoformat() if status.eligible_on else "never"
    when = status.study_date.isoformat() if status.study_date else "-"
    state = "may be deleted" if status.may_delete else "kept"
    blocked = "; ".join(status.blocked_by) or "-"
    return "\t".join([status.study_uid, status.issuer or "(no issuer)", when, years, eligible,
                      state, blocked])


def run_report(args: argparse.Namespace) -> int:
    with opened(args, recover=False) as archive:
        statuses = Retention(archive.index).report()
    print("\t".join(["STUDY", "SOURCE", "STUDY DATE", "MIN YEARS", "ELIGIBLE ON", "STATUS",
                     "BLOCKED BY"]))
    for status in statuses:
        print(_row(status))
    counts = summarise(statuses)
    print(f"{counts['studies']} studies: {counts['eligible']} may be deleted, "
          f"{counts['blocked']} blocked by a hold or grant, {counts['forever']} kept forever. "
          "Nothing was deleted.")
    return 0


def run_policy_set(args: argparse.Namespace) -> int:
    years = None if args.forever else args.min_years
    try:
        with opened(args, recover=False) as archive:
            Retention(archive.index).set_policy(args.issuer, years)
            _audit(archive, {"retention": "policy-set", "issuer": args.issuer, "min_years": years})
    except RetentionError as exc:
        print(f"cannot set policy: {exc}")
        return 2
    kept = "keep forever" if years is None else f"keep {years} years"
    print(f"policy for {args.issuer}: {kept}")
    return 0


def run_policy_list(args: argparse.Namespace) -> int:
    with opened(args, recover=False) as archive:
        policies = Retention(archive.index).policies()
    for issuer, years in sorted(policies.items()):
        print(f"{issuer}\t{'forever' if years is None else years}")
    if "*" not in policies:
        print("*\tforever (default)")
    return 0


def run_hold_add(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            hold_id = Retention(archive.index).add_hold(args.reason, study_uid=args.study,
                                                        person_id=args.person)
            _audit(archive, {"retention": "hold-add", "hold": hold_id, "person_id": args.person},
                   study_uid=args.study or "")
    except RetentionError as exc:
        print(f"cannot add hold: {exc}")
        return 2
    target = f"study {args.study}" if args.study else f"person {args.person}"
    print(f"legal hold {hold_id} on {target}")
    return 0


def run_hold_release(args: argparse.Namespace) -> int:
    try:
        with opened(args, recover=False) as archive:
            hold = Retention(archive.index).release_hold(args.id)
            _audit(archive, {"retention": "hold-release", "hold": hold.id,
                             "person_id": hold.person_id}, study_uid=hold.study_uid or "")
    except RetentionError as exc:
        print(str(exc))
        return 1
    print(f"released legal hold {hold.id}")
    return 0


def run_hold_list(args: argparse.Namespace) -> int:
    with opened(args, recover=False) as archive:
        holds = Retention(archive.index).holds(active_only=not args.all)
    for hold in holds:
        target = f"study {hold.study_uid}" if hold.study_uid else f"person {hold.person_id}"
        released = hold.released_at.isoformat() if hold.released_at else "active"
        print(f"{hold.id}\t{target}\t{hold.created_at.isoformat()}\t{released}\t{hold.reason}")
    return 0


def _register_policy(actions: Any) -> None:
    policy = actions.add_parser("policy", help="minimum retention per source (IssuerOfPatientID)")
    verbs = policy.add_subparsers(dest="verb", required=True)
    set_ = verbs.add_parser("set", help="set a source's minimum years (ISSUER '*' = default)")
    add_data_arg(set_)
    set_.add_argument("issuer")
    years = set_.add_mutually_exclusive_group(required=True)
    years.add_argument("--min-years", type=int, help="keep at least N years from the study date")
    years.add_argument("--forever", action="store_true", help="never eligible for deletion")
    set_.set_defaults(func=run_policy_set)
    listing = verbs.add_parser("list", help="list policies")
    add_data_arg(listing)
    listing.set_defaults(func=run_policy_list)


def _register_hold(actions: Any) -> None:
    hold = actions.add_parser("hold", help="legal holds: nothing they cover may be deleted")
    verbs = hold.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="hold a study or all of a person's studies")
    add_data_arg(add)
    target = add.add_mutually_exclusive_group(required=True)
    target.add_argument("--study", help="StudyInstanceUID")
    target.add_argument("--person", type=int, help="person id")
    add.add_argument("--reason", required=True)
    add.set_defaults(func=run_hold_add)
    release = verbs.add_parser("release", help="release a hold")
    add_data_arg(release)
    release.add_argument("id", type=int)
    release.set_defaults(func=run_hold_release)
    listing = verbs.add_parser("list", help="list active holds")
    add_data_arg(listing)
    listing.add_argument("--all", action="store_true", help="include released holds")
    listing.set_defaults(func=run_hold_list)


def register(commands: Any) -> None:
    retention = commands.add_parser("retention", help="retention report, policies, legal holds")
    actions = retention.add_subparsers(dest="action", required=True)
    report = actions.add_parser("report", help="per-study retention status (deletes nothing)")
    add_data_arg(report)
    report.set_defaults(func=run_report)
    _register_policy(actions)
    _register_hold(actions)
