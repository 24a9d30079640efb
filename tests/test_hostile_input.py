"""Hostile input is answered cleanly (issue 11, findings 8 and 9): deep nesting fails
alone with a reason, an over-long multipart boundary is a 400, slow sockets are closed,
and the data directory is owner-only."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pydicom.uid import generate_uid

from conftest import Server, database_url_for, free_port, run_cli
from factory import make_instance, stow, to_bytes
from hostile import deeply_nested


def _staged(data_dir: Path) -> list[Path]:
    return list((data_dir / "incoming").rglob("*.part"))


def test_stow_of_a_500_deep_instance_fails_alone_and_the_rest_is_stored(
        server: Server, client: httpx.Client) -> None:
    study = generate_uid()
    good = [make_instance(study=study, instance_number=i) for i in (1, 2)]
    hostile = deeply_nested(500, study=study, instance_number=3)
    response = stow(client, [to_bytes(good[0]), hostile, to_bytes(good[1])])
    assert response.status_code == 202, response.text
    failed = response.json()["00081198"]["Value"]
    assert len(failed) == 1
    assert "nested deeper than" in failed[0]["00F11001"]["Value"][0]
    stored = {item["00081155"]["Value"][0] for item in response.json()["00081199"]["Value"]}
    assert stored == {ds.SOPInstanceUID for ds in good}
    for ds in good:
        url = f"/studies/{study}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}/metadata"
        assert client.get(url).status_code == 200
    assert _staged(server.data_dir) == []


def test_import_reports_the_deep_file_and_imports_the_rest(tmp_path: Path,
                                                           database_kind: str) -> None:
    folder = tmp_path / "cd"
    folder.mkdir()
    study = generate_uid()
    for i in (1, 2):
        (folder / f"good{i}.dcm").write_bytes(to_bytes(make_instance(study=study, instance_number=i)))
    (folder / "deep.dcm").write_bytes(deeply_nested(500, study=study, instance_number=3))
    data = tmp_path / "import-data"
    url, schema = database_url_for(database_kind, data)
    try:
        result = run_cli(["import", "--data", str(data), str(folder)], url)
        assert result.returncode == 1, result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert len([line for line in lines if line.startswith("stored")]) == 2, result.stdout
        failed = [line for line in lines if line.startswith("failed")]
        assert len(failed) == 1 and "deep.dcm" in failed[0] and "nested deeper than" in failed[0]
        assert _staged(data) == []
        check = run_cli(["check", "--data", str(data)], url)
        assert check.returncode == 0, check.stdout
    finally:
        if schema:
            schema.drop()


@pytest.mark.parametrize("length, status", [(70, 200), (71, 400), (300, 400)])
def test_stow_boundary_longer_than_70_characters_is_a_400(client: httpx.Client, length: int,
                                                          status: int) -> None:
    boundary = ("b" * length)
    response = stow(client, [to_bytes(make_instance())], boundary=boundary)
    assert response.status_code == status, response.text
    if status == 400:
        assert "RFC 2046" in response.text


@pytest.mark.parametrize("length", [71, 300])
def test_upload_boundary_longer_than_70_characters_is_a_400(server: Server, length: int) -> None:
    boundary = "u" * length
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.dcm\"\r\n"
            f"Content-Type: application/dicom\r\n\r\n").encode() + to_bytes(make_instance()) \
        + f"\r\n--{boundary}--\r\n".encode()
    with server.http() as http:
        response = http.post("/api/uploads", content=body,
                             headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 400, response.text
    assert _staged(server.data_dir) == []


# -- slow sockets -------------------------------------------------------------------------

TIMEOUTS = {"CLOUDFILM_HTTP_HEADER_TIMEOUT": "2", "CLOUDFILM_HTTP_BODY_TIMEOUT": "2"}


def _closed_by_server(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; socket.timeout (a failure) if it never does."""
    sock.settimeout(60)
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


@pytest.fixture
def impatient_server(fresh_server: Server) -> Server:
    fresh_server.extra_env.update(TIMEOUTS)
    return fresh_server.start()


def test_a_slowloris_request_head_is_closed_by_the_server(impatient_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
        answer = _closed_by_server(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer


def test_an_idle_connection_and_a_stalled_body_are_closed(impatient_server: Server) -> None:
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as idle:
        assert _closed_by_server(idle) == b""
    head = (f"POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {impatient_server.token}\r\n"
            "Content-Type: multipart/related; type=\"application/dicom\"; boundary=x\r\n"
            "Content-Length: 100000\r\n\r\n--x\r\nContent-Type: application/dicom\r\n\r\n")
    with socket.create_connection(("127.0.0.1", impatient_server.port)) as sock:
        sock.sendall(head.encode() + b"\0" * 1000)
        _closed_by_server(sock)
    with httpx.Client(base_url=impatient_server.url) as http:
        assert http.get("/healthz").status_code == 200  # the server itself is fine
    deadline = time.monotonic() + 30  # the handler drops the part right after the close
    while _staged(impatient_server.data_dir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _staged(impatient_server.data_dir) == []


def test_a_head_larger_than_the_limit_is_431(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        try:
            for _ in range(100):
                sock.sendall(b"X-Filler: " + b"a" * 1000 + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            answer = _closed_by_server(sock)
        except ConnectionResetError:
            answer = b"HTTP/1.1 431 (reset after the answer)"
    assert answer.startswith(b"HTTP/1.1 431"), answer


# -- modes ----------------------------------------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_fresh_data_directory_is_owner_only(fresh_server: Server, database_kind: str) -> None:
    fresh_server.start()
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth) as http:
        assert stow(http, [to_bytes(make_instance())]).status_code == 200
    data = fresh_server.data_dir
    assert _mode(data) == 0o700
    blobs = [p for p in (data / "blobs").rglob("*") if p.is_file()]
    assert blobs and all(_mode(p) == 0o600 for p in blobs)
    folders = [data / "blobs", data / "incoming", data / "trash"] + \
        [p for p in (data / "blobs").rglob("*") if p.is_dir()]
    assert all(_mode(p) == 0o700 for p in folders)
    files = [p for p in data.rglob("*") if p.is_file()]
    if database_kind == "sqlite":
        assert {"index.sqlite3", "index.sqlite3-wal"} <= {p.name for p in files}
    assert files and [p for p in files if _mode(p) != 0o600] == []


SERVE = ["serve", "--port", "0"]


def _at_least_one(whole: bool) -> str:
    return f"use {'a whole number' if whole else 'a number'} of at least 1"


@pytest.mark.parametrize(("variable", "value", "command", "reason"), [
    ("CLOUDFILM_HTTP_HEADER_TIMEOUT", "abc", SERVE, _at_least_one(False)),
    ("CLOUDFILM_HTTP_KEEPALIVE", "-3", SERVE, _at_least_one(False)),
    ("CLOUDFILM_DIMSE_MAX_PER_ADDRESS", "0", ["serve", "--port", "0", "--dimse-port", str(free_port())],
     _at_least_one(True)),
    ("CLOUDFILM_STABLE_AGE", "abc", SERVE, _at_least_one(True)),
    ("CLOUDFILM_IMPORT_MAX_FILES", "many", ["import", "."], _at_least_one(True)),
    ("CLOUDFILM_NOTIFY_INTERVAL", "often", SERVE, "use a number of at least 0.1"),
    ("CLOUDFILM_REMOTE_TIMEOUT", "0", ["node", "list"], "use a number of at least 0.1"),
    ("CLOUDFILM_SMTP_PORT", "70000", SERVE, "use a whole number from 1 to 65535"),
    ("CLOUDFILM_OVERWRITE", "maybe", SERVE, "use true or false"),
    ("CLOUDFILM_DIMSE_ALLOW", "everyone", SERVE, "use loopback, known or any"),
    ("CLOUDFILM_SYSLOG", "http://collector:514", SERVE, "use udp://host:port or tcp://host:port"),
    ("CLOUDFILM_PUBLIC_URL", "archive.example.org", SERVE,
     "use an http:// or https:// URL with a host"),
])
def test_a_bad_setting_stops_with_one_line_naming_it(tmp_path: Path, variable: str, value: str,
                                                     command: list[str], reason: str) -> None:
    env = dict(os.environ, CLOUDFILM_DATA=str(tmp_path / "data"), **{variable: value})
    env.pop("CLOUDFILM_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "cloudfilm", *command], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [f"error: {variable}={value!r}: {reason}"]


@pytest.mark.parametrize("key", ["correct horse battery staple",  # a passphrase, not a key
                                 "00" * 31,  # hex, one byte short
                                 "/etc/cloudfilm/server.key"])  # a path, not a key
def test_a_bad_secret_key_stops_serve_without_echoing_it(tmp_path: Path, key: str) -> None:
    env = dict(os.environ, CLOUDFILM_DATA=str(tmp_path / "data"), CLOUDFILM_SECRET_KEY=key)
    env.pop("CLOUDFILM_DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-m", "cloudfilm", *SERVE], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: CLOUDFILM_SECRET_KEY: use a key of at least 32 bytes written as hex or base64 "
        "(e.g. openssl rand -hex 32)"]
    assert not (tmp_path / "data").exists()  # stopped before anything was written
