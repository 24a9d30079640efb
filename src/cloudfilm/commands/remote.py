"""``cloudfilm remote find|fetch|send``: query/retrieve from other archives, and send to them.

Exit status: 0 when the request fully succeeded (fetch: every remote instance of the study
is now stored here), 1 when something failed or is still missing, 2 for an unknown node.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cloudfilm.commands.common import add_data_arg, opened
from cloudfilm.services.exchange.nodes import UnknownNode
from cloudfilm.services.exchange.remote_types import (
    METHOD,
    VIA,
    FetchPlan,
    FetchReport,
    LocalAE,
    Progress,
    RemoteError,
    RemoteStudy,
    SendReport,
    StudyQuery,
)

if TYPE_CHECKING:
    from cloudfilm.services.context import Archive
    from cloudfilm.services.exchange.remote import RemoteService


def _service(archive: Archive) -> RemoteService:
    """Imported on use: pynetdicom and httpx load only for ``remote`` commands."""
    from cloudfilm.services.exchange.remote import RemoteService

    return RemoteService(archive)


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn the expected failures into one clear line and an exit status."""

    def wrapper(args: argparse.Namespace) -> int:
        logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # our errors say it better
        try:
            return run(args)
        except UnknownNode as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    return wrapper


def _study_line(study: RemoteStudy) -> str:
    count = "" if study.number_of_instances is None else str(study.number_of_instances)
    fields = [study.study_uid, study.study_date, study.patient_id, study.patient_name,
              "\\".join(study.modalities), study.description, count]
    return "\t".join(f or "-" for f in fields)


def run_find(args: argparse.Namespace) -> int:
    query = StudyQuery(args.patient_id or "", args.study_date or "", args.modality or "")
    with opened(args, recover=False) as archive:
        studies = _service(archive).find(args.node, query, calling_ae=args.ae_title,
                                              via=args.via)
    for study in studies:
        print(_study_line(study))
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} at {args.node}",
          file=sys.stderr)
    return 0


def _print_progress(step: Progress) -> None:
    if not step.sop_uid:
        print(f"  {step.done}/{step.total} sent by the peer", flush=True)
        return
    state = "ok" if step.ok else "FAILED"
    detail = f": {step.detail}" if step.detail else ""
    print(f"  [{step.done}/{step.total}] {step.sop_uid} {state}{detail}", flush=True)


def _print_plan(plan: FetchPlan) -> None:
    print(f"study {plan.study_uid} at {plan.node}: {len(plan.remote)} instances, "
          f"{plan.already_present} already here, fetching {len(plan.missing)} by "
          f"{METHOD[plan.via]}", flush=True)


def _print_fetch(report: FetchReport) -> None:
    for failure in report.failures:
        print(f"  FAILED {failure.sop_uid}: {failure.detail}")
    total = len(report.plan.remote)
    print(f"fetched {report.fetched}, failed {len(report.failures)}; "
          f"{total - len(report.still_missing)} of {total} instances stored here"
          + ("" if report.complete else f", {len(report.still_missing)} missing"))
    if report.error:
        print(f"error: {report.error}", file=sys.stderr)


def run_fetch(args: argparse.Namespace) -> int:
    local = LocalAE(args.ae_title, args.dimse_port, args.dimse_host)
    with opened(args, recover=False) as archive:  # the running server owns crash recovery
        service = _service(archive)
        plan = service.plan_fetch(args.node, args.study, via=args.via, calling_ae=args.ae_title)
        _print_plan(plan)
        report = service.fetch(plan, local=local, progress=_print_progress)
    _print_fetch(report)
    return 0 if report.complete else 1


def _print_send(report: SendReport) -> None:
    sent = len(report.results) - len(report.failures)
    print(f"sent {sent} of {len(report.results)} instances of study {report.study_uid} to "
          f"{report.node}, failed {len(report.failures)}")


def run_send(args: argparse.Namespace) -> int:
    with opened(args, recover=False) as archive:
        report = _service(archive).send(args.node, args.study, calling_ae=args.ae_title,
                                             progress=_print_progress)
    _print_send(report)
    return 0 if report.complete else 1


def _common(parser: argparse.ArgumentParser) -> None:
    add_data_arg(parser)
    parser.add_argument("node", help="a known node (see 'cloudfilm node list')")
    parser.add_argument("--ae-title", default="CLOUDFILM",
                        help="our AE title: the calling AE, and the C-MOVE destination")


def register(commands: Any) -> None:
    remote = commands.add_parser("remote", help="query/retrieve from and send to other archives")
    actions = remote.add_subparsers(dest="action", required=True)
    find = actions.add_parser("find", help="search a node's studies (C-FIND or QIDO-RS)")
    _common(find)
    find.add_argument("--patient-id")
    find.add_argument("--study-date", help="YYYYMMDD or a range YYYYMMDD-YYYYMMDD")
    find.add_argument("--modality", help="matched against ModalitiesInStudy")
    find.add_argument("--via", choices=["dimse", "dicomweb"],
                      help="default: QIDO-RS when the node has a DICOMweb URL, else C-FIND")
    find.set_defaults(func=_guarded(run_find))
    fetch = actions.add_parser("fetch", help="retrieve a study's missing instances (resumable)")
    _common(fetch)
    fetch.add_argument("--study", required=True, help="StudyInstanceUID")
    fetch.add_argument("--via", choices=list(VIA),
                       help="default: dicomweb when the node has a DICOMweb URL, else move")
    fetch.add_argument("--dimse-port", type=int, default=11112,
                       help="our running server's DIMSE port (the C-MOVE destination)")
    fetch.add_argument("--dimse-host", default="127.0.0.1",
                       help="where to C-ECHO our own server before a C-MOVE")
    fetch.set_defaults(func=_guarded(run_fetch))
    send = actions.add_parser("send", help="C-STORE a stored study to a node")
    _common(send)
    send.add_argument("--study", required=True, help="StudyInstanceUID")
    send.set_defaults(func=_guarded(run_send))
