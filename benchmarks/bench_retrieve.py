"""WADO-RS whole-series retrieve (multipart/related application/dicom), bytes discarded."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from benchmarks.common import (
    DICOM_ACCEPT,
    MB,
    Context,
    Row,
    curl_sequential,
    make_tmpdir,
    median,
    p5,
    remove_tree,
    stop_process,
)

NAME = "retrieve"
TARGET_MBPS = 1000.0
ORTHANC_FALLBACK = 'multipart/related; type="application/dicom"'
METHOD = f"""\
**Whole series retrieve.** `GET …/studies/S/series/SE` of the 300-instance CT series
(~157 MB of Part-10 files) with `Accept: {DICOM_ACCEPT}`, by
`curl -s -o /dev/null -w '%{{size_download}} %{{time_total}}'` (curl discards the bytes in C,
so the client is not the bottleneck). One untimed request each, then repeated requests
alternating the servers; throughput = bytes received ÷ `time_total`, in MB/s (10⁶ B/s).
Calibration, in the same rounds: a file of the same size served by a 40-line sendfile(2)
server (`benchmarks/sendfile_server.py`) to the same curl — the loopback ceiling of this
machine at that moment, since server and client share its two cores."""

SERVERS = ["cloudfilm", "Orthanc"]
CEILING = "sendfile ceiling"


class CeilingServer:
    """benchmarks/sendfile_server.py serving ``size`` bytes of zeros from a temp file."""

    def __init__(self, size: int) -> None:
        self.root = make_tmpdir("ceiling")
        self.file = self.root / "body.bin"
        with open(self.file, "wb") as fh:
            fh.truncate(size)  # sparse is fine: the page cache serves zeros either way
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("sendfile_server.py")), str(self.file)],
            stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/"

    def cleanup(self) -> None:
        stop_process(self.process)
        remove_tree(self.root)


def run(ctx: Context, fixture) -> tuple[list[Row], dict]:
    series = fixture.series[0]
    urls = {s: f"{fixture.dicomweb(s)}{series.path()}" for s in SERVERS}
    accept = {s: DICOM_ACCEPT for s in SERVERS}
    auth = {s: fixture.auth_headers(s) for s in SERVERS}
    extra: dict[str, object] = {}
    first: dict[str, int] = {}
    for server in SERVERS:
        (t,) = curl_sequential([urls[server]], accept[server], headers=auth[server])
        if t.status != 200 and server == "Orthanc":
            accept[server] = ORTHANC_FALLBACK
            extra["Orthanc Accept"] = f"{ORTHANC_FALLBACK} (it refused transfer-syntax=*: HTTP {t.status})"
            (t,) = curl_sequential([urls[server]], accept[server], headers=auth[server])
        if t.status != 200 or t.size < series.total_bytes:
            raise RuntimeError(f"{server} retrieve: HTTP {t.status}, {t.size} bytes "
                               f"(stored {series.total_bytes})")
        first[server] = t.size
    reps = 3 if ctx.quick else 7
    ceiling = CeilingServer(first["cloudfilm"])
    urls[CEILING], accept[CEILING], auth[CEILING] = ceiling.url, "*/*", {}
    names = [*SERVERS, CEILING]
    rates: dict[str, list[float]] = {s: [] for s in names}
    sizes: dict[str, int] = {}
    try:
        curl_sequential([urls[CEILING]], "*/*")
        for r in range(reps):
            for server in (names if r % 2 == 0 else names[::-1]):
                (t,) = curl_sequential([urls[server]], accept[server], headers=auth[server])
                if t.status != 200:
                    raise RuntimeError(f"{server} retrieve: HTTP {t.status}")
                sizes[server] = t.size
                rates[server].append(t.size / MB / t.seconds)
            ctx.say(f"retrieve {r + 1}/{reps}: " + ", ".join(f"{s} {rates[s][-1]:.0f} MB/s" for s in names))
    finally:
        ceiling.cleanup()
    cf, orth = median(rates["cloudfilm"]), median(rates["Orthanc"])
    row = Row(NAME, "whole series retrieve (300 inst., ~157 MB)", "MB/s", cf, orth, cf / orth,
              "cloudfilm ÷ Orthanc", "≥ 1 GB/s", cf >= TARGET_MBPS,
              {"rates": {k: rates[k] for k in SERVERS}, "bytes": sizes},
              cloudfilm_tail=p5(rates["cloudfilm"]), orthanc_tail=p5(rates["Orthanc"]),
              tail_label="p5", samples=reps)
    top = median(rates[CEILING])
    row.detail["ceiling_rates"] = rates[CEILING]
    row.note = (f"loopback ceiling in the same rounds (sendfile server, same curl): {top:.0f} MB/s; "
                f"cloudfilm reached {100 * cf / top:.0f}% of it, Orthanc {100 * orth / top:.0f}%")
    extra |= {"response bytes": ", ".join(f"{s} {n:,}" for s, n in sizes.items()), "repetitions": reps,
              "loopback ceiling (sendfile server, same size, same curl)":
                  f"median {top:.0f} MB/s; cloudfilm reaches {100 * cf / top:.0f}% of it, "
                  f"Orthanc {100 * orth / top:.0f}%"}
    if ctx.s3 is not None:
        per_object = series.total_bytes // len(series.sop_uids)
        peer_top = ctx.s3.read_ceiling(len(series.sop_uids), per_object)
        row.note += (f"; the S3 peer itself (boto3 GETs of {len(series.sop_uids)} objects of "
                     f"{per_object:,} bytes, 8 at a time) hands out {peer_top:.0f} MB/s: "
                     f"cloudfilm reached {100 * cf / peer_top:.0f}% of that")
        extra["S3 peer ceiling (boto3, 8 GETs at a time, same object sizes)"] = f"{peer_top:.0f} MB/s"
    return [row], extra
