"""``cloudfilm worker``: run background jobs (registration and tracking, notifications,
reminder scans, automatic films) until stopped; any number may run.

Jobs come from the queue ``CLOUDFILM_QUEUE_URL`` names: the index database by default,
or RabbitMQ / Redis. Each worker also takes its turn enqueuing the periodic jobs.
SIGTERM or Ctrl-C stops it after the jobs it is running (up to ``--grace`` seconds; a job
still running then runs again elsewhere once its lease runs out).
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from cloudfilm.commands.common import add_data_arg
from cloudfilm.config import Settings
from cloudfilm.services.context import Archive


def run(args: argparse.Namespace) -> int:
    from cloudfilm.services.jobs.worker import start_worker

    archive = Archive.open(Settings.load(args.data))
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    worker = start_worker(archive, threads=args.threads)
    try:
        print(f"cloudfilm worker: {args.threads} threads on the {archive.jobs.engine} queue "
              f"({archive.settings.data_dir})", flush=True)
        while not stopping.wait(1.0):
            pass
    finally:
        worker.stop(args.grace)
        archive.close()
    return 0


def register(commands: Any) -> None:
    worker = commands.add_parser("worker", help="run background jobs (any number of workers)")
    add_data_arg(worker)
    worker.add_argument("--threads", type=int, default=2, help="jobs run at once (default 2)")
    worker.add_argument("--grace", type=float, default=30.0,
                        help="seconds to let running jobs finish on stop (default 30)")
    worker.set_defaults(func=run)
