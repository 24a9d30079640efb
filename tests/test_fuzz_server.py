"""Property-based fuzzing of the real server: hostile STOW and upload bodies over a real
socket never reach a 500, leave nothing staged, and the archive checks clean after."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from conftest import Server, run_cli
from factory import make_instance, to_bytes
from fuzzing import fuzz_settings, mutated
from hostile import deeply_nested

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

GOOD = to_bytes(make_instance(rows=8, columns=8))
PARTS = st.one_of(st.sampled_from([GOOD, deeply_nested(200, rows=2, columns=2), b"", b"DICM"]),
                  st.just(GOOD).flatmap(mutated), st.binary(max_size=200))
BOUNDARIES = st.one_of(st.text("abcXYZ019'()+_,-./:=?", min_size=1, max_size=70),
                       st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=120))


def _staged(data_dir: Path) -> list[Path]:
    return list((data_dir / "incoming").rglob("*.part"))


@st.composite
def stow_requests(draw: Any) -> tuple[str, bytes]:
    boundary = draw(BOUNDARIES)
    parts = draw(st.lists(PARTS, max_size=3))
    type_ = draw(st.sampled_from(["application/dicom", "application/dicom+json", "text/plain"]))
    body = b"".join(f"--{boundary}\r\nContent-Type: {type_}\r\n\r\n".encode("utf-8", "replace")
                    + part + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()
    if draw(st.booleans()):
        body = draw(mutated(body))
    quoted = draw(st.booleans())
    header = 'multipart/related; type="application/dicom"; boundary=' + (
        f'"{boundary}"' if quoted else boundary)
    return header, body


def _stow(boundary: str, parts: list[bytes]) -> tuple[str, bytes]:
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + part + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()
    return f'multipart/related; type="application/dicom"; boundary={boundary}', body


@fuzz_settings(20)
@given(request=stow_requests())
@example(request=_stow("deep", [GOOD, deeply_nested(500, rows=2, columns=2)]))
@example(request=_stow("b" * 300, [GOOD]))
def test_stow_never_answers_500_and_keeps_nothing_staged(server: Server,
                                                         request: tuple[str, bytes]) -> None:
    content_type, body = request
    with server.http() as http:
        response = http.post("/dicomweb/studies", content=body,
                             headers={"content-type": content_type.encode("utf-8")})
    assert response.status_code < 500, response.text
    assert _staged(server.data_dir) == []


@st.composite
def upload_requests(draw: Any) -> tuple[str, bytes]:
    boundary = draw(st.text("abcXYZ019-", min_size=1, max_size=70))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for number, part in enumerate(draw(st.lists(PARTS, min_size=1, max_size=3))):
            zf.writestr(f"d/{number}.dcm", part)
    files = [("disc.zip", buffer.getvalue()), ("one.dcm", draw(PARTS))]
    body = b"".join(
        (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
         "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
        for name, data in files) + f"--{boundary}--\r\n".encode()
    if draw(st.booleans()):
        body = draw(mutated(body))
    return f"multipart/form-data; boundary={boundary}", body


@fuzz_settings(15)
@given(request=upload_requests())
def test_uploads_never_answer_500_and_keep_nothing_staged(server: Server,
                                                          request: tuple[str, bytes]) -> None:
    content_type, body = request
    with server.http() as http:
        response = http.post("/api/uploads", content=body, headers={"content-type": content_type})
    assert response.status_code < 500, response.text
    assert _staged(server.data_dir) == []


def test_after_the_fuzzing_the_archive_checks_clean(server: Server) -> None:
    check = run_cli(["check", "--data", str(server.data_dir)], server.database_url)
    assert check.returncode == 0 and "clean" in check.stdout, check.stdout + check.stderr
