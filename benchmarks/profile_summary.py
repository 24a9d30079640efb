"""Summarise py-spy collapsed stacks (``run.py --profile DIR`` writes them).

    .venv/bin/python benchmarks/profile_summary.py DIR/qido-cf-1.txt [--top 25] [--match cloudfilm]

Prints the functions with the most samples on the stack (inclusive) and at the top
of the stack (self), as shares of the busy samples. py-spy counts some waiting as
active; samples whose innermost frame is a known wait (an idle worker thread, the
event loop's poll, Event/Condition waits) are dropped unless --keep-waits is given.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

WAITS = {"Condition.wait", "Event.wait", "Queue.get", "_worker", "Runner.run", "WorkerThread.run",
         "Thread.join", "select", "sleep"}
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*?)(?::(?P<line>\d+))?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame)
    if not match:
        return frame
    path = match.group("file")
    for marker in ("site-packages/", "src/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def summarise(path: Path, top: int, match: str | None, keep_waits: bool = False) -> str:
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    total = waiting = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";")[1:]]  # drop the thread label
        if not frames:
            continue
        if not keep_waits and frames[-1].split(" (")[0] in WAITS:
            waiting += count
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        self_time[frames[-1]] += count
    out = [f"{path.name}: {total} busy samples ({waiting} waiting samples dropped)"]
    for title, counter in (("inclusive", inclusive), ("self", self_time)):
        out.append(f"\n-- {title} --")
        shown = 0
        for name, count in counter.most_common():
            if match and match not in name:
                continue
            out.append(f"{100 * count / max(total, 1):5.1f}%  {name}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default=None, help="only functions whose name/file contains this")
    parser.add_argument("--keep-waits", action="store_true", help="count waiting samples too")
    args = parser.parse_args()
    for path in args.files:
        print(summarise(path, args.top, args.match, args.keep_waits))
        print()


if __name__ == "__main__":
    main()
