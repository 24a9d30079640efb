"""``CLOUDFILM_BLOB_URL`` → a blob store.

``file:///path`` (the default is ``file://<data dir>``) keeps blobs under ``<path>/blobs``
with staging beside them, as one file system. ``s3://bucket/prefix?endpoint_url=…`` keeps
them in any S3-compatible object store (storage/s3.py); staging and the optional read
cache then live in the data directory, which is scratch.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlsplit

from cloudfilm.config import SettingError
from cloudfilm.storage.blobs import BlobStore, FileSystemBlobStore


def open_blob_store(url: str, data_dir: Path, *, cache_bytes: int = 0) -> BlobStore:
    """The store ``url`` names; one it cannot use is a `SettingError` naming the variable."""
    parts = urlsplit(url or f"file://{data_dir}")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path:
            raise SettingError(f"CLOUDFILM_BLOB_URL={url!r}: use file:///absolute/path")
        return FileSystemBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        from cloudfilm.storage.s3 import S3BlobStore, S3Location  # boto3 only when asked for

        return S3BlobStore(S3Location.parse(url), data_dir, cache_bytes=cache_bytes)
    raise SettingError(f"CLOUDFILM_BLOB_URL={url!r}: use file:///path or s3://bucket/prefix")
