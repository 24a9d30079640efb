"""The shared fixture of the metadata, frames and retrieve benchmarks.

One server pair receives the same 300-instance CT series (512×512, 16-bit,
explicit VR LE; ~157 MB) by STOW-RS; full runs store three such series so that
"cold after store" has more than one sample. The benchmarks then run on it in turn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

from benchmarks import bench_frames, bench_metadata, bench_retrieve
from benchmarks.common import Context, multipart_body, stow_post
from benchmarks.data import SeriesSpec, ct_instance
from benchmarks.pair import Pair, server_pair

SERIES_SIZE = 300
STOW_BATCH = 50


@dataclass
class StoredSeries:
    spec: SeriesSpec
    sop_uids: list[str] = field(default_factory=list)
    total_bytes: int = 0

    def path(self) -> str:
        return f"/studies/{self.spec.study_uid}/series/{self.spec.series_uid}"


@dataclass
class SeriesFixture:
    pair: Pair
    series: list[StoredSeries] = field(default_factory=list)

    def server(self, server_name: str):
        return self.pair.cloudfilm if server_name == "cloudfilm" else self.pair.orthanc

    def dicomweb(self, server_name: str) -> str:
        return self.server(server_name).dicomweb

    def auth_headers(self, server_name: str) -> dict[str, str]:
        """cloudfilm's bearer token; nothing for Orthanc."""
        return self.server(server_name).auth_headers


def store_series(ctx: Context, fixture: SeriesFixture, index: int,
                 after_store: Callable[[StoredSeries], None] | None) -> StoredSeries:
    rng = np.random.default_rng(100 + index)
    stored = StoredSeries(SeriesSpec.new(f"series{index}"))
    targets = [(f"{s.dicomweb}/studies", s.auth_headers) for s in fixture.pair.servers()]
    with httpx.Client(timeout=600) as client:
        for start in range(1, SERIES_SIZE + 1, STOW_BATCH):
            parts = []
            for n in range(start, min(start + STOW_BATCH, SERIES_SIZE + 1)):
                uid, raw = ct_instance(stored.spec, n, rng)
                stored.sop_uids.append(uid)
                stored.total_bytes += len(raw)
                parts.append(raw)
            body, ctype = multipart_body(parts)
            for url, auth in targets:
                stow_post(client, url, body, ctype, len(parts), auth)
    fixture.series.append(stored)
    ctx.say(f"stored series {index + 1} ({SERIES_SIZE} instances, "
            f"{stored.total_bytes / 1e6:.0f} MB) on both servers")
    if after_store:
        after_store(stored)
    return stored


def run(ctx: Context, names: list[str]) -> list[tuple[str, list, str, dict]]:
    count = 1 if ctx.quick else 3
    if "metadata" not in names:
        count = 1
    results = []
    with server_pair(ctx, "series") as pair:
        fixture = SeriesFixture(pair)
        pair.cloudfilm.profile_phase("store")
        metadata = bench_metadata.MetadataRun(ctx, fixture) if "metadata" in names else None
        for i in range(count):
            store_series(ctx, fixture, i, metadata.cold_after_store if metadata else None)
        if metadata:
            pair.cloudfilm.profile_phase("metadata")
            rows, extra = metadata.finish()
            results.append(("metadata", rows, bench_metadata.METHOD, extra))
        if "frames" in names:
            pair.cloudfilm.profile_phase("frames")
            rows, extra = bench_frames.run(ctx, fixture)
            results.append(("frames", rows, bench_frames.METHOD, extra))
        if "retrieve" in names:
            pair.cloudfilm.profile_phase("retrieve")
            rows, extra = bench_retrieve.run(ctx, fixture)
            results.append(("retrieve", rows, bench_retrieve.METHOD, extra))
    return results
