"""First image: the JPEG of a slice never rendered before, rendered and thumbnail.

    .venv/bin/python benchmarks/bench_first_image.py [--quick] [--rounds N] [--database D]

One server pair receives the same 300-slice CT series (512×512, 16-bit signed, explicit VR
LE) by STOW-RS. Each round takes 40 slices nobody has asked for yet and fetches
``…/instances/I/rendered`` once each, then 40 other fresh slices' thumbnails, through one
kept-alive httpx client per server; rounds alternate which server goes first. An
informational row fetches frame 1 of the rendered slices as stored: the cost of a request
that does no rendering, on the same client.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from PIL import Image

from benchmarks.bench_series import SERIES_SIZE, SeriesFixture, StoredSeries, store_series
from benchmarks.cloudfilm_server import DEFAULT_POSTGRES
from benchmarks.common import FRAME_ACCEPT, Context, LoadMonitor, Row, median, p5, p95
from benchmarks.pair import server_pair

NAME = "first_image"
TARGET_MS = 5.0
SLICES = 40
WARMUP = 5
THUMBNAIL_SIDE = 128
SERVERS = ["cloudfilm", "Orthanc"]
METHOD = f"""\
**First image.** The 300-slice CT series (512×512, 16-bit) is stored by STOW-RS in both servers.
Each round takes {SLICES} slices never requested before and sends one
`GET …/instances/I/rendered` (`Accept: image/jpeg`) per slice, then {SLICES} other fresh slices'
thumbnails, sequentially on one kept-alive httpx client per server; time = the client's wall
time until the body is read. Before the first round each server renders {WARMUP} slices kept
out of the measured sets (the process is warm; no slice is). cloudfilm's thumbnail is
`…/thumbnail` (a {THUMBNAIL_SIDE}×{THUMBNAIL_SIDE} viewport); Orthanc's DICOMweb plugin 1.7
has no `/thumbnail`, so its thumbnail is `…/rendered?viewport={THUMBNAIL_SIDE},{THUMBNAIL_SIDE}`.
Rounds alternate which server goes first; the median is over every slice of every round,
with p5/p95 and the range of the round medians as the spread. The *frame* row (information)
fetches frame 1 of each rendered slice as stored on the same client: what a request costs
without rendering."""


@dataclass(frozen=True)
class Kind:
    """One measured resource: how its URL is made per server, what is accepted and checked."""

    name: str
    measure: str
    accept: str
    url: Callable[[str, str], str]  # (server, instance URL) -> URL
    image_side: int | None  # the JPEG's longest side; None: not an image
    target: bool = True


KINDS = [
    Kind("rendered", "first rendered JPEG of a never-rendered slice (512²)", "image/jpeg",
         lambda server, base: f"{base}/rendered", 512),
    Kind("thumbnail", f"first thumbnail of a never-rendered slice ({THUMBNAIL_SIDE} px JPEG)",
         "image/jpeg",
         lambda server, base: f"{base}/thumbnail" if server == "cloudfilm"
         else f"{base}/rendered?viewport={THUMBNAIL_SIDE},{THUMBNAIL_SIDE}", THUMBNAIL_SIDE),
    Kind("frame", "frame 1 of the same slice as stored (info: a request without rendering)",
         FRAME_ACCEPT, lambda server, base: f"{base}/frames/1", None, target=False),
]


def _fetch(client: httpx.Client, url: str, kind: Kind) -> tuple[float, bytes]:
    started = time.perf_counter()
    response = client.get(url, headers={"Accept": kind.accept})
    body = response.content
    seconds = time.perf_counter() - started
    ctype = response.headers.get("content-type", "")
    if response.status_code != 200 or not ctype.startswith(kind.accept.split(";")[0]):
        raise RuntimeError(f"GET {url} answered {response.status_code} {ctype}: {response.text[:300]}")
    return seconds, body


def _check_jpeg(body: bytes, kind: Kind, server: str) -> None:
    if kind.image_side is None:
        return
    image = Image.open(io.BytesIO(body))
    if image.format != "JPEG" or max(image.size) != kind.image_side:
        raise RuntimeError(f"{server} {kind.name}: expected a JPEG of {kind.image_side} px, "
                           f"got {image.format} {image.size}")


class FirstImageRun:
    """Hands out never-requested slices and collects per-request times per server."""

    def __init__(self, ctx: Context, fixture: SeriesFixture) -> None:
        self.ctx = ctx
        self.fixture = fixture
        self.series: StoredSeries = fixture.series[0]
        self.unused = list(self.series.sop_uids)
        self.clients = {s: httpx.Client(timeout=60, headers={"Accept-Encoding": "identity",
                                                             **fixture.auth_headers(s)})
                        for s in SERVERS}
        self.ms: dict[str, dict[str, list[float]]] = {k.name: {s: [] for s in SERVERS} for k in KINDS}
        self.rounds: dict[str, dict[str, list[float]]] = {k.name: {s: [] for s in SERVERS}
                                                         for k in KINDS}

    def take(self, count: int) -> list[str]:
        if len(self.unused) < count:
            raise RuntimeError(f"only {len(self.unused)} never-rendered slices left, need {count}")
        taken, self.unused = self.unused[:count], self.unused[count:]
        return taken

    def _urls(self, server: str, kind: Kind, uids: list[str]) -> list[str]:
        base = f"{self.fixture.dicomweb(server)}{self.series.path()}/instances/"
        return [kind.url(server, base + uid) for uid in uids]

    def warm_up(self) -> None:
        uids = self.take(WARMUP)
        for server in SERVERS:
            for kind in KINDS:
                for url in self._urls(server, kind, uids):
                    _check_jpeg(_fetch(self.clients[server], url, kind)[1], kind, server)

    def _measure(self, server: str, kind: Kind, uids: list[str]) -> None:
        times = [_fetch(self.clients[server], url, kind)[0] * 1000
                 for url in self._urls(server, kind, uids)]
        self.ms[kind.name][server] += times
        self.rounds[kind.name][server].append(median(times))

    def one_round(self, number: int) -> None:
        order = SERVERS if number % 2 == 0 else SERVERS[::-1]
        rendered = self.take(SLICES)
        thumbnails = self.take(SLICES)
        for server in order:
            for kind, uids in zip(KINDS, (rendered, thumbnails, rendered), strict=True):
                self._measure(server, kind, uids)
        self.ctx.say(f"first image round {number + 1}: " + "; ".join(
            f"{k.name} " + ", ".join(f"{s} {self.rounds[k.name][s][-1]:.2f} ms" for s in SERVERS)
            for k in KINDS))

    def rows(self) -> list[Row]:
        rows = []
        for kind in KINDS:
            cf, orth = self.ms[kind.name]["cloudfilm"], self.ms[kind.name]["Orthanc"]
            rows.append(Row(
                NAME, kind.measure, "ms", median(cf), median(orth), median(cf) / median(orth),
                "cloudfilm ÷ Orthanc", f"≤ {TARGET_MS:g} ms" if kind.target else "– (info)",
                median(cf) <= TARGET_MS if kind.target else None,
                {"round_medians_ms": self.rounds[kind.name],
                 "p5_ms": {"cloudfilm": p5(cf), "Orthanc": p5(orth)}},
                cloudfilm_tail=p95(cf), orthanc_tail=p95(orth), samples=len(cf)))
        return rows

    def close(self) -> None:
        for client in self.clients.values():
            client.close()


def _spread(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f}"


def run(ctx: Context, rounds: int | None = None) -> tuple[list[Row], dict[str, object]]:
    rounds = rounds or (1 if ctx.quick else 3)
    if WARMUP + 2 * SLICES * rounds > SERIES_SIZE:
        raise ValueError(f"{rounds} rounds need more than the {SERIES_SIZE} slices of one series")
    with server_pair(ctx, "first-image") as pair:
        fixture = SeriesFixture(pair)
        pair.cloudfilm.profile_phase("store")
        store_series(ctx, fixture, 0, None)
        pair.cloudfilm.profile_phase("first-image")
        bench = FirstImageRun(ctx, fixture)
        try:
            bench.warm_up()
            for number in range(rounds):
                bench.one_round(number)
        finally:
            bench.close()
        rows = bench.rows()
    extra: dict[str, object] = {"slices per round and kind": SLICES, "rounds": rounds}
    for kind in KINDS:
        extra[f"{kind.name}: round medians (ms)"] = ", ".join(
            f"{s} {_spread(bench.rounds[kind.name][s])}" for s in SERVERS)
    return rows, extra


def main(argv: list[str] | None = None) -> int:
    from benchmarks.report import console_table

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one round instead of three")
    parser.add_argument("--rounds", type=int, default=None, help="rounds of 2×40 fresh slices (≤ 3)")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--profile", type=Path, default=None,
                        help="record cloudfilm with py-spy (collapsed stacks) into this directory")
    args = parser.parse_args(argv)
    ctx = Context(quick=args.quick, database=args.database, postgres_url=args.postgres_url,
                  profile_dir=args.profile.resolve() if args.profile else None)
    monitor = LoadMonitor(every=2.0)
    rows, extra = run(ctx, args.rounds)
    extra["1-min load average during the run (2 cores)"] = monitor.stop()
    print(console_table(rows))
    for key, value in extra.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
