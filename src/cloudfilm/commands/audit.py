"""``cloudfilm audit verify``: check the audit log's keyed chain against its anchor file."""

from __future__ import annotations

import argparse
from typing import Any

from cloudfilm.commands.common import add_data_arg, opened


def run_verify(args: argparse.Namespace) -> int:
    """Exit 0 when every record fits the chain and its checkpoints; 1 saying what does not.

    Opened without recovery, and it writes nothing: a checkpoint taken now would describe
    whatever state it finds, tampered or not.
    """
    with opened(args, recover=False) as archive:
        report = archive.audit.verify()
    if report.intact:
        print(f"audit chain intact: {report.records} records"
              + (f", head {report.head}" if report.head else "")
              + f", {report.checkpoints} checkpoints"
              + (f" ({report.note})" if report.note else ""))
        return 0
    where = (f" at record {report.first_bad_id} (record {report.records} in order)"
             if report.first_bad_id is not None else "")
    print(f"audit chain broken{where}: {report.problem}")
    return 1


def register(commands: Any) -> None:
    audit = commands.add_parser("audit", help="the audit log")
    actions = audit.add_subparsers(dest="action", required=True)
    verify = actions.add_parser("verify", help="verify the audit chain and its checkpoints; "
                                               "exit 1 if broken")
    add_data_arg(verify)
    verify.set_defaults(func=run_verify)
