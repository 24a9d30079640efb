"""Blobs in any S3-compatible object store (AWS S3, MinIO, Ceph RGW, Alibaba OSS), via boto3.

``CLOUDFILM_BLOB_URL=s3://bucket/prefix?endpoint_url=http://host:9000`` plus the standard
AWS credential variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``; boto3's own chain, so instance roles work too). Optional query
parameters: ``region``, ``addressing_style`` (``path``, the default with an endpoint,
or ``virtual``, which Alibaba OSS requires) and ``verify_etag=false`` for stores whose
ETag is not the MD5 of the bytes (SSE-KMS, SSE-C).

Durability: staging stays local (storage/staging.py) and `place` uploads before any
index row names the object, returning only once the store confirmed it (``PutObject``
or ``CompleteMultipartUpload`` answered). Every upload, and every part of a multipart
upload (objects over 8 MiB), carries its Content-MD5, which the store checks; the
answer's ETag is compared with our own MD5, and the bytes sent are hashed again and
compared with the SHA-256 taken when they arrived. Keys are never rewritten: each write
gets ``<blob_key_for(sop)>.<staging token>``, so an upload that loses the race to the
index, or that a crash interrupts, is an orphan no row names, which recovery deletes
(the staged file names it) and ``cloudfilm check`` reports. Frames and bulk data are
ranged GETs.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from cloudfilm.config import SettingError
from cloudfilm.storage.blobs import BlobStoreError, blob_key_for
from cloudfilm.storage.read_cache import ReadCache
from cloudfilm.storage.staging import (
    CHUNK,
    FILE_MODE,
    StagedBlob,
    StagingArea,
    fsync_path,
    staging_token,
    trashed_key,
)

log = logging.getLogger(__name__)
PART_SIZE = 8 << 20  # objects above this go up in parts (S3 allows 5 MiB .. 5 GiB each)
MAX_PARTS = 10_000
READ_BUFFER = 1 << 20  # one ranged GET fills this much of a stream (a CT instance is ~0.5 MiB)
DELETE_BATCH = 1000  # DeleteObjects takes at most 1000 keys
_MISSING = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Location:
    """What ``s3://bucket/prefix?…`` names."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    addressing_style: str = "auto"
    verify_etag: bool = True

    @classmethod
    def parse(cls, url: str) -> S3Location:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        if "@" in parts.netloc:  # never echoed: it may hold a secret
            raise SettingError("CLOUDFILM_BLOB_URL: credentials do not go in the URL; set "
                               "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        if parts.scheme != "s3" or not parts.netloc:
            raise SettingError(f"CLOUDFILM_BLOB_URL={url!r}: use s3://bucket/prefix")
        unknown = sorted(set(query) - {"endpoint_url", "region", "addressing_style", "verify_etag"})
        if unknown:
            raise SettingError(f"CLOUDFILM_BLOB_URL: unknown parameter(s) {', '.join(unknown)}; "
                               "use endpoint_url, region, addressing_style or verify_etag")
        endpoint = query.get("endpoint_url") or None
        style = query.get("addressing_style") or ("path" if endpoint else "auto")
        if style not in ("path", "virtual", "auto"):
            raise SettingError("CLOUDFILM_BLOB_URL: addressing_style is path, virtual or auto")
        return cls(parts.netloc, parts.path.strip("/"), endpoint, query.get("region") or None,
                   style, query.get("verify_etag", "true").lower() not in ("false", "0", "no"))

    def __str__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"


def s3_client(location: S3Location) -> Any:
    """A thread-safe client. Checksums are sent only where we ask (Content-MD5): boto3's
    default CRC trailers are refused by several S3-compatible stores."""
    config = Config(s3={"addressing_style": location.addressing_style},
                    retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10, read_timeout=60, max_pool_connections=32,
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required")
    session = boto3.session.Session()  # credentials and region: boto3's own chain (AWS_*)
    region = location.region or session.region_name or (
        "us-east-1" if location.endpoint_url else None)
    return session.client("s3", endpoint_url=location.endpoint_url, region_name=region,
                          config=config)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def _etag(answer: dict[str, Any]) -> str:
    return str(answer.get("ETag", "")).strip('"').lower()


class S3BlobStore(StagingArea):
    """Blobs as objects under ``<prefix>/`` of one bucket; staging, trash and the read
    cache on the local data directory."""

    def __init__(self, location: S3Location, scratch: Path, *, cache_bytes: int = 0,
                 client: Any = None) -> None:
        super().__init__(scratch)
        self.location = location
        self.client = client or s3_client(location)
        self.cache = ReadCache(scratch / "blob-cache", cache_bytes) if cache_bytes > 0 else None
        self._reach()

    def _reach(self) -> None:
        """Fail at start-up, with the reason, when the bucket cannot be used."""
        try:
            self.client.head_bucket(Bucket=self.location.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise SettingError(f"CLOUDFILM_BLOB_URL: cannot use bucket {self.location}: "
                               f"{exc}") from exc

    def _name(self, key: str) -> str:
        return f"{self.location.prefix}/{key}" if self.location.prefix else key

    def _call(self, what: str, operation: Callable[..., Any], **kwargs: Any) -> Any:
        try:
            return operation(Bucket=self.location.bucket, **kwargs)
        except ClientError as exc:
            if _code(exc) in _MISSING and "Key" in kwargs:
                raise FileNotFoundError(f"blob {kwargs['Key']} is not in {self.location}") from exc
            raise BlobStoreError(f"{what} failed on {self.location}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreError(f"{what} failed on {self.location}: {exc}") from exc

    # -- publishing --------------------------------------------------------
    def key_for(self, staged: StagedBlob, sop_instance_uid: str) -> str:
        """A key of this write alone (63 characters, the index column holds 64)."""
        return f"{blob_key_for(sop_instance_uid)}.{staging_token(staged.path)[:16]}"

    def place(self, staged: StagedBlob, sop_instance_uid: str) -> StagedBlob:
        """Upload now; returns once the store confirmed the write (`BlobStoreError` if not)."""
        key = self.key_for(staged, sop_instance_uid)
        self._upload(staged, key)
        return replace(staged, key=key)

    def commit(self, staged: StagedBlob, key: str) -> None:
        """`place` already uploaded it; a staged file recovery found is uploaded only if
        its object is missing (an object once confirmed is never overwritten)."""
        if staged.key != key and not self.exists(key):
            self._upload(staged, key)
        self.drop_staged(staged)

    def discard(self, staged: StagedBlob) -> None:
        """Drop staging and the object `place` wrote under this write's own key, with any
        multipart upload a crash left unfinished."""
        if staged.key:
            try:
                self._call("DeleteObject", self.client.delete_object, Key=self._name(staged.key))
                if staged.size > PART_SIZE:
                    self._abort_uploads(self._name(staged.key))
            except BlobStoreError as exc:  # the staged file stays: recovery deletes it later
                log.warning("could not delete unindexed %s: %s", staged.key, exc)
                return
        self.drop_staged(staged)

    def _abort_uploads(self, name: str) -> None:
        answer = self._call("ListMultipartUploads", self.client.list_multipart_uploads,
                            Prefix=name)
        for upload in answer.get("Uploads", []):
            if upload.get("Key") == name:
                self._call("AbortMultipartUpload", self.client.abort_multipart_upload,
                           Key=name, UploadId=upload["UploadId"])

    def _upload(self, staged: StagedBlob, key: str) -> None:
        """Write ``key`` and verify it; an object that fails verification is deleted."""
        with open(staged.path, "rb") as source:
            try:
                if staged.size <= PART_SIZE:
                    self._put(source, staged, key)
                else:
                    self._put_in_parts(source, staged, key)
            except BlobStoreError:
                try:
                    self.client.delete_object(Bucket=self.location.bucket, Key=self._name(key))
                except (ClientError, BotoCoreError):
                    log.warning("could not delete %s after a failed upload", key)
                raise

    def _put(self, source: BinaryIO, staged: StagedBlob, key: str) -> None:
        data = source.read()
        self._check_sha256(hashlib.sha256(data).hexdigest(), staged, key)
        md5 = hashlib.md5(data)
        answer = self._call("PutObject", self.client.put_object, Key=self._name(key), Body=data,
                            ContentMD5=_b64(md5.digest()), ContentLength=len(data),
                            ContentType="application/dicom", Metadata={"sha256": staged.sha256})
        self._check_etag(answer, md5.hexdigest(), key)

    def _put_in_parts(self, source: BinaryIO, staged: StagedBlob, key: str) -> None:
        name = self._name(key)
        upload = self._call("CreateMultipartUpload", self.client.create_multipart_upload,
                            Key=name, ContentType="application/dicom",
                            Metadata={"sha256": staged.sha256})["UploadId"]
        try:
            parts, digests = self._send_parts(source, staged, key, upload)
            combined = hashlib.md5(b"".join(digests)).hexdigest() + f"-{len(digests)}"
            answer = self._call("CompleteMultipartUpload", self.client.complete_multipart_upload,
                                Key=name, UploadId=upload, MultipartUpload={"Parts": parts})
            self._check_etag(answer, combined, key)
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.location.bucket, Key=name,
                                                   UploadId=upload)
            except (ClientError, BotoCoreError):
                log.warning("could not abort the multipart upload of %s", key)
            raise

    def _send_parts(self, source: BinaryIO, staged: StagedBlob, key: str,
                    upload: str) -> tuple[list[dict[str, Any]], list[bytes]]:
        size = max(PART_SIZE, -(-staged.size // MAX_PARTS))
        whole = hashlib.sha256()
        parts: list[dict[str, Any]] = []
        digests: list[bytes] = []
        while data := source.read(size):
            whole.update(data)
            md5 = hashlib.md5(data)
            number = len(parts) + 1
            answer = self._call("UploadPart", self.client.upload_part, Key=self._name(key),
                                UploadId=upload, PartNumber=number, Body=data,
                                ContentMD5=_b64(md5.digest()), ContentLength=len(data))
            self._check_etag(answer, md5.hexdigest(), f"{key} part {number}")
            parts.append({"ETag": answer["ETag"], "PartNumber": number})
            digests.append(md5.digest())
        self._check_sha256(whole.hexdigest(), staged, key)
        return parts, digests

    def _check_sha256(self, sent: str, staged: StagedBlob, key: str) -> None:
        if sent != staged.sha256:
            raise BlobStoreError(f"staged bytes of {key} changed on local disk since they "
                                 "arrived (SHA-256 differs); not stored")

    def _check_etag(self, answer: dict[str, Any], expected: str, what: str) -> None:
        if self.location.verify_etag and _etag(answer) != expected:
            raise BlobStoreError(f"{self.location} stored other bytes than were sent for "
                                 f"{what} (ETag {_etag(answer)}, MD5 {expected})")

    # -- reading -----------------------------------------------------------
    def exists(self, key: str) -> bool:
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._call("HeadObject", self.client.head_object,
                              Key=self._name(key))["ContentLength"])

    def written_at(self, key: str) -> datetime:
        written = self._call("HeadObject", self.client.head_object,
                             Key=self._name(key))["LastModified"]
        return cast(datetime, written)

    def _cached(self, name: str) -> BinaryIO | None:
        path = self.cache.get(name) if self.cache is not None else None
        try:
            return open(path, "rb") if path is not None else None
        except FileNotFoundError:  # evicted by another process sharing the data directory
            return None

    def local_file(self, key: str) -> BinaryIO | None:
        return None  # ranged GETs (iter_bytes); a cached copy may be evicted while it is sent

    def open(self, key: str) -> BinaryIO:
        """A seekable stream whose reads are ranged GETs (or the cached copy)."""
        if self.cache is not None:
            cached = self._cached(ReadCache.object_name(key)) or self._fill(key)
            if cached is not None:
                return cached
        stream = RangedObject(lambda offset, length: self._get_range(key, offset, length),
                              lambda: self.size(key))
        return cast(BinaryIO, stream)

    def _fill(self, key: str) -> BinaryIO | None:
        """Copy a small object whole into the cache, then read it there."""
        assert self.cache is not None
        if not self.cache.fits(self.size(key)):
            return None
        with self.cache.writing(ReadCache.object_name(key)) as fill:
            for chunk in self._stream(key, 4 * CHUNK):
                fill.write(chunk)
        return self._cached(ReadCache.object_name(key))

    def read_bytes(self, key: str) -> bytes:
        return b"".join(self.iter_bytes(key))

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """One ranged GET (``Range: bytes=offset-end``), unless the cache holds the bytes."""
        if length <= 0:
            return b""
        whole = self._cached(ReadCache.object_name(key))
        if whole is not None:
            with whole:
                whole.seek(offset)
                return whole.read(length)
        name = ReadCache.range_name(key, offset, length)
        piece = self._cached(name)
        if piece is not None:
            with piece:
                return piece.read()
        data, _ = self._get_range(key, offset, length)
        if self.cache is not None:
            self.cache.put(name, data)
        return data

    def _get_range(self, key: str, offset: int, length: int) -> tuple[bytes, int | None]:
        """The bytes and the object's size; past the end, nothing."""
        try:
            answer = self.client.get_object(Bucket=self.location.bucket, Key=self._name(key),
                                            Range=f"bytes={offset}-{offset + length - 1}")
        except ClientError as exc:
            if _code(exc) == "InvalidRange":
                return b"", None
            if _code(exc) in _MISSING:
                raise FileNotFoundError(f"blob {key} is not in {self.location}") from exc
            raise BlobStoreError(f"GetObject failed on {self.location}: {exc}") from exc
        except BotoCoreError as exc:
            raise BlobStoreError(f"GetObject failed on {self.location}: {exc}") from exc
        body = answer["Body"]  # a StreamingBody: it checks the length it was promised
        try:
            data = body.read()
        finally:
            body.close()
        total = re.search(r"/(\d+)$", str(answer.get("ContentRange", "")))
        return data, int(total.group(1)) if total else None

    def iter_bytes(self, key: str, chunk: int = 4 * CHUNK) -> Iterator[bytes]:
        """The object as one streamed GET (through the cache when it is small enough)."""
        cached = self._cached(ReadCache.object_name(key))
        if cached is None and self.cache is not None:
            cached = self._fill(key)
        if cached is not None:
            with cached:
                yield from iter(lambda: cached.read(chunk), b"")
            return
        yield from self._stream(key, chunk)

    def _stream(self, key: str, chunk: int) -> Iterator[bytes]:
        body = self._call("GetObject", self.client.get_object, Key=self._name(key))["Body"]
        try:
            yield from body.iter_chunks(chunk)
        finally:
            body.close()

    def listing(self) -> Iterator[tuple[str, int]]:
        prefix = f"{self.location.prefix}/" if self.location.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(prefix):], int(item["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise BlobStoreError(f"ListObjectsV2 failed on {self.location}: {exc}") from exc

    # -- deletion ----------------------------------------------------------
    def move_to_trash(self, keys: list[str]) -> None:
        """Objects stay where they are; a local marker per key records the pending delete,
        so recovery deletes them (the rows went) or forgets the marker (they did not)."""
        for key in keys:
            os.close(os.open(self.trash_entry(key), os.O_WRONLY | os.O_CREAT, FILE_MODE))
        if keys:
            fsync_path(self.trash)

    def delete(self, keys: list[str]) -> None:
        """Second half of a delete, once no row names the keys."""
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            answer = self._call("DeleteObjects", self.client.delete_objects, Delete={
                "Objects": [{"Key": self._name(k)} for k in batch], "Quiet": True})
            if answer.get("Errors"):
                raise BlobStoreError(f"DeleteObjects failed on {self.location}: "
                                     f"{answer['Errors'][0]}")
            for key in batch:
                self.trash_entry(key).unlink(missing_ok=True)

    def trashed(self) -> list[tuple[Path, str]]:
        return self.trash_entries()

    def restore(self, trashed: Path, key: str) -> None:
        trashed.unlink(missing_ok=True)  # the object was never removed

    def purge(self, trashed: Path) -> None:
        self._call("DeleteObject", self.client.delete_object, Key=self._name(trashed_key(trashed)))
        trashed.unlink(missing_ok=True)


class RangedObject(io.RawIOBase):
    """A read-only, seekable view of an object: each read the last block does not cover
    is one ranged GET of at least ``read_ahead`` bytes.

    ``fetch(offset, length)`` returns bytes and, when the store said, the object's size;
    ``measure()`` is asked only when a caller seeks from the end or reads to the end. Not
    an ``io.BufferedReader``, which pydicom would take for a named file to reopen.
    """

    def __init__(self, fetch: Callable[[int, int], tuple[bytes, int | None]],
                 measure: Callable[[], int], read_ahead: int = READ_BUFFER) -> None:
        super().__init__()
        self._fetch, self._measure, self._read_ahead = fetch, measure, read_ahead
        self._position = 0
        self._size: int | None = None
        self._block, self._block_start = b"", 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def _length(self) -> int:
        if self._size is None:
            self._size = self._measure()
        return self._size

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            offset += self._length()
        elif whence == io.SEEK_CUR:
            offset += self._position
        if offset < 0:
            raise ValueError("negative seek position")
        self._position = offset
        return offset

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            size = max(self._length() - self._position, 0)
        pieces = []
        while size > 0 and (piece := self._read_some(size)):
            pieces.append(piece)
            size -= len(piece)
        return b"".join(pieces)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[:len(data)] = data
        return len(data)

    def _read_some(self, wanted: int) -> bytes:
        if self._size is not None:
            wanted = min(wanted, self._size - self._position)
        if wanted <= 0:
            return b""
        offset = self._position - self._block_start
        if not 0 <= offset < len(self._block):
            data, size = self._fetch(self._position, max(wanted, self._read_ahead))
            if size is not None:
                self._size = size
            self._block, self._block_start, offset = data, self._position, 0
        piece = self._block[offset:offset + wanted]
        self._position += len(piece)
        return piece
