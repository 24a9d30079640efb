"""``cloudfilm advise < case.json``: guideline follow-up for one exam's nodules, as JSON.

Reads the case from stdin (see `cloudfilm.domain.advice` for the fields), prints the
category, recommendation, next-scan window, the rule row that fired and each nodule's
size, growth, doubling time and Brock probability. Bad input exits with status 2 and a
message naming the field. Decision support for a physician, never a diagnosis.
"""

from __future__ import annotations

import argparse
import json
import sys

from cloudfilm.domain.advice import CaseError, advise_json

BAD_INPUT = 2


def run_advise(args: argparse.Namespace) -> int:
    text = sys.stdin.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        print(f"cloudfilm advise: input: not valid JSON ({error})", file=sys.stderr)
        return BAD_INPUT
    try:
        result = advise_json(data)
    except CaseError as error:
        print(f"cloudfilm advise: {error}", file=sys.stderr)
        return BAD_INPUT
    json.dump(result, sys.stdout, ensure_ascii=False, indent=2 if args.pretty else None)
    sys.stdout.write("\n")
    return 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("advise", help="guideline follow-up for a nodule case (JSON on stdin)",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretty", action="store_true", help="indent the JSON output")
    parser.set_defaults(func=run_advise)
