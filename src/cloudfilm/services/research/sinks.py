"""Where a research export goes: a folder (CLI ``--out``), a zip in the blob store (the
API's stored exports) or a registered DICOM node (CLI ``--to``, C-STORE, PS3.4 B.2)."""

from __future__ import annotations

import io
import tempfile
import zipfile
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

from pydicom.dataset import FileDataset

from cloudfilm.services.context import Archive
from cloudfilm.services.exchange.remote_dimse import DimseClient, Outgoing
from cloudfilm.services.exchange.remote_types import no_progress
from cloudfilm.services.imaging import pixels
from cloudfilm.storage.blobs import BlobStore
from cloudfilm.storage.staging import StagedBlob, StagingWriter


class FolderSink:
    """Files under ``root`` (created; it must be empty or new, so nothing old mixes in)."""

    def __init__(self, root: Path) -> None:
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"{root} is not empty: choose a new or empty folder")
        root.mkdir(parents=True, exist_ok=True)
        self.root = root

    def _path(self, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def add_instance(self, path: str, ds: FileDataset) -> None:
        ds.save_as(self._path(path), enforce_file_format=True)

    def add_file(self, path: str, data: bytes) -> None:
        self._path(path).write_bytes(data)


class _Stream:
    """A write-only stream over the staging writer: zipfile then writes data descriptors."""

    def __init__(self, writer: StagingWriter) -> None:
        self.writer = writer

    def write(self, data: bytes, /) -> int:
        return self.writer.write(bytes(data))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class ZipSink:
    """One zip written straight into the blob store's staging area, then published under
    ``key`` (stage, seal, commit: storage/staging.py), so any node can serve it."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.writer = blobs.staging_writer()
        self.zip = zipfile.ZipFile(_Stream(self.writer), "w", zipfile.ZIP_DEFLATED,
                                   allowZip64=True)

    def add_instance(self, path: str, ds: FileDataset) -> None:
        buffer = io.BytesIO()  # pydicom seeks back to write group lengths
        ds.save_as(buffer, enforce_file_format=True)
        self.zip.writestr(path, buffer.getvalue())

    def add_file(self, path: str, data: bytes) -> None:
        self.zip.writestr(path, data)

    def publish(self, key: str) -> int:
        """Finish the zip and publish it; its size in bytes."""
        self.zip.close()
        staged: StagedBlob = self.writer.seal()
        self.blobs.commit(staged, key)
        return staged.size

    def abort(self) -> None:
        self.writer.abort()
        self.zip.fp = None  # nothing more to write: the staged file is gone


class NodeSink:
    """De-identified instances C-STOREd to a registered node (as written when it accepts
    Explicit VR Little Endian or their syntax, else converted). The CSV and manifest are
    not DICOM: they stay with the caller (the CLI prints the manifest)."""

    def __init__(self, archive: Archive, node_name: str) -> None:
        self.node = archive.nodes.get(node_name)
        self.timeout = archive.settings.remote_timeout
        self.folder = tempfile.TemporaryDirectory(prefix="cloudfilm-research-")
        self.items: list[Outgoing] = []

    def add_instance(self, path: str, ds: FileDataset) -> None:
        target = Path(self.folder.name) / f"{len(self.items):08d}.dcm"
        ds.save_as(target, enforce_file_format=True)
        self.items.append(Outgoing(partial(_open, target), str(ds.SOPInstanceUID),
                                   str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)))

    def add_file(self, path: str, data: bytes) -> None:
        pass

    def send(self, calling_ae: str = "CLOUDFILM") -> dict[str, Any]:
        try:
            results = DimseClient(self.node, calling_ae, self.timeout).store(
                self.items, pixels.to_explicit_little_endian, no_progress)
        finally:
            self.folder.cleanup()
        failed = [r for r in results if not r.ok]
        return {"node": self.node.name, "sent": len(results) - len(failed),
                "failed": len(failed), "reasons": sorted({r.detail for r in failed})}


def _open(path: Path) -> BinaryIO:
    return path.open("rb")
