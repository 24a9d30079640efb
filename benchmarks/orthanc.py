"""Start and stop a private Orthanc (Debian's 1.10 with its DICOMweb plugin) for a benchmark.

Each instance gets a temporary directory holding its JSON configuration, its
storage area and its SQLite index, and free loopback ports for HTTP and DICOM.
Everything not set here keeps Orthanc's defaults (SyncStorageArea on, so stored
files are fsynced like cloudfilm's; the DICOMweb plugin's SeriesMetadata "Full").
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx

from benchmarks.common import free_port, make_tmpdir, remove_tree, stop_process, tail, wait_for_port

ORTHANC = "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


class OrthancServer:
    name = "Orthanc"

    def __init__(self, label: str = "orthanc", extra_config: dict | None = None) -> None:
        self.root = make_tmpdir(label)
        self.storage = self.root / "storage"
        self.storage.mkdir()
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.config_path = self.root / "orthanc.json"
        self.log_path = self.root / "orthanc.log"
        self.process: subprocess.Popen | None = None
        config = {
            "Name": f"cfbench-{label}",
            "StorageDirectory": str(self.storage),
            "IndexDirectory": str(self.storage),
            "StorageCompression": False,
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": "CFBENCH",
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        config.update(extra_config or {})
        self.config_path.write_text(json.dumps(config, indent=2))

    # -- URLs --------------------------------------------------------------
    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.base}/dicom-web"

    @property
    def auth_headers(self) -> dict[str, str]:
        """None: this Orthanc runs with ``AuthenticationEnabled: false`` (loopback only)."""
        return {}

    # -- life cycle -------------------------------------------------------
    def start(self, timeout: float = 60) -> OrthancServer:
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen([ORTHANC, str(self.config_path)], stdout=log,
                                            stderr=subprocess.STDOUT, cwd=self.root)
        wait_for_port(self.http_port, self.process, timeout, self.log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/system", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"Orthanc did not answer /system:\n{tail(self.log_path)}")
        plugins = httpx.get(f"{self.base}/plugins", timeout=5).json()
        if "dicom-web" not in plugins:
            raise RuntimeError(f"the DICOMweb plugin did not load (plugins: {plugins})")
        return self

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self, background: bool = False) -> None:
        self.stop()
        remove_tree(self.root, background)

    def statistics(self) -> dict:
        return httpx.get(f"{self.base}/statistics", timeout=30).json()

    def __enter__(self) -> OrthancServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def orthanc_versions() -> dict[str, str]:
    """Versions reported by a briefly started server (Orthanc and the DICOMweb plugin)."""
    with OrthancServer("version") as server:
        system = httpx.get(f"{server.base}/system", timeout=10).json()
        plugin = httpx.get(f"{server.base}/plugins/dicom-web", timeout=10).json()
    return {"orthanc": str(system.get("Version", "?")), "dicomweb_plugin": str(plugin.get("Version", "?"))}


def storage_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
