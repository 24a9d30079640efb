"""WADO-RS series metadata (`/studies/S/series/SE/metadata`) for a 300-instance CT series.

* cold after store: the first request for a series, right after it was stored;
* cold after restart: the first request after both servers were restarted;
* cold after restart with the OS page cache dropped too (when allowed: root);
* warm: the same request repeated.
"""

from __future__ import annotations

import httpx

from benchmarks.common import JSON_ACCEPT, Context, Row, check_ok, curl_sequential, drop_page_cache, median, p95

NAME = "metadata"
TARGET = 0.3
METHOD = """\
**Series metadata.** The 300-instance CT series (512×512, ~157 MB) is stored by STOW-RS in both
servers; `GET …/studies/S/series/SE/metadata` with `Accept: application/dicom+json`, by curl,
time = curl `time_total`. *Cold after store*: the very first request for a series, right after
STOW finished (one sample per stored series). *Cold after restart*: both servers restarted,
then one request each (one sample per restart). *Cold, page cache dropped*: as after restart,
plus `sync; echo 3 > /proc/sys/vm/drop_caches` before each server's request, so files and
index pages come from disk. *Warm*: one untimed request, then repeated requests on a kept-alive
connection. Orthanc's DICOMweb plugin 1.7 builds series metadata from the stored files
(`SeriesMetadata: "Full"`, its default); cloudfilm serves DICOM JSON precomputed at ingest."""


def _url(fixture, server: str, series) -> str:
    return f"{fixture.dicomweb(server)}{series.path()}/metadata"


SERVERS = ["cloudfilm", "Orthanc"]


class MetadataRun:
    def __init__(self, ctx: Context, fixture) -> None:
        self.ctx = ctx
        self.fixture = fixture
        self.samples: dict[str, dict[str, list[float]]] = {}
        self.checked = False
        self.sizes: dict[str, int] = {}

    def _add(self, kind: str, server: str, seconds: float) -> None:
        self.samples.setdefault(kind, {s: [] for s in SERVERS})[server].append(seconds * 1000)

    def _one(self, kind: str, server: str, series) -> None:
        (t,) = curl_sequential([_url(self.fixture, server, series)], JSON_ACCEPT,
                               headers=self.fixture.auth_headers(server))
        check_ok([t], f"{server} metadata")
        self.sizes[server] = t.size
        self._add(kind, server, t.seconds)

    def cold_after_store(self, series) -> None:
        order = SERVERS if len(self.fixture.series) % 2 else SERVERS[::-1]
        for server in order:
            self._one("cold after store", server, series)
        self._check(series)

    def _check(self, series) -> None:
        """Both servers must return one item per instance (once)."""
        if self.checked:
            return
        for server in SERVERS:
            response = httpx.get(_url(self.fixture, server, series), timeout=120, headers={
                "Accept": JSON_ACCEPT, **self.fixture.auth_headers(server)})
            if response.status_code != 200:
                raise RuntimeError(f"{server} metadata: HTTP {response.status_code} "
                                   f"{response.text[:300]}")
            items = response.json()
            if len(items) != len(series.sop_uids):
                raise RuntimeError(f"{server} metadata has {len(items)} items, "
                                   f"expected {len(series.sop_uids)}")
        self.checked = True

    def finish(self) -> tuple[list[Row], dict]:
        ctx, fixture = self.ctx, self.fixture
        restarts = 2 if ctx.quick else 5
        for r in range(restarts):
            fixture.pair.restart()
            series = fixture.series[r % len(fixture.series)]
            for server in (SERVERS if r % 2 == 0 else SERVERS[::-1]):
                self._one("cold after restart", server, series)
        ctx.say(f"metadata cold after restart: {self._summary('cold after restart')}")
        dropped = 1 if ctx.quick else 3
        dropping_works = True
        for r in range(dropped):
            fixture.pair.restart()
            series = fixture.series[r % len(fixture.series)]
            for server in (SERVERS if r % 2 == 0 else SERVERS[::-1]):
                if not drop_page_cache():
                    dropping_works = False
                    break
                self._one("cold, page cache dropped", server, series)
            if not dropping_works:
                self.samples.pop("cold, page cache dropped", None)
                break
        warm_n = 10 if ctx.quick else 30
        series = fixture.series[0]
        for server in SERVERS:
            url, auth = _url(fixture, server, series), fixture.auth_headers(server)
            curl_sequential([url], JSON_ACCEPT, headers=auth)
            transfers = curl_sequential([url] * warm_n, JSON_ACCEPT, headers=auth)
            check_ok(transfers, f"{server} metadata")
            for t in transfers:
                self._add("warm", server, t.seconds)
        rows = []
        for kind, per_server in self.samples.items():
            cf, orth = median(per_server["cloudfilm"]), median(per_server["Orthanc"])
            ratio = cf / orth
            rows.append(Row(NAME, f"series metadata (300 inst.), {kind}", "ms", cf, orth, ratio,
                            "cloudfilm ÷ Orthanc", f"≤ {TARGET}×", ratio <= TARGET,
                            {s: v for s, v in per_server.items()},
                            cloudfilm_tail=p95(per_server["cloudfilm"]),
                            orthanc_tail=p95(per_server["Orthanc"]),
                            samples=len(per_server["cloudfilm"])))
            ctx.say(f"metadata {kind}: {self._summary(kind)}")
        extra = {"series stored": len(fixture.series), "restarts (cold)": restarts,
                 "page cache dropped": "yes" if dropping_works else "not allowed here (skipped)",
                 "warm requests": warm_n,
                 "response bytes": ", ".join(f"{s} {n:,}" for s, n in self.sizes.items())}
        return rows, extra

    def _summary(self, kind: str) -> str:
        per = self.samples.get(kind, {})
        return ", ".join(f"{s} {median(v):.1f} ms" for s, v in per.items() if v)
