"""``python tests/job_probe.py worker …``: the real ``cloudfilm`` command line, with two
test jobs added to the job table of its process (as an extension would add its own):

- ``probe.record``: writes a line when it starts and one when it ends (job number, pid,
  time) to the payload's ``log`` file, sleeping ``seconds`` in between;
- ``probe.fail``: records the attempt, then fails; 3 attempts, 0.5 s then 1 s apart.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from cloudfilm.services.jobs.handlers import JobSpec, register
from cloudfilm.services.jobs.ledger import RetryPolicy

FAIL_POLICY = RetryPolicy(max_attempts=3, first_delay=0.5, factor=2.0)


def _note(path: str, **fields: Any) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(fields | {"pid": os.getpid(), "at": time.time()}) + "\n")


def record(archive: Any, payload: dict[str, Any]) -> None:
    _note(payload["log"], job=payload["n"], event="start")
    time.sleep(float(payload.get("seconds", 0.3)))
    _note(payload["log"], job=payload["n"], event="end")


def fail(archive: Any, payload: dict[str, Any]) -> None:
    _note(payload["log"], job=payload["n"], event="attempt")
    raise RuntimeError("the probe fails on purpose")


def add_probe_jobs() -> None:
    register(JobSpec("probe.record", record))
    register(JobSpec("probe.fail", fail, FAIL_POLICY))


if __name__ == "__main__":
    add_probe_jobs()
    from cloudfilm.cli import main

    raise SystemExit(main(sys.argv[1:]))
