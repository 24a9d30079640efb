"""Headers that keep patient data out of shared caches and the browser on https, and
OHIF's pages under a Content-Security-Policy, against the real server (SQLite and
PostgreSQL)."""

from __future__ import annotations

import base64
import hashlib
import re

import httpx
import pytest

from cloudfilm.web.ohif import BUILD_DIR
from conftest import Server
from factory import make_instance, stow, to_bytes

FRAMES = 'multipart/related; type="application/octet-stream"; transfer-syntax=*'


@pytest.fixture(scope="module")
def instance(server: Server) -> dict[str, str]:
    ds = make_instance(rows=32, columns=32, frames=2)
    with httpx.Client(base_url=server.dicomweb, headers=server.auth) as http:
        assert stow(http, [to_bytes(ds)]).status_code == 200
    return {"study": ds.StudyInstanceUID, "series": ds.SeriesInstanceUID,
            "sop": ds.SOPInstanceUID}


def test_pixels_metadata_and_renderings_are_private(server: Server, client: httpx.Client,
                                                    instance: dict[str, str]) -> None:
    """No shared cache (a hospital or ISP proxy) may keep one patient's images for another
    caller: every answer carrying them says ``private``."""
    study = f"/studies/{instance['study']}"
    one = f"{study}/series/{instance['series']}/instances/{instance['sop']}"
    wado_uri = {"requestType": "WADO", "studyUID": instance["study"],
                "seriesUID": instance["series"], "objectUID": instance["sop"]}
    answers = {
        "frames": client.get(f"{one}/frames/1,2", headers={"Accept": FRAMES}),
        "study metadata": client.get(f"{study}/metadata"),
        "instance metadata": client.get(f"{one}/metadata"),
        "rendered": client.get(f"{one}/rendered", headers={"Accept": "image/jpeg"}),
        "frame rendered": client.get(f"{one}/frames/1/rendered", headers={"Accept": "image/png"}),
        "thumbnail": client.get(f"{study}/thumbnail", headers={"Accept": "image/jpeg"}),
        "instance": client.get(one, headers={"Accept": 'multipart/related; type="application/dicom"'}),
        "query": client.get("/studies", params={"StudyInstanceUID": instance["study"]}),
        "wado-uri jpeg": client.get(f"{server.url}/wado",
                                    params=wado_uri | {"contentType": "image/jpeg"}),
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text[:200])
        assert answer.headers.get("cache-control") == "private", name


def test_all_frames_at_once_stay_out_of_every_cache(client: httpx.Client,
                                                    instance: dict[str, str]) -> None:
    """The viewer's pixel-data stream keeps its stricter no-store."""
    got = client.get(f"/studies/{instance['study']}/pixeldata", headers={"Accept": FRAMES})
    assert got.status_code == 200 and got.headers["cache-control"] == "no-store"


def test_hsts_is_sent_over_https_only(server: Server) -> None:
    """Behind a TLS proxy (X-Forwarded-Proto, as the session cookies read it) every answer
    carries Strict-Transport-Security; over plain http, where browsers ignore it, none does."""
    with httpx.Client(base_url=server.url, timeout=60) as anonymous:
        for path in ("/healthz", "/login", "/dicomweb/studies"):
            over_https = anonymous.get(path, headers={"X-Forwarded-Proto": "https"})
            assert over_https.headers.get("strict-transport-security") == "max-age=31536000", path
            assert "strict-transport-security" not in anonymous.get(path).headers, path


def _inline_scripts(html: str) -> list[str]:
    return re.findall(r"<script(?![^>]*\bsrc=)[^>]*>(.*?)</script>", html, flags=re.S)


def test_ohif_pages_carry_a_csp_that_allows_only_their_own_scripts(server: Server,
                                                                   instance: dict[str, str]) -> None:
    """OHIF's page runs its own files and its own inline scripts (by hash), nothing inline
    that an attacker could add, and from no other origin."""
    assert (BUILD_DIR / "index.html").is_file(), "OHIF is not built: run `make web`"
    with httpx.Client(base_url=server.url, headers=server.auth, timeout=60) as http:
        page = http.get("/ohif/viewer", params={"StudyInstanceUIDs": instance["study"]})
    assert page.status_code == 200
    policy = dict(d.strip().split(" ", 1) for d in page.headers["content-security-policy"]
                  .split(";") if d.strip())
    scripts = policy["script-src"].split()
    assert "'unsafe-inline'" not in scripts and "'self'" in scripts
    assert "'wasm-unsafe-eval'" in scripts
    inline = _inline_scripts(page.text)
    assert inline, "OHIF's index.html has inline scripts"
    for text in inline:
        digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in scripts
    assert policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'self'" and policy["base-uri"] == "'self'"
    assert all("http" not in value and "*" not in value for value in policy.values())
