"""A real Orthanc (Debian's 1.10 + DICOMweb plugin) as "another hospital's PACS" for tests.

Each peer gets a temporary directory (JSON config, storage, index, log) and free loopback
ports for HTTP and DICOM. It knows the DICOM nodes passed as ``modalities`` (so it can
answer their C-FIND/C-GET/C-MOVE and C-MOVE or C-STORE to them) and is stopped after.

    with running_orthanc(tmp_path, {"cloudfilm": ("CLOUDFILM", "127.0.0.1", 11112)}) as peer:
        peer.upload(part10_bytes)
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"
AE_TITLE = "ORTHANC"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class OrthancPeer:
    """One private Orthanc process; ``extra_config`` overrides or adds configuration keys."""

    def __init__(self, root: Path, modalities: dict[str, tuple[str, str, int]] | None = None,
                 extra_config: dict[str, Any] | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.http_port = _free_port()
        self.dicom_port = _free_port()
        self.config_path = root / "orthanc.json"
        self.log_path = root / "orthanc.log"
        self.process: subprocess.Popen[bytes] | None = None
        config = {
            "Name": "cloudfilm-test-peer",
            "StorageDirectory": str(root / "storage"),
            "IndexDirectory": str(root / "storage"),
            "StorageCompression": False,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": AE_TITLE,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "DicomModalities": {name: list(entry) for name, entry in (modalities or {}).items()},
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "SaveJobs": False,
        }
        config.update(extra_config or {})
        self.config_path.write_text(json.dumps(config, indent=2))

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def start(self, timeout: float = 60) -> OrthancPeer:
        """Start Orthanc and wait until /system answers and the DICOMweb plugin is loaded."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([ORTHANC, str(self.config_path)], stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.root)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}:\n"
                                   + self.log_tail())
            try:
                if httpx.get(f"{self.base}/system", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        else:
            self.stop()
            raise RuntimeError(f"Orthanc did not answer /system in {timeout} s:\n{self.log_tail()}")
        if "dicom-web" not in httpx.get(f"{self.base}/plugins", timeout=5).json():
            self.stop()
            raise RuntimeError(f"the DICOMweb plugin did not load:\n{self.log_tail()}")
        return self

    def stop(self) -> None:
        """SIGTERM the process we started, SIGKILL if it does not go."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    # -- REST helpers ---------------------------------------------------------
    def upload(self, data: bytes) -> str:
        """POST /instances one Part-10 file; returns Orthanc's instance ID."""
        response = httpx.post(f"{self.base}/instances", content=data, timeout=30,
                              headers={"content-type": "application/dicom"})
        response.raise_for_status()
        answer = response.json()
        if answer.get("Status") not in ("Success", "AlreadyStored"):
            raise RuntimeError(f"Orthanc refused the instance: {answer}")
        return str(answer["ID"])

    def instances_of_study(self, study_uid: str) -> dict[str, str]:
        """SOP Instance UID -> Orthanc instance ID, by /tools/find."""
        query = {"Level": "Instance", "Query": {"StudyInstanceUID": study_uid}, "Expand": True}
        response = httpx.post(f"{self.base}/tools/find", json=query, timeout=30)
        response.raise_for_status()
        return {item["MainDicomTags"]["SOPInstanceUID"]: item["ID"] for item in response.json()}

    def file(self, instance_id: str) -> bytes:
        """The stored Part-10 file of one instance."""
        response = httpx.get(f"{self.base}/instances/{instance_id}/file", timeout=30)
        response.raise_for_status()
        return response.content

    def set_modality(self, name: str, ae_title: str, host: str, port: int) -> None:
        """Add or change a known DICOM node at run time (PUT /modalities/{name})."""
        body = {"AET": ae_title, "Host": host, "Port": port}
        httpx.put(f"{self.base}/modalities/{name}", json=body, timeout=10).raise_for_status()


@contextmanager
def running_orthanc(root: Path, modalities: dict[str, tuple[str, str, int]] | None = None,
                    extra_config: dict[str, Any] | None = None) -> Iterator[OrthancPeer]:
    """An Orthanc peer for the duration of the block (a pytest fixture body, typically)."""
    peer = OrthancPeer(root, modalities, extra_config).start()
    try:
        yield peer
    finally:
        peer.stop()
