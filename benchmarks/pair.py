"""Both servers side by side, started together and always cleaned up."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from benchmarks.cloudfilm_server import CloudfilmServer
from benchmarks.common import Context
from benchmarks.orthanc import OrthancServer


class Pair:
    def __init__(self, ctx: Context, label: str) -> None:
        self.cloudfilm = CloudfilmServer(f"{label}-cf", ctx.database, ctx.postgres_url,
                                         extra_env=ctx.server_env, profile_dir=ctx.profile_dir)
        self.orthanc = OrthancServer(f"{label}-orthanc")

    def start(self) -> Pair:
        self.cloudfilm.start()
        self.orthanc.start()
        return self

    def restart(self) -> None:
        self.cloudfilm.restart()
        self.orthanc.restart()

    def cleanup(self, background: bool = False) -> None:
        for server in (self.cloudfilm, self.orthanc):
            server.cleanup(background)

    def servers(self) -> list:
        return [self.cloudfilm, self.orthanc]


@contextmanager
def server_pair(ctx: Context, label: str, background_cleanup: bool = False) -> Iterator[Pair]:
    pair = Pair(ctx, label)
    try:
        yield pair.start()
    finally:
        pair.cleanup(background_cleanup)
