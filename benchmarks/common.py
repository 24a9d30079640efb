"""Shared helpers: statistics, free ports, multipart bodies, curl as a client, result rows."""

from __future__ import annotations

import math
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
DICOM_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAME_ACCEPT = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'
JSON_ACCEPT = "application/dicom+json"
MB = 1_000_000


# -- statistics -------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), like numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p95(values: Sequence[float]) -> float:
    return percentile(values, 95)


def p5(values: Sequence[float]) -> float:
    return percentile(values, 5)


# -- processes and ports ---------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail(log)}")
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not listen on {port} within {timeout} s:\n{tail(log)}")


def stop_process(process: subprocess.Popen | None, timeout: float = 30) -> None:
    """SIGTERM the one process we started, SIGKILL if it does not go."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def make_tmpdir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f"cfbench-{prefix}-"))


def remove_tree(path: Path, background: bool = False) -> None:
    """Delete a scratch directory; ``background`` hands a big one (100k files, where ext4 with
    ``discard`` takes minutes) to a detached ``rm -rf`` so the results are not held up."""
    if background and path.exists():
        subprocess.Popen(["rm", "-rf", str(path)], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return
    shutil.rmtree(path, ignore_errors=True)


class LoadMonitor:
    """Samples the 1-minute load average every few seconds while a benchmark runs."""

    def __init__(self, every: float = 5.0) -> None:
        import threading

        self.samples: list[float] = [os.getloadavg()[0]]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)
        self._thread.start()

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.samples.append(os.getloadavg()[0])

    def stop(self) -> str:
        self._stop.set()
        self._thread.join()
        self.samples.append(os.getloadavg()[0])
        return (f"mean {sum(self.samples) / len(self.samples):.1f}, max {max(self.samples):.1f} "
                f"(the benchmark's own servers and client account for ~1–2)")


def drop_page_cache() -> bool:
    """Write back dirty pages and drop the page cache (root only); False when not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return True
    except OSError:
        return False


# -- multipart ---------------------------------------------------------------
def multipart_body(parts: Iterable[bytes], part_type: str = "application/dicom") -> tuple[bytes, str]:
    """One multipart/related body and its Content-Type header."""
    boundary = secrets.token_hex(16)
    head = f"--{boundary}\r\nContent-Type: {part_type}\r\n\r\n".encode()
    chunks: list[bytes] = []
    for part in parts:
        chunks += [head, part, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="{part_type}"; boundary={boundary}'


# -- curl as the client ------------------------------------------------------
@dataclass
class Transfer:
    status: int
    size: int
    seconds: float


_CURL_FORMAT = "%{http_code} %{size_download} %{time_total}\\n"


def curl_sequential(urls: Sequence[str], accept: str, timeout: float = 600,
                    headers: Mapping[str, str] | None = None) -> list[Transfer]:
    """GET each URL in order on one kept-alive connection, discarding bodies.

    curl's own per-transfer ``time_total`` is the client-side wall time of that
    request; reading and throwing the bytes away in C keeps the client from being
    the bottleneck. ``headers`` (e.g. a server's ``auth_headers``) go into the config
    curl reads from stdin, so a bearer token never shows on a command line.
    """
    if not urls:
        return []
    config = "".join(f'header = "{k}: {v}"\n' for k, v in (headers or {}).items())
    config += "".join(f'url = "{u}"\noutput = "/dev/null"\n' for u in urls)
    proc = subprocess.run(
        ["curl", "-s", "-S", "--no-progress-meter", "-H", f"Accept: {accept}",
         "-w", _CURL_FORMAT, "-K", "-"],
        input=config.encode(), capture_output=True, timeout=timeout, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"curl failed ({proc.returncode}): {proc.stderr.decode(errors='replace')}")
    out = []
    for line in proc.stdout.decode().splitlines():
        code, size, seconds = line.split()
        out.append(Transfer(int(code), int(size), float(seconds)))
    if len(out) != len(urls):
        raise RuntimeError(f"curl reported {len(out)} transfers for {len(urls)} URLs")
    return out


def check_ok(transfers: Sequence[Transfer], what: str) -> None:
    bad = [t.status for t in transfers if t.status != 200]
    if bad:
        hint = " (not authenticated: does the request carry the server's auth_headers?)" \
            if bad[0] in (401, 403) else ""
        raise RuntimeError(f"{what}: {len(bad)} of {len(transfers)} requests failed "
                           f"(HTTP {bad[0]}){hint}")


# -- results -------------------------------------------------------------------
@dataclass
class Row:
    """One line of the results table."""

    benchmark: str
    measure: str
    unit: str
    cloudfilm: float
    orthanc: float | None
    ratio: float | None  # as the target is phrased (see ratio_label)
    ratio_label: str
    target: str
    met: bool | None
    detail: dict[str, object] = field(default_factory=dict)
    note: str = ""
    cloudfilm_tail: float | None = None  # p95 of a time, p5 of a rate (the slow tail)
    orthanc_tail: float | None = None
    tail_label: str = "p95"
    samples: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class Context:
    """What every benchmark gets: run mode, scratch space and the database choice."""

    quick: bool
    database: str  # "sqlite" or "postgresql"
    postgres_url: str
    profile_dir: Path | None = None
    log: list[str] = field(default_factory=list)
    server_env: dict[str, str] = field(default_factory=dict)  # e.g. an S3 blob store's URL
    blob: str = "file"  # where cloudfilm keeps blobs: "file" or "s3"
    s3: Any = None  # the S3Peer (benchmarks/s3_peer.py) when blob == "s3"

    def say(self, message: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        line = f"[{stamp}] {message}"
        print(line, flush=True)
        self.log.append(line)


# -- machine ----------------------------------------------------------------------
def machine_info() -> dict[str, str]:
    info = {
        "nproc": str(os.cpu_count()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
        info["cpu"] = cpu.group(1).strip() if cpu else "?"
        mem = re.search(r"MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text())
        info["ram"] = f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "?"
    except OSError:
        pass
    try:
        out = subprocess.run(["/usr/sbin/Orthanc", "--version"], capture_output=True, text=True,
                             timeout=10).stdout
        info["orthanc"] = out.splitlines()[0].split()[-1]
    except (OSError, IndexError, subprocess.SubprocessError):
        info["orthanc"] = "?"
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "orthanc-dicomweb"],
                             capture_output=True, text=True, timeout=10).stdout
        info["dicomweb_plugin"] = out.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        info["dicomweb_plugin"] = "?"
    try:
        out = subprocess.run(["curl", "--version"], capture_output=True, text=True, timeout=10).stdout
        info["curl"] = out.split()[1]
    except (OSError, IndexError, subprocess.SubprocessError):
        info["curl"] = "?"
    try:
        fs = subprocess.run(["df", "-T", tempfile.gettempdir()], capture_output=True, text=True,
                            timeout=10).stdout.splitlines()[-1].split()
        info["tmp_fs"] = f"{fs[1]} ({fs[0]})"
    except (OSError, IndexError, subprocess.SubprocessError):
        info["tmp_fs"] = "?"
    return info


# -- STOW-RS as the client ---------------------------------------------------------
def stow_post(client, url: str, body: bytes, content_type: str, expected: int,
              headers: Mapping[str, str] | None = None) -> float:
    """POST one STOW-RS request; returns client-side wall seconds; raises unless all stored.

    ``headers``: the target server's ``auth_headers`` (cloudfilm's bearer token)."""
    started = time.perf_counter()
    response = client.post(url, content=body, headers={
        "Content-Type": content_type, "Accept": JSON_ACCEPT, "Accept-Encoding": "identity",
        **(headers or {})})
    seconds = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"STOW to {url} answered {response.status_code}: {response.text[:500]}")
    stored = len(response.json().get("00081199", {}).get("Value", []))
    if stored != expected:
        raise RuntimeError(f"STOW to {url} stored {stored} of {expected} instances: "
                           f"{response.text[:500]}")
    return seconds
