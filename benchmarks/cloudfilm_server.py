"""Start and stop ``cloudfilm serve`` for a benchmark, with SQLite (default) or PostgreSQL.

PostgreSQL: each server gets a fresh schema in the database named by
CLOUDFILM_BENCH_POSTGRES (default postgresql://127.0.0.1:5432/test), dropped on cleanup.

Authentication: ``cloudfilm serve`` answers anonymous API/DICOMweb requests with 401.
On its first start each server gets an admin user (``bench``) and a bearer token made
with the CLI (``cloudfilm user add`` / ``cloudfilm token issue``, against the same data
directory and database); every benchmark request to cloudfilm carries
``auth_headers``, so token lookup and per-request auditing are part of what is measured.
Orthanc runs without authentication (``OrthancServer.auth_headers`` is empty).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx

from benchmarks.common import PYTHON, ROOT, free_port, make_tmpdir, remove_tree, stop_process, tail, wait_for_port

DEFAULT_POSTGRES = "postgresql://127.0.0.1:5432/test"
BENCH_USER = "bench"


_SERVE_HELP: str | None = None


def serve_options() -> list[str]:
    """Extra ``serve`` flags: DIMSE off (``--dimse-port 0``) when the CLI has that option.

    The benchmarks measure DICOMweb only; an idle DIMSE listener would cost nothing but
    would need a free port of its own (its default, 11112, is shared by every server).
    """
    global _SERVE_HELP
    if _SERVE_HELP is None:
        _SERVE_HELP = subprocess.run([str(PYTHON), "-m", "cloudfilm", "serve", "--help"], cwd=ROOT,
                                     capture_output=True, text=True, timeout=120).stdout
    return ["--dimse-port", "0"] if "--dimse-port" in _SERVE_HELP else []


def _pg_execute(url: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql)


class CloudfilmServer:
    name = "cloudfilm"

    def __init__(self, label: str = "cloudfilm", database: str = "sqlite",
                 postgres_url: str = DEFAULT_POSTGRES, extra_env: dict[str, str] | None = None,
                 profile_dir: Path | None = None) -> None:
        self.root = make_tmpdir(label)
        self.data = self.root / "data"
        self.port = free_port()
        self.log_path = self.root / "cloudfilm.log"
        self.process: subprocess.Popen | None = None
        self.database = database
        self.postgres_url = postgres_url
        self.schema: str | None = None
        self.extra_env = extra_env or {}
        self.label = label
        self.profile_dir = profile_dir
        self.profiler: subprocess.Popen | None = None
        self._starts = 0
        self.phase = "run"
        self.token: str | None = None
        if database == "postgresql":
            self.schema = f"cfbench_{secrets.token_hex(6)}"
            _pg_execute(postgres_url, f"CREATE SCHEMA {self.schema}")
            self.database_url = f"{postgres_url}?options=-csearch_path%3D{self.schema}"
        elif database == "sqlite":
            self.database_url = f"sqlite:///{self.data / 'index.sqlite3'}"
        else:
            raise ValueError(f"unknown database {database!r}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicomweb"

    @property
    def auth_headers(self) -> dict[str, str]:
        """What every request to this server carries: the benchmark user's bearer token."""
        if self.token is None:
            raise RuntimeError("cloudfilm has no benchmark token yet: start() the server first")
        return {"Authorization": f"Bearer {self.token}"}

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CLOUDFILM_DATA", None)
        env["CLOUDFILM_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def cli(self, *args: str) -> str:
        """Run ``cloudfilm ARGS --data DIR`` against this server's data and database; stdout."""
        proc = subprocess.run([str(PYTHON), "-m", "cloudfilm", *args, "--data", str(self.data)],
                              env=self._env(), cwd=ROOT, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"cloudfilm {' '.join(args[:2])} failed ({proc.returncode}): "
                               f"{(proc.stderr or proc.stdout)[-2000:]}")
        return proc.stdout

    def _provision(self) -> None:
        """Once, after the first start (migrations done): an admin user and its bearer token,
        then one authenticated request, so a refused token fails here and not mid-benchmark."""
        self.cli("user", "add", BENCH_USER, "--role", "admin")
        token = self.cli("token", "issue", BENCH_USER, "--expires-in", "never",
                         "--label", "benchmarks").strip()
        if not token or len(token.split()) != 1:
            raise RuntimeError(f"cloudfilm token issue printed {token!r}, expected one token")
        self.token = token
        probe = httpx.get(f"{self.dicomweb}/studies", params={"limit": "1"},
                          headers={"Accept": "application/dicom+json", **self.auth_headers},
                          timeout=60)
        if probe.status_code not in (200, 204):
            raise RuntimeError(f"cloudfilm refused the benchmark token: QIDO answered "
                               f"{probe.status_code} {probe.text[:300]}")

    def add_node(self, name: str, aet: str, port: int, sees: str = "all",
                 host: str = "127.0.0.1") -> None:
        """Register a calling AE (``cloudfilm node add``): C-FIND/C-MOVE/C-GET only match what
        the caller's known node may see, and an unregistered caller sees nothing."""
        self.cli("node", "add", name, "--aet", aet, "--host", host, "--port", str(port),
                 "--sees", sees)

    def start(self, timeout: float = 120) -> CloudfilmServer:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [str(PYTHON), "-m", "cloudfilm", "serve", "--data", str(self.data),
                 "--host", "127.0.0.1", "--port", str(self.port), *serve_options()],
                env=self._env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
            )
        wait_for_port(self.port, self.process, timeout, self.log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"cloudfilm did not answer /healthz:\n{tail(self.log_path)}")
        if self.token is None:  # the first start; restarts keep the user and token
            self._provision()
        self._start_profiler()
        return self

    def _start_profiler(self) -> None:
        """py-spy attached to the server: collapsed stacks, one file per server start."""
        self._starts += 1
        if self.profile_dir is None or self.process is None:
            return
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        out = self.profile_dir / f"{self.label}-{self.phase}-{self._starts}.txt"
        spy = PYTHON.parent / "py-spy"
        self.profiler = subprocess.Popen(
            [str(spy), "record", "--pid", str(self.process.pid), "--format", "raw", "--rate", "200",
             "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)

    def _stop_profiler(self) -> None:
        if self.profiler is None:
            return
        if self.profiler.poll() is None:
            self.profiler.send_signal(signal.SIGINT)
            try:
                self.profiler.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.profiler.kill()
                self.profiler.wait()
        self.profiler = None

    def profile_phase(self, phase: str) -> None:
        """Start a new profile file for the next part of the work (no-op without profiling)."""
        self.phase = phase
        if self.profile_dir is not None and self.process is not None:
            self._stop_profiler()
            self._start_profiler()

    def stop(self) -> None:
        self._stop_profiler()
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self, background: bool = False) -> None:
        self.stop()
        if self.schema:
            try:
                _pg_execute(self.postgres_url, f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            except Exception as exc:  # noqa: BLE001 - cleanup must not hide the real result
                print(f"warning: could not drop schema {self.schema}: {exc}")
        remove_tree(self.root, background)

    def __enter__(self) -> CloudfilmServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()
