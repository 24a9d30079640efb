"""``cloudfilm audit verify``: check the audit log's hash chain (tamper evidence)."""

from __future__ import annotations

import argparse
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every record fits the chain; 1 naming the first record that does not."""
    with opened(args, recover=False) as archive:
        report = archive.audit.verify()
    if report.intact:
        print(f"audit chain intact: {report.records} records"
              + (f", head {report.head}" if report.head else ""))
        return 0
    print(f"audit chain broken at record {report.first_bad_id} "
          f"(record {report.records} in order): {report.problem}")
    return 1


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit log")
    actions = audit.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="verify the audit hash chain; exit 1 if broken")
    add_data_arg(verify)
    verify.set_defaults(func=run_verify)
