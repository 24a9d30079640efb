"""A CLI command never touches what a running server is staging (issue 11, finding 6);
what a killed server left staged is recovered at the next start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from pydicom.uid import generate_uid

from conftest import Server, run_cli
from factory import make_instance, to_bytes

BOUNDARY = "slow-stow"


def _staged(data_dir: Path) -> list[Path]:
    return list((data_dir / "incoming").rglob("*.part"))


class SlowStow(threading.Thread):
    """POSTs a STOW body part by part; after ``pause_after`` parts it waits for ``go``."""

    def __init__(self, server: Server, parts: int, pause_after: int) -> None:
        super().__init__(daemon=True)
        self.server, self.parts, self.pause_after = server, parts, pause_after
        self.study = generate_uid()
        self.sops: list[str] = []
        self.paused, self.go = threading.Event(), threading.Event()
        self.response: httpx.Response | None = None
        self.error: Exception | None = None

    def body(self) -> Iterator[bytes]:
        for number in range(self.parts):
            if number == self.pause_after:
                self.paused.set()
                self.go.wait(120)
            ds = make_instance(study=self.study, instance_number=number, rows=512, columns=512)
            self.sops.append(ds.SOPInstanceUID)
            yield (f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                   + to_bytes(ds) + b"\r\n")
        yield f"--{BOUNDARY}--\r\n".encode()

    def run(self) -> None:
        content_type = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'
        try:
            with httpx.Client(base_url=self.server.dicomweb, headers=self.server.auth,
                              timeout=120) as http:
                self.response = http.post("/studies", content=self.body(),
                                          headers={"content-type": content_type})
        except httpx.HTTPError as exc:
            self.error = exc


def _wait_for_staged(data_dir: Path) -> list[Path]:
    deadline = time.monotonic() + 60
    while not (found := _staged(data_dir)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert found, "the server should have staged the first parts"
    return found


def test_cli_commands_beside_a_live_server_leave_its_staged_upload_alone(
        fresh_server: Server) -> None:
    fresh_server.start()
    upload = SlowStow(fresh_server, parts=12, pause_after=6)
    upload.start()
    assert upload.paused.wait(60)
    in_flight = _wait_for_staged(fresh_server.data_dir)
    data = str(fresh_server.data_dir)
    for command in (["node", "list", "--data", data], ["check", "--data", data]):
        result = run_cli(command, fresh_server.database_url)
        assert result.returncode == 0, result.stdout + result.stderr
    assert all(path.exists() for path in in_flight), "a CLI command deleted the server's staging"
    upload.go.set()
    upload.join(120)
    assert upload.error is None and upload.response is not None
    assert upload.response.status_code == 200, upload.response.text
    assert len(upload.response.json()["00081199"]["Value"]) == 12
    assert _staged(fresh_server.data_dir) == []


def test_only_a_killed_servers_staging_is_recovered_at_the_next_start(fresh_server: Server) -> None:
    fresh_server.start()
    upload = SlowStow(fresh_server, parts=4, pause_after=2)
    upload.start()
    assert upload.paused.wait(60)
    orphans = _wait_for_staged(fresh_server.data_dir)
    listed = run_cli(["node", "list", "--data", str(fresh_server.data_dir)],
                     fresh_server.database_url)
    assert listed.returncode == 0 and all(path.exists() for path in orphans), "still live"
    fresh_server.kill()
    upload.go.set()
    upload.join(120)
    assert all(path.exists() for path in orphans), "kill -9 leaves the staged parts behind"
    fresh_server.start()  # recovery: the dead server's staging is nobody's now
    assert _staged(fresh_server.data_dir) == []
    check = run_cli(["check", "--data", str(fresh_server.data_dir)], fresh_server.database_url)
    assert check.returncode == 0 and "clean" in check.stdout, check.stdout
