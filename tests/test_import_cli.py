"""``cloudfilm import``: files, folders, zips and CD/USB folders with a DICOMDIR."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from conftest import database_url_for, run_cli
from factory import make_instance, to_bytes


@pytest.fixture
def archive_url(tmp_path: Path, database_kind: str):  # type: ignore[no-untyped-def]
    url, schema = database_url_for(database_kind, tmp_path / "data")
    yield url
    if schema:
        schema.drop()


def _lines(output: str, status: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(status)]


def test_files_folders_and_zip_with_a_bad_file_reported(tmp_path: Path, archive_url: str) -> None:
    data = tmp_path / "data"
    folder = tmp_path / "in" / "nested"
    folder.mkdir(parents=True)
    study = generate_uid()
    for i in range(3):
        (folder / f"img{i}.dcm").write_bytes(to_bytes(make_instance(study=study, instance_number=i)))
    (folder / "README.TXT").write_text("not an image")
    corrupt = to_bytes(make_instance(study=study, rows=64, columns=64))[:-500]
    (folder / "broken.dcm").write_bytes(corrupt)
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/one.dcm", to_bytes(make_instance(study=study, instance_number=10)))
    result = run_cli(["import", "--data", str(data), str(tmp_path / "in"), str(archive)], archive_url)
    assert result.returncode == 1, result.stdout
    assert len(_lines(result.stdout, "stored")) == 4
    failed = _lines(result.stdout, "failed")
    assert len(failed) == 1 and "broken.dcm" in failed[0] and "truncated" in failed[0]
    skipped = _lines(result.stdout, "skipped")
    assert len(skipped) == 1 and "README.TXT" in skipped[0]
    again = run_cli(["import", "--data", str(data), str(folder / "img0.dcm")], archive_url)
    assert again.returncode == 0 and _lines(again.stdout, "duplicate")
    check = run_cli(["check", "--data", str(data)], archive_url)
    assert check.returncode == 0 and "checked 4 index rows and 4 blobs: clean" in check.stdout


def test_explicit_non_dicom_file_fails_with_a_reason(tmp_path: Path, archive_url: str) -> None:
    note = tmp_path / "note.txt"
    note.write_text("hello")
    result = run_cli(["import", "--data", str(tmp_path / "data"), str(note)], archive_url)
    assert result.returncode == 1
    assert "no DICM prefix at byte 128" in _lines(result.stdout, "failed")[0]


def _cd(tmp_path: Path, count: int) -> tuple[Path, list[str]]:
    """A CD/USB layout written by pydicom's FileSet: DICOMDIR plus 8.3 file names."""
    fileset = FileSet()
    uids = []
    study = generate_uid()
    for i in range(count):
        ds = make_instance(study=study, instance_number=i + 1)
        uids.append(ds.SOPInstanceUID)
        fileset.add(ds)
    cd = tmp_path / "cd"
    fileset.write(cd)
    (cd / "AUTORUN.INF").write_text("[autorun]")
    return cd, uids


def test_cd_folder_is_read_through_its_dicomdir(tmp_path: Path, archive_url: str) -> None:
    cd, uids = _cd(tmp_path, 4)
    result = run_cli(["import", "--data", str(tmp_path / "data"), str(cd)], archive_url)
    assert result.returncode == 0, result.stdout
    assert len(_lines(result.stdout, "stored")) == 4
    assert "AUTORUN" not in result.stdout and "note:" not in result.stdout


def test_broken_dicomdir_falls_back_to_scanning_with_a_note(tmp_path: Path, archive_url: str) -> None:
    cd, uids = _cd(tmp_path, 3)
    dicomdir = cd / "DICOMDIR"
    dicomdir.write_bytes(dicomdir.read_bytes()[:300])  # truncated
    result = run_cli(["import", "--data", str(tmp_path / "data"), str(cd)], archive_url)
    assert result.returncode == 0, result.stdout
    assert len(_lines(result.stdout, "stored")) == 3
    assert "scanning the folder instead" in result.stdout
