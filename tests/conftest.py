"""Fixtures that start the real server (``cloudfilm serve`` in its own process) on a free
loopback port, with a temporary data directory.

Server-backed tests run twice: against SQLite and against PostgreSQL
(127.0.0.1:5432, database ``test``; each server gets its own schema). Set
CLOUDFILM_TEST_DATABASES=sqlite to run only one.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

POSTGRES_URL = os.environ.get("CLOUDFILM_TEST_POSTGRES", "postgresql://127.0.0.1:5432/test")
DATABASES = [d for d in os.environ.get("CLOUDFILM_TEST_DATABASES", "sqlite,postgresql").split(",") if d]
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresSchema:
    """A throw-away schema in the shared test database."""

    name: str = field(default_factory=lambda: f"cf_{secrets.token_hex(6)}")

    @property
    def url(self) -> str:
        return f"{POSTGRES_URL}?options=-csearch_path%3D{self.name}"

    def _run(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(sql)

    def create(self) -> PostgresSchema:
        self._run(f"CREATE SCHEMA {self.name}")
        return self

    def drop(self) -> None:
        self._run(f"DROP SCHEMA IF EXISTS {self.name} CASCADE")


def database_url_for(kind: str, data_dir: Path) -> tuple[str, PostgresSchema | None]:
    if kind == "postgresql":
        schema = PostgresSchema().create()
        return schema.url, schema
    return f"sqlite:///{data_dir / 'index.sqlite3'}", None


def cli_env(database_url: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CLOUDFILM_DATABASE_URL"] = database_url
    env.pop("CLOUDFILM_DATA", None)
    return env


def run_cli(args: list[str], database_url: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the installed ``cloudfilm`` command, as a user would."""
    return subprocess.run(
        [sys.executable, "-m", "cloudfilm", *args], env=cli_env(database_url),
        capture_output=True, text=True, timeout=600, **kwargs,  # type: ignore[arg-type]
    )


TEST_ADMIN = "test-admin"


def admin_token(database_url: str, username: str = TEST_ADMIN, role: str = "admin") -> str:
    """A bearer token for a user of ``role``, created directly in the index (as the CLI would)."""
    from cloudfilm.services.access.accounts import AccountService
    from cloudfilm.storage.index.db import Index

    index = Index(database_url)
    try:
        accounts = AccountService(index)
        if accounts.get_user(username) is None:
            accounts.add_user(username, role)
        return accounts.issue_token(username, expires_in=None, label="tests")
    finally:
        index.dispose()


@dataclass
class Server:
    """A running ``cloudfilm serve`` process."""

    data_dir: Path
    database_url: str
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    dimse_port: int = 0  # DIMSE off unless a test asks for it (set a free_port())
    ae_title: str = "CLOUDFILM"
    token: str = ""  # an admin's bearer token, issued once the server is up

    @property
    def auth(self) -> dict[str, str]:
        """The ``Authorization`` header of the test admin (every endpoint needs a login)."""
        return {"Authorization": f"Bearer {self.token}"}

    def http(self, **kwargs: Any) -> httpx.Client:
        """An httpx client at the server root, authenticated as the test admin."""
        return httpx.Client(base_url=self.url, headers=self.auth | kwargs.pop("headers", {}),
                            timeout=kwargs.pop("timeout", 60), **kwargs)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicomweb"

    def start(self) -> Server:
        self.log_path = self.data_dir.parent / f"server-{self.port}.log"
        env = cli_env(self.database_url) | self.extra_env
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "cloudfilm", "serve", "--data", str(self.data_dir),
                 "--host", "127.0.0.1", "--port", str(self.port),
                 "--dimse-port", str(self.dimse_port), "--ae-title", self.ae_title, *self.extra_args],
                env=env, stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    self.token = self.token or admin_token(self.database_url)
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not start in 60 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kill(self) -> None:
        """kill -9: no clean-up at all."""
        if self.process:
            self.process.kill()
            self.process.wait()


@pytest.fixture(scope="module", params=DATABASES)
def database_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def server(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server per test module and database."""
    data_dir = tmp_path_factory.mktemp(f"data-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url).start()
    try:
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


@pytest.fixture
def fresh_server(database_kind: str, tmp_path: Path) -> Iterator[Server]:
    """A server of one's own, for tests that count or crash things."""
    data_dir = tmp_path / "data"
    url, schema = database_url_for(database_kind, data_dir)
    srv = Server(data_dir, url)
    try:
        yield srv
    finally:
        srv.stop()
        if schema:
            schema.drop()


@pytest.fixture
def archive(database_kind: str, tmp_path: Path) -> Iterator[Any]:
    """An archive of its own, opened in this process, on a fresh database."""
    from cloudfilm.config import Settings
    from cloudfilm.services.context import Archive

    data_dir = tmp_path / "data"
    url, schema = database_url_for(database_kind, data_dir)
    opened = Archive.open(Settings.load(data_dir, url), recover=False)
    try:
        yield opened
    finally:
        opened.close()
        if schema:
            schema.drop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
        yield http


# -- browser tests -------------------------------------------------------------------------

SCREENSHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """Debian's chromium, driven by Playwright (which never downloads a browser here)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                             args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: Any, name: str) -> Path:
    """Save a step's screenshot under test-output/screenshots/ for a person to look at."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@dataclass
class DemoSite:
    """A server over demo data (two patients at two hospitals) with the demo logins."""

    server: Server
    logins: dict[str, str]  # username -> password
    truth: dict[str, Any]


def log_in(context: Any, site: DemoSite, username: str) -> Any:
    """A page of ``context`` signed in through the real login form."""
    page = context.new_page()
    page.goto(f"{site.server.url}/login")
    page.fill("#username", username)
    page.fill("#password", site.logins[username])
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return page


def demo_data(tmp_path_factory: pytest.TempPathFactory, into: Path, *, patients: int = 2,
              images_only: bool = False) -> str:
    """`cloudfilm demo --slices 80` data on SQLite in ``into``; returns its database URL.

    The demo takes half a minute or more (it synthesises CTs, stores them and measures
    their nodules), so one run of the suite builds each variant once, shared by the
    xdist workers under a lock, and every caller gets its own copy of the directory:
    the index is one SQLite file and blob keys are relative, so a copy is an independent
    site. `tests/test_demo_cli.py` still runs the command itself on both databases.
    """
    import fcntl
    import shutil

    variant = f"demo-{patients}p{'-images' if images_only else ''}"
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # one temporary root for every worker of this run
    built = shared / "demo-cache" / variant
    built.parent.mkdir(parents=True, exist_ok=True)
    with open(shared / "demo-cache" / f"{variant}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "demo-truth.json").is_file():
            shutil.rmtree(built, ignore_errors=True)
            url, _ = database_url_for("sqlite", built)
            made = run_cli(["demo", "--data", str(built), "--patients", str(patients),
                            "--slices", "80"] + (["--images-only"] if images_only else []), url)
            assert made.returncode == 0, made.stdout + made.stderr
    shutil.copytree(built, into)
    return database_url_for("sqlite", into)[0]


@contextmanager
def running_demo_site(tmp_path_factory: pytest.TempPathFactory,
                      extra_env: dict[str, str] | None = None, *,
                      images_only: bool = False) -> Iterator[DemoSite]:
    """`cloudfilm demo` (2 patients, 80 slices; reports and measured nodules unless
    ``images_only``) + demo logins, served on SQLite."""
    import json

    data_dir = tmp_path_factory.mktemp("demo-site") / "data"
    url = demo_data(tmp_path_factory, data_dir, images_only=images_only)
    shown = run_cli(["demo-logins", "--data", str(data_dir)], url)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    logins = {parts[1]: parts[2] for line in shown.stdout.splitlines()
              if len(parts := line.split()) == 3 and parts[1].startswith("demo-")}
    truth = json.loads((data_dir / "demo-truth.json").read_text())
    server = Server(data_dir, url, extra_env=dict(extra_env or {})).start()
    try:
        yield DemoSite(server, logins, truth)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    """SQLite only: the browser tests exercise pages, not the database."""
    with running_demo_site(tmp_path_factory) as site:
        yield site
