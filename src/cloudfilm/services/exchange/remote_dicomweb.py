"""DICOMweb client toward another archive (httpx): QIDO-RS searches, WADO-RS retrieves and
STOW-RS stores (an AI service's input, issue 15).

Retrieved instances are asked for as stored (``transfer-syntax=*``, PS3.18 §8.7.3.5.2)
and streamed part by part into the blob store's staging area while hashed, so a large
multi-frame instance never sits in memory.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from cloudfilm.domain.nodes import Node
from cloudfilm.services.archive.multipart_stream import MalformedMultipart, StagingReceiver
from cloudfilm.services.exchange.remote_dimse import Outgoing
from cloudfilm.services.exchange.remote_types import (
    InstanceResult,
    RemoteError,
    RemoteInstance,
    RemoteStudy,
    RemoteUnreachable,
    StudyQuery,
)
from cloudfilm.storage.blobs import BlobStore, StagedBlob

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
DICOM_JSON = "application/dicom+json"
Params = list[tuple[str, str | int | float | bool | None]]
STUDY_FIELDS = ("StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
                "PatientName", "PatientID", "StudyDate")
TAGS = {"StudyInstanceUID": "0020000D", "SeriesInstanceUID": "0020000E",
        "SOPInstanceUID": "00080018", "SOPClassUID": "00080016", "StudyDate": "00080020",
        "PatientID": "00100020", "PatientName": "00100010", "ModalitiesInStudy": "00080061",
        "StudyDescription": "00081030", "NumberOfStudyRelatedInstances": "00201208"}


def _values(item: dict[str, Any], keyword: str) -> list[Any]:
    return list(item.get(TAGS[keyword], {}).get("Value", []) or [])


def _first(item: dict[str, Any], keyword: str) -> str:
    values = _values(item, keyword)
    if not values or values[0] is None:
        return ""
    value = values[0]
    if isinstance(value, dict):  # PN: {"Alphabetic": ...} (PS3.18 §F.2.2)
        return str(value.get("Alphabetic", ""))
    return str(value)


def _study(item: dict[str, Any]) -> RemoteStudy:
    count = _first(item, "NumberOfStudyRelatedInstances")
    return RemoteStudy(study_uid=_first(item, "StudyInstanceUID"),
                       study_date=_first(item, "StudyDate"), patient_id=_first(item, "PatientID"),
                       patient_name=_first(item, "PatientName"),
                       modalities=tuple(str(v) for v in _values(item, "ModalitiesInStudy") if v),
                       description=_first(item, "StudyDescription"),
                       number_of_instances=int(count) if count.isdigit() else None)


def _boundary(content_type: str) -> str | None:
    for param in content_type.split(";")[1:]:
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "boundary":
            return value.strip().strip('"')
    return None


class DicomWebClient:
    """One remote DICOMweb service; every request bounded by ``timeout`` seconds."""

    def __init__(self, node: Node, timeout: float) -> None:
        if not node.dicomweb_url:
            raise RemoteError(f"node {node.name} has no DICOMweb URL (see 'cloudfilm node add "
                              "--dicomweb')")
        self.root = node.dicomweb_url.rstrip("/")
        self.timeout = timeout
        self.where = f"{node.name} ({self.root})"
        self.http = httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=True)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> DicomWebClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _transport_error(self, exc: httpx.HTTPError) -> RemoteError:
        if isinstance(exc, httpx.TimeoutException):
            return RemoteUnreachable(f"{self.where}: no answer within {self.timeout:g} s "
                               "(CLOUDFILM_REMOTE_TIMEOUT)")
        if isinstance(exc, httpx.TransportError):
            return RemoteUnreachable(f"cannot reach {self.where}: {str(exc) or type(exc).__name__}")
        return RemoteError(f"{self.where}: {str(exc) or type(exc).__name__}")

    def _search(self, path: str, params: Params) -> list[dict[str, Any]]:
        """One QIDO-RS request (PS3.18 §10.6); 204 means no match."""
        try:
            response = self.http.get(self.root + path, params=params,
                                     headers={"accept": DICOM_JSON})
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code == 204:
            return []
        if response.status_code != 200:
            raise RemoteError(f"{self.where}: GET {path} answered HTTP {response.status_code}: "
                              f"{response.text[:200]}")
        return list(response.json())

    def find_studies(self, query: StudyQuery) -> list[RemoteStudy]:
        """QIDO-RS study search; the same matching rules as C-FIND (PS3.18 §8.3.4)."""
        params: Params = [("includefield", f) for f in STUDY_FIELDS]
        for key, value in (("PatientID", query.patient_id), ("StudyDate", query.study_date),
                           ("ModalitiesInStudy", query.modality)):
            if value:
                params.append((key, value))
        return [_study(item) for item in self._search("/studies", params)]

    def list_instances(self, study_uid: str) -> list[RemoteInstance]:
        """Every instance of the study: QIDO-RS /studies/{study}/instances."""
        items = self._search(f"/studies/{study_uid}/instances", [])
        instances = [RemoteInstance(study_uid, _first(i, "SeriesInstanceUID"),
                                    _first(i, "SOPInstanceUID"), _first(i, "SOPClassUID"))
                     for i in items]
        return [i for i in instances if i.sop_uid and i.series_uid]

    def fetch_instance(self, item: RemoteInstance, blobs: BlobStore) -> list[StagedBlob]:
        """WADO-RS one instance as stored (PS3.18 §10.4.1.1.1), streamed into staging."""
        path = f"/studies/{item.study_uid}/series/{item.series_uid}/instances/{item.sop_uid}"
        try:
            headers = {"accept": AS_STORED}
            with self.http.stream("GET", self.root + path, headers=headers) as response:
                if response.status_code != 200:
                    response.read()
                    raise RemoteError(f"HTTP {response.status_code}: {response.text[:200]}")
                return self._stage_body(response, blobs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    def store(self, items: Sequence[Outgoing]) -> list[InstanceResult]:
        """STOW-RS the instances as stored in one streamed multipart/related request
        (PS3.18 §10.5); each one's result from the response's Failed SOP Sequence (PS3.18
        Table 10.5.3-2): 200 all stored, 202 some failed, 409 none stored."""
        boundary = secrets.token_hex(16)
        headers = {"content-type": f'multipart/related; type="application/dicom"; '
                                   f"boundary={boundary}", "accept": DICOM_JSON}
        try:
            response = self.http.post(self.root + "/studies", headers=headers,
                                      content=_stow_body(items, boundary))
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code not in (200, 202, 409):
            raise RemoteError(f"{self.where}: STOW-RS answered HTTP {response.status_code}: "
                              f"{response.text[:200]}")
        failed = _failed_sops(response)
        if response.status_code == 409 and not failed:
            failed = {item.sop_uid: "refused (HTTP 409)" for item in items}
        return [InstanceResult(item.sop_uid, item.sop_uid not in failed,
                               failed.get(item.sop_uid, "stored")) for item in items]

    def _stage_body(self, response: httpx.Response, blobs: BlobStore) -> list[StagedBlob]:
        content_type = response.headers.get("content-type", "")
        boundary = _boundary(content_type)
        if content_type.lower().startswith("application/dicom") or boundary is None:
            if not content_type.lower().startswith("application/dicom"):
                raise RemoteError(f"unexpected response type {content_type!r}")
            return [blobs.stage_chunks(response.iter_bytes())]
        try:
            receiver = StagingReceiver(boundary, "application/dicom", None, blobs,
                                       what="multipart response")
        except MalformedMultipart as exc:  # e.g. a boundary RFC 2046 does not allow
            raise RemoteError(str(exc)) from exc
        try:
            for chunk in response.iter_bytes():
                receiver.feed(chunk)
            parts = receiver.received()
        except BaseException as exc:
            receiver.abort()
            if isinstance(exc, MalformedMultipart):
                raise RemoteError(str(exc)) from exc
            raise
        return [blobs.seal(p.staged) for p in parts if p.path is not None]


def _stow_body(items: Sequence[Outgoing], boundary: str) -> Iterator[bytes]:
    """The parts, each file read in 1 MiB chunks: a series never sits in memory."""
    for item in items:
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode("ascii")
        with item.open() as stream:
            while chunk := stream.read(1 << 20):
                yield chunk
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("ascii")


def _failed_sops(response: httpx.Response) -> dict[str, str]:
    """SOP Instance UID -> "status 0xNNNN" of each failed item of a STOW-RS response."""
    try:
        body = response.json()
    except ValueError:
        return {}
    failed: dict[str, str] = {}
    items = body.get("00081198", {}).get("Value", []) if isinstance(body, dict) else []
    for item in items:
        uid = (item.get("00081155", {}).get("Value") or [""])[0]
        code = (item.get("00081197", {}).get("Value") or [0])[0]
        if uid:
            failed[str(uid)] = f"status 0x{int(code):04X}"
    return failed
