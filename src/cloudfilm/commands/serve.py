"""``cloudfilm serve``: DICOMweb over HTTP and the DIMSE node, in one process.

Every HTTP endpoint but the login page, link opening and /healthz needs a login or a
bearer token, and DIMSE callers see what their node allows, so any host may be bound.
"""

from __future__ import annotations

import argparse
import signal
from types import FrameType
from typing import Any

from cloudfilm.commands.common import add_data_arg
from cloudfilm.config import Settings
from cloudfilm.services.context import Archive


def _exit_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from cloudfilm.api.http_timeouts import HttpTimeouts, guarded_protocol
    from cloudfilm.app import create_app
    from cloudfilm.services.jobs.worker import start_worker

    settings = Settings.load(args.data)  # first: a bad value stops before anything runs
    timeouts = HttpTimeouts.from_settings(settings.http)
    if args.dimse_port:
        from cloudfilm.dimse.server import start_dimse
    archive = Archive.open(settings)
    dimse: Any = None
    # CLOUDFILM_EMBEDDED_WORKER: jobs run here too (make run is one process) unless
    # separate `cloudfilm worker` processes run them.
    worker = start_worker(archive) if settings.embedded_worker else None
    try:
        if args.dimse_port:
            dimse = start_dimse(archive, ae_title=args.ae_title, host=args.host, port=args.dimse_port)
        print(f"cloudfilm serving {archive.settings.data_dir} at http://{args.host}:{args.port}/dicomweb"
              + (f" and DIMSE {args.ae_title}@{args.host}:{args.dimse_port}" if dimse else "")
              + ("" if worker else " (no job worker: run 'cloudfilm worker')"), flush=True)
        config = uvicorn.Config(create_app(archive), host=args.host, port=args.port, loop="uvloop",
                                http=guarded_protocol(timeouts), access_log=False,
                                proxy_headers=True,
                                forwarded_allow_ips=list(settings.trusted_proxies),
                                log_level="warning",
                                timeout_keep_alive=int(timeouts.keep_alive_seconds))
        # uvicorn re-raises SIGTERM once it has stopped; as SystemExit it lets the
        # clean-up below run (final audit checkpoint, DIMSE and job worker stop).
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        uvicorn.Server(config).run()
    finally:
        if worker is not None:
            worker.stop()
        if dimse is not None:
            dimse.stop()
        archive.close()
    return 0


def register(commands: Any) -> None:
    serve = commands.add_parser("serve", help="start the DICOMweb server and the DIMSE node")
    add_data_arg(serve)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--dimse-port", type=int, default=11112, help="DIMSE port; 0 turns DIMSE off")
    serve.add_argument("--ae-title", default="CLOUDFILM", help="our AE title")
    serve.set_defaults(func=run)
