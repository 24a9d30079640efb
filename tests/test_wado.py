"""WADO-RS, WADO-URI and DELETE against the real server, on SQLite and PostgreSQL."""

from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom.uid import generate_uid

from cloudfilm.services.archive.retention import Retention
from cloudfilm.storage.index.db import Index
from conftest import Server, run_cli
from factory import make_instance, parse_multipart, stow, to_bytes

AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
FRAMES_AS_STORED = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@pytest.fixture(scope="module")
def series(server: Server) -> dict:
    """A 4-instance series (one of them multi-frame) with nested and bulk attributes."""
    study, series_uid = generate_uid(), generate_uid()
    instances = [make_instance(study=study, series=series_uid, instance_number=i, rows=32,
                               columns=32, seed=i) for i in range(1, 4)]
    nested = pydicom.Dataset()
    nested.CodeValue, nested.CodingSchemeDesignator, nested.CodeMeaning = "T-D3000", "SRT", "Chest"
    instances[0].AnatomicRegionSequence = [nested]
    instances[0].add_new(0x00091010, "LO", "CLOUDFILM TEST")  # private creator
    instances[0].add_new(0x00091011, "OB", bytes(range(256)) * 16)  # 4 KB private blob → bulk
    instances.append(make_instance(study=study, series=series_uid, instance_number=4, rows=8,
                                   columns=8, frames=5, seed=9))
    with httpx.Client(base_url=server.dicomweb, headers=server.auth) as http:
        assert stow(http, [to_bytes(ds) for ds in instances]).status_code == 200
    return {"study": study, "series": series_uid, "instances": instances}


def _instance_url(ds: pydicom.Dataset) -> str:
    return f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances/{ds.SOPInstanceUID}"


def test_study_series_and_instance_retrieve_as_stored(client: httpx.Client, series: dict) -> None:
    expected = {ds.SOPInstanceUID: to_bytes(ds) for ds in series["instances"]}
    for url, count in ((f"/studies/{series['study']}", 4),
                       (f"/studies/{series['study']}/series/{series['series']}", 4),
                       (_instance_url(series["instances"][1]), 1)):
        response = client.get(url, headers={"accept": AS_STORED})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith('multipart/related; type="application/dicom"')
        parts = parse_multipart(response)
        assert len(parts) == count
        for headers, data in parts:
            ds = pydicom.dcmread(io.BytesIO(data))
            assert data == expected[ds.SOPInstanceUID]
            assert headers["content-type"] == f"application/dicom; transfer-syntax={ds.file_meta.TransferSyntaxUID}"


def test_stored_files_go_out_with_a_length_by_sendfile(client: httpx.Client, series: dict,
                                                      server: Server) -> None:
    """The zero-copy path (api/zero_copy.py): a Content-Length instead of chunks, same bytes,
    and a HEAD that the server answers without an error of its own."""
    response = client.get(f"/studies/{series['study']}", headers={"accept": AS_STORED})
    assert response.status_code == 200
    assert "transfer-encoding" not in response.headers
    assert int(response.headers["content-length"]) == len(response.content)
    assert sorted(data for _, data in parse_multipart(response)) == \
        sorted(to_bytes(ds) for ds in series["instances"])
    head = client.head(f"/studies/{series['study']}", headers={"accept": AS_STORED})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == response.headers["content-length"]
    assert client.get(f"/studies/{series['study']}/metadata").status_code == 200  # HEAD has ended
    assert server.log_path is not None
    assert "Exception in ASGI application" not in server.log_path.read_text()


def test_a_client_that_leaves_mid_retrieve_costs_the_next_one_nothing(server: Server) -> None:
    """sendfile runs on a duplicate of the socket in a worker thread: a reader that stops and
    hangs up must free it, and the next request (on a new connection) gets every byte."""
    study, series_uid = generate_uid(), generate_uid()
    big = [to_bytes(make_instance(study=study, series=series_uid, instance_number=i, rows=512,
                                  columns=512, seed=i)) for i in range(1, 13)]  # ~6 MB
    with httpx.Client(base_url=server.dicomweb, headers=server.auth, timeout=60) as http:
        assert stow(http, big).status_code == 200
        url = f"{server.dicomweb}/studies/{study}/series/{series_uid}"
        for _ in range(3):
            with httpx.stream("GET", url, headers={**server.auth, "accept": AS_STORED},
                              timeout=60) as partial:
                assert partial.status_code == 200
                next(partial.iter_raw(65536))  # take a little, then hang up
        whole = http.get(f"/studies/{study}/series/{series_uid}", headers={"accept": AS_STORED})
    assert whole.status_code == 200
    assert sorted(data for _, data in parse_multipart(whole)) == sorted(big)


def test_unquoted_accept_parameters_work(client: httpx.Client, series: dict) -> None:
    ds = series["instances"][0]
    response = client.get(_instance_url(ds), headers={
        "accept": "multipart/related; type=application/dicom; transfer-syntax=*"})
    assert response.status_code == 200
    assert parse_multipart(response)[0][1] == to_bytes(ds)


def test_metadata_at_every_level(client: httpx.Client, series: dict, server: Server) -> None:
    first = series["instances"][0]
    for url, count in ((f"/studies/{series['study']}/metadata", 4),
                       (f"/studies/{series['study']}/series/{series['series']}/metadata", 4),
                       (_instance_url(first) + "/metadata", 1)):
        response = client.get(url, headers={"accept": "application/dicom+json"})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/dicom+json"
        assert len(response.json()) == count
    item = client.get(_instance_url(first) + "/metadata").json()[0]
    assert item["00100010"] == {"vr": "PN", "Value": [{"Alphabetic": "Doe^John"}]}
    region = item["00082218"]["Value"][0]
    assert region["00080100"]["Value"] == ["T-D3000"]
    pixel_uri = item["7FE00010"]["BulkDataURI"]
    assert pixel_uri == f"{server.dicomweb}{_instance_url(first)}/bulkdata/7FE00010"
    assert "InlineBinary" not in item["7FE00010"] and "Value" not in item["7FE00010"]
    private_uri = item["00091011"]["BulkDataURI"]
    assert private_uri.endswith("/bulkdata/00091011")


def test_bulk_data_uris_resolve_to_the_values(client: httpx.Client, series: dict,
                                               server: Server) -> None:
    first = series["instances"][0]
    item = client.get(_instance_url(first) + "/metadata").json()[0]
    pixels = httpx.get(item["7FE00010"]["BulkDataURI"],
                       headers=server.auth | {"accept": FRAMES_AS_STORED})
    assert pixels.status_code == 200
    assert parse_multipart(pixels)[0][1] == first.PixelData
    private = httpx.get(item["00091011"]["BulkDataURI"], headers=server.auth)
    assert parse_multipart(private)[0][1] == bytes(range(256)) * 16


def test_metadata_is_gzipped_when_the_client_accepts_it(client: httpx.Client, series: dict,
                                                        server: Server) -> None:
    url = f"{str(client.base_url).rstrip('/')}/studies/{series['study']}/metadata"
    with httpx.Client(headers=server.auth) as raw:
        response = raw.get(url, headers={"accept-encoding": "gzip"})
        assert response.headers.get("content-encoding") == "gzip"
        assert len(response.json()) == 4


def test_native_frames_with_exact_part_headers(client: httpx.Client, series: dict) -> None:
    multi = series["instances"][3]
    response = client.get(_instance_url(multi) + "/frames/1,3,5", headers={"accept": FRAMES_AS_STORED})
    assert response.status_code == 200
    body = response.content
    boundary = response.headers["content-type"].split("boundary=")[1]
    assert body.startswith(f"--{boundary}\r\n".encode())
    assert body.rstrip(b"\r\n").endswith(f"\r\n--{boundary}--".encode())
    parts = parse_multipart(response)
    frames = np.frombuffer(multi.PixelData, dtype=np.int16).reshape(5, 8, 8)
    for (headers, data), number in zip(parts, (1, 3, 5), strict=True):
        assert headers["content-type"] == \
            "application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1"
        assert data == frames[number - 1].tobytes()


def test_frame_errors(client: httpx.Client, series: dict) -> None:
    multi = series["instances"][3]
    assert client.get(_instance_url(multi) + "/frames/6").status_code == 404
    bad = client.get(_instance_url(multi) + "/frames/one")
    assert bad.status_code == 400 and "frames" in bad.json()["error"]
    assert client.get(_instance_url(multi) + "/frames/0").status_code == 400


def test_unknown_uids_are_404(client: httpx.Client, series: dict) -> None:
    unknown = generate_uid()
    assert client.get(f"/studies/{unknown}", headers={"accept": AS_STORED}).status_code == 404
    assert client.get(f"/studies/{unknown}/metadata").status_code == 404
    assert client.get(f"/studies/{series['study']}/series/{unknown}/metadata").status_code == 404
    assert client.get(f"/studies/{series['study']}/series/{series['series']}/instances/"
                      f"{unknown}/frames/1").status_code == 404


def test_unacceptable_media_type_is_406(client: httpx.Client, series: dict) -> None:
    ds = series["instances"][0]
    assert client.get(_instance_url(ds), headers={"accept": "application/pdf"}).status_code == 406
    assert client.get(_instance_url(ds) + "/metadata",
                      headers={"accept": "application/dicom+xml"}).status_code == 406


def test_rendered_and_thumbnail_at_every_level(client: httpx.Client, series: dict) -> None:
    ds = series["instances"][0]
    study_url = f"/studies/{series['study']}"
    series_url = f"{study_url}/series/{series['series']}"
    for url in (f"{study_url}/thumbnail", f"{series_url}/thumbnail", _instance_url(ds) + "/thumbnail",
                _instance_url(ds) + "/rendered", _instance_url(series["instances"][3]) + "/frames/2/rendered"):
        response = client.get(url, headers={"accept": "image/jpeg"})
        assert response.status_code == 200, url
        assert response.headers["content-type"] == "image/jpeg"
        Image.open(io.BytesIO(response.content)).verify()
    png = client.get(_instance_url(ds) + "/rendered", headers={"accept": "image/png"},
                     params={"viewport": "16,16"})
    image = Image.open(io.BytesIO(png.content))
    assert image.format == "PNG" and max(image.size) == 16
    series_rendered = client.get(f"{series_url}/rendered", headers={"accept": "image/jpeg"})
    assert len(parse_multipart(series_rendered)) == 4


def test_rendered_window_changes_pixels(client: httpx.Client, series: dict) -> None:
    url = _instance_url(series["instances"][0]) + "/rendered"
    lung = client.get(url, params={"window": "-600,1500"}, headers={"accept": "image/png"})
    bone = client.get(url, params={"window": "300,2000"}, headers={"accept": "image/png"})
    a = np.asarray(Image.open(io.BytesIO(lung.content)))
    b = np.asarray(Image.open(io.BytesIO(bone.content)))
    assert a.shape == b.shape and not np.array_equal(a, b)
    bad = client.get(url, params={"window": "wide"})
    assert bad.status_code == 400 and "window" in bad.json()["error"]
    assert client.get(url, params={"quality": "500"}).status_code == 400


def test_wado_uri(server: Server, series: dict) -> None:
    ds = series["instances"][1]
    params = {"requestType": "WADO", "studyUID": ds.StudyInstanceUID,
              "seriesUID": ds.SeriesInstanceUID, "objectUID": ds.SOPInstanceUID}
    dicom = httpx.get(f"{server.url}/wado", params=params | {"contentType": "application/dicom"},
                      headers=server.auth)
    assert dicom.status_code == 200 and dicom.content == to_bytes(ds)
    jpeg = httpx.get(f"{server.url}/wado", params=params, headers=server.auth)
    assert jpeg.headers["content-type"] == "image/jpeg"
    Image.open(io.BytesIO(jpeg.content)).verify()
    missing = httpx.get(f"{server.url}/wado", params={"requestType": "WADO"}, headers=server.auth)
    assert missing.status_code == 400 and "studyUID" in missing.json()["error"]
    unknown = httpx.get(f"{server.url}/wado", params=params | {"objectUID": generate_uid()},
                        headers=server.auth)
    assert unknown.status_code == 404


def test_dicomweb_client_retrieves_and_reads_metadata(server: Server, series: dict) -> None:
    web = DICOMwebClient(url=server.dicomweb, headers=server.auth)
    ds = series["instances"][2]
    retrieved = web.retrieve_instance(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID,
                                      media_types=(("application/dicom", "*"),))
    assert retrieved.SOPInstanceUID == ds.SOPInstanceUID
    assert retrieved.PixelData == ds.PixelData
    metadata = web.retrieve_series_metadata(ds.StudyInstanceUID, ds.SeriesInstanceUID)
    assert len(metadata) == 4
    frames = web.retrieve_instance_frames(ds.StudyInstanceUID, ds.SeriesInstanceUID,
                                          ds.SOPInstanceUID, frame_numbers=[1],
                                          media_types=(("application/octet-stream", "*"),))
    assert frames[0] == ds.PixelData


def test_delete_removes_rows_and_blobs(fresh_server: Server) -> None:
    fresh_server.start()
    index = Index(fresh_server.database_url)
    Retention(index).set_policy("*", 0)  # the default policy keeps everything: allow deletion
    index.dispose()
    study, series_uid = generate_uid(), generate_uid()
    keep = make_instance()
    doomed = [make_instance(study=study, series=series_uid, instance_number=i) for i in range(3)]
    with httpx.Client(base_url=fresh_server.dicomweb, headers=fresh_server.auth) as http:
        assert stow(http, [to_bytes(d) for d in [*doomed, keep]]).status_code == 200
        one = http.delete(_instance_url(doomed[0]))
        assert one.status_code == 200 and one.json() == {"deleted_instances": 1}
        assert http.get(_instance_url(doomed[0]) + "/metadata").status_code == 404
        assert http.delete(f"/studies/{study}").json() == {"deleted_instances": 2}
        assert http.get(f"/studies/{study}/metadata").status_code == 404
        assert http.delete(f"/studies/{study}").status_code == 404
        assert http.get(_instance_url(keep) + "/metadata").status_code == 200
    blobs = [p for p in (fresh_server.data_dir / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    check = run_cli(["check", "--data", str(fresh_server.data_dir)], fresh_server.database_url)
    assert check.returncode == 0, check.stdout
