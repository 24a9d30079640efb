"""``cloudfilm import``: files, folders, zips and CD/USB folders with a DICOMDIR."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from conftest import cli_env, database_url_for, run_cli
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
    cd, _uids = _cd(tmp_path, 4)
    result = run_cli(["import", "--data", str(tmp_path / "data"), str(cd)], archive_url)
    assert result.returncode == 0, result.stdout
    assert len(_lines(result.stdout, "stored")) == 4
    assert "AUTORUN" not in result.stdout and "note:" not in result.stdout


def test_broken_dicomdir_falls_back_to_scanning_with_a_note(tmp_path: Path, archive_url: str) -> None:
    cd, _uids = _cd(tmp_path, 3)
    dicomdir = cd / "DICOMDIR"
    dicomdir.write_bytes(dicomdir.read_bytes()[:300])  # truncated
    result = run_cli(["import", "--data", str(tmp_path / "data"), str(cd)], archive_url)
    assert result.returncode == 0, result.stdout
    assert len(_lines(result.stdout, "stored")) == 3
    assert "scanning the folder instead" in result.stdout


def make_iso(folder: Path, out: Path, extra: dict[str, bytes] | None = None) -> Path:
    """An ISO 9660 level 1 image of ``folder`` (names must already be 8.3), via pycdlib."""
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1)
    for path in sorted(folder.rglob("*")):
        name = "/" + path.relative_to(folder).as_posix().upper()
        if path.is_dir():
            iso.add_directory(iso_path=name)
        else:
            data = path.read_bytes()
            suffix = "" if "." in path.name else "."
            iso.add_fp(io.BytesIO(data), len(data), iso_path=f"{name}{suffix};1")
    for name, data in (extra or {}).items():
        iso.add_fp(io.BytesIO(data), len(data), iso_path=f"/{name};1")
    iso.write(str(out))
    iso.close()
    return out


def test_iso_images_read_through_dicomdir_or_scanned(tmp_path: Path, archive_url: str) -> None:
    cd, _uids = _cd(tmp_path, 3)
    good = make_iso(cd, tmp_path / "good.iso")
    broken_cd, _broken_uids = _cd(tmp_path / "b", 2)
    dicomdir = broken_cd / "DICOMDIR"
    dicomdir.write_bytes(dicomdir.read_bytes()[:300])
    broken = make_iso(broken_cd, tmp_path / "broken.iso")
    (tmp_path / "junk.iso").write_bytes(b"not an ISO image at all" * 100)
    result = run_cli(["import", "--data", str(tmp_path / "data"), str(good), str(broken),
                      str(tmp_path / "junk.iso")], archive_url)
    stored = _lines(result.stdout, "stored")
    assert len([s for s in stored if "good.iso!PT000000/" in s]) == 3, result.stdout
    assert len([s for s in stored if "broken.iso!" in s]) == 2, result.stdout
    assert "broken.iso!DICOMDIR is unreadable" in result.stdout
    assert "scanning the ISO image instead" in result.stdout
    assert "good.iso" not in "".join(line for line in result.stdout.splitlines() if "note:" in line)
    skipped = _lines(result.stdout, "skipped")
    assert any("broken.iso!AUTORUN.INF" in s for s in skipped), result.stdout
    failed = _lines(result.stdout, "failed")
    assert len(failed) == 1 and "junk.iso" in failed[0] and "cannot read ISO image" in failed[0]
    assert result.returncode == 1


def _hostile_zip(path: Path, good: bytes) -> Path:
    """Members a hostile medium might hold, beside one honest instance."""
    import stat

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("ok/one.dcm", good)
        zf.writestr("../evil.dcm", good)
        zf.writestr("/tmp/abs-evil.dcm", good)
        zf.writestr("a\\..\\..\\evil2.dcm", good)
        link = zipfile.ZipInfo("link.dcm")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
        zf.writestr("bomb.dcm", b"\0" * (150 << 20))  # ~150 KB compressed: ~1000:1
        zf.writestr("big.dcm", os.urandom(200_000))  # incompressible, above a 100 kB limit
    return path


def test_hostile_archives_refused_per_file_and_nothing_written_outside(
        tmp_path: Path, archive_url: str) -> None:
    data, inbox, folder = tmp_path / "data", tmp_path / "in", tmp_path / "usb"
    inbox.mkdir()
    folder.mkdir()
    hostile = _hostile_zip(inbox / "hostile.zip", to_bytes(make_instance()))
    many = inbox / "many.zip"
    with zipfile.ZipFile(many, "w") as zf:
        for i in range(30):
            zf.writestr(f"f{i}.dcm", b"x")
    size = len(to_bytes(make_instance()))
    greedy = inbox / "greedy.zip"  # three honest members, more than the total allowed
    with zipfile.ZipFile(greedy, "w") as zf:
        for i in range(3):
            zf.writestr(f"g{i}.dcm", to_bytes(make_instance()))
    limits = {"CLOUDFILM_IMPORT_MAX_FILES": "20", "CLOUDFILM_IMPORT_MAX_MEMBER_BYTES": "100000",
              "CLOUDFILM_IMPORT_MAX_TOTAL_BYTES": str(size * 3 // 2)}
    (folder / "img.dcm").write_bytes(to_bytes(make_instance()))
    (folder / "passwd.dcm").symlink_to("/etc/passwd")
    result = subprocess.run(
        [sys.executable, "-m", "cloudfilm", "import", "--data", str(data), str(hostile),
         str(many), str(greedy), str(folder)], env=cli_env(archive_url) | limits,
        capture_output=True, text=True, timeout=600)
    failed = {line.split(None, 1)[1].split(": ", 1)[0]: line
              for line in _lines(result.stdout, "failed")}
    assert "path traversal" in failed[f"{hostile}!../evil.dcm"], result.stdout
    assert "path traversal" in failed[f"{hostile}!a\\..\\..\\evil2.dcm"]
    assert "absolute path" in failed[f"{hostile}!/tmp/abs-evil.dcm"]
    assert "symbolic link" in failed[f"{hostile}!link.dcm"]
    assert "compression ratio above 200:1" in failed[f"{hostile}!bomb.dcm"]
    assert "above the 100000-byte limit" in failed[f"{hostile}!big.dcm"]
    assert "above the limit of 20" in failed[str(many)]
    assert [n for n in failed if "greedy" in n] == [f"{greedy}!g1.dcm", f"{greedy}!g2.dcm"]
    assert all("total limit" in failed[n] for n in failed if "greedy" in n)
    assert "symbolic link" in failed[str(folder / "passwd.dcm")]
    assert len(_lines(result.stdout, "stored")) == 3, result.stdout  # one.dcm, g0.dcm, img.dcm
    assert result.returncode == 1
    assert [p for p in tmp_path.parent.rglob("*evil*") if p.suffix == ".dcm"] == []
    assert not Path("/tmp/abs-evil.dcm").exists() and not list((data / "incoming").iterdir())
