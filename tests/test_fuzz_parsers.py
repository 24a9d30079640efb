"""Property-based fuzzing of every parser that reads what a stranger sends (issue 11):
the Part-10 path, the bounds walk, the multipart reader, DICOM JSON, DIMSE identifiers
and zip/ISO import. The property: a clean refusal with a reason, never another exception,
nothing left staged, and the archive checks clean."""

from __future__ import annotations

import io
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pydicom
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydicom.filereader import read_dataset
from pydicom.sequence import Sequence

from cloudfilm.dimse.identifiers import Refused, decode_identifier
from cloudfilm.domain.dataset_limits import DatasetLimits, DatasetTooComplex, check_dataset
from cloudfilm.domain.instance_facts import InvalidInstance
from cloudfilm.services.archive.multipart_stream import MalformedMultipart, StagingReceiver
from cloudfilm.services.archive.part10 import parse_instance
from cloudfilm.storage.blobs import FileSystemBlobStore
from factory import make_instance, to_bytes
from fuzzing import fuzz_settings, mutated
from hostile import deeply_nested

LIMIT = DatasetLimits().max_depth
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _nested_instance(depth: int, undefined: bool) -> bytes:
    return deeply_nested(depth, rows=4, columns=4) if undefined else _defined_nesting(depth)


def _defined_nesting(depth: int) -> bytes:
    ds = make_instance(rows=4, columns=4)
    inner = pydicom.Dataset()
    inner.CodeValue = "1"
    for _ in range(depth):
        outer = pydicom.Dataset()
        outer.ConceptNameCodeSequence = Sequence([inner])
        inner = outer
    ds.ConceptNameCodeSequence = inner.ConceptNameCodeSequence
    from hostile import write_deep

    return write_deep(ds)


SEEDS = [to_bytes(make_instance(rows=4, columns=4)), _nested_instance(5, True),
         _nested_instance(5, False)]


def _parse(data: bytes) -> Any:
    with tempfile.NamedTemporaryFile(suffix=".dcm") as fh:
        fh.write(data)
        fh.flush()
        try:
            return parse_instance(Path(fh.name))
        except InvalidInstance as exc:
            return exc


@fuzz_settings(60)
@given(data=st.sampled_from(SEEDS).flatmap(mutated))
def test_part10_parser_refuses_mutated_files_with_a_reason(data: bytes) -> None:
    outcome = _parse(data)
    if isinstance(outcome, InvalidInstance):
        assert str(outcome)


@fuzz_settings(12)
@given(depth=st.integers(1, 3 * LIMIT), undefined=st.booleans())
def test_nesting_is_refused_exactly_past_the_limit(depth: int, undefined: bool) -> None:
    outcome = _parse(_nested_instance(depth, undefined))
    if depth <= LIMIT:
        assert not isinstance(outcome, InvalidInstance), outcome
    else:
        assert isinstance(outcome, InvalidInstance) and "nested deeper than" in str(outcome)


@fuzz_settings(200)
@given(raw=st.binary(max_size=512), implicit=st.booleans(), little=st.booleans())
def test_the_bounds_walk_accepts_only_what_pydicom_reads_without_recursion(
        raw: bytes, implicit: bool, little: bool) -> None:
    try:
        check_dataset(io.BytesIO(raw), len(raw), implicit=implicit, little=little)
    except DatasetTooComplex as exc:
        assert str(exc)
        return
    try:
        for _ in read_dataset(io.BytesIO(raw), implicit, little).iterall():
            pass
    except RecursionError:
        raise
    except Exception:  # noqa: BLE001 - pydicom may refuse garbage (InvalidInstance upstream)
        pass


# -- multipart --------------------------------------------------------------------------

BCHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'()+_,-./:=?"


@st.composite
def multipart_bodies(draw: Any) -> tuple[str, list[bytes], bytes]:
    boundary = draw(st.one_of(st.text(BCHARS, min_size=1, max_size=70),
                              st.text(min_size=0, max_size=300)))
    parts = draw(st.lists(st.binary(max_size=300), min_size=0, max_size=4))
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + part + b"\r\n" for part in parts) + f"--{boundary}--\r\n".encode()
    if draw(st.booleans()):
        body = draw(mutated(body))
    return boundary, parts, body


def _chunks(body: bytes, sizes: list[int]) -> Iterator[bytes]:
    at = 0
    for size in [*sizes, len(body)]:
        yield body[at:at + size]
        at += size


@fuzz_settings(150)
@given(case=multipart_bodies(), sizes=st.lists(st.integers(1, 64), max_size=8))
def test_multipart_reader_stages_parts_or_refuses_and_keeps_nothing(
        tmp_path_factory: pytest.TempPathFactory, case: tuple[str, list[bytes], bytes],
        sizes: list[int]) -> None:
    boundary, _parts, body = case
    blobs = FileSystemBlobStore(tmp_path_factory.mktemp("multipart"))
    receiver = None
    try:
        receiver = StagingReceiver(boundary, "application/dicom", {"application/dicom"}, blobs)
        for chunk in _chunks(body, sizes):
            receiver.feed(chunk)
        received = receiver.received()
    except MalformedMultipart as exc:
        assert str(exc)
        if receiver is not None:
            receiver.abort()
        assert list(blobs.incoming.iterdir()) == []
        return
    for part in received:
        assert (part.path is None) == bool(part.error)  # refused parts carry a reason instead
        if part.path is not None:
            part.path.unlink()
    assert list(blobs.incoming.iterdir()) == []
    blobs.close()


# -- DICOM JSON ----------------------------------------------------------------------------

TEXT = st.text(st.characters(codec="utf-8", exclude_characters="\\\x00"), max_size=20)
ELEMENTS: dict[str, Any] = {
    "PatientName": TEXT.map(lambda t: t.replace("=", "")),
    "PatientID": TEXT.map(lambda t: t[:16]),
    "StudyDescription": TEXT,
    "Rows": st.integers(0, 65535),
    "PixelSpacing": st.lists(st.floats(0.01, 10, allow_nan=False), min_size=2, max_size=2),
    "InstanceNumber": st.integers(-(2**31), 2**31 - 1),
    "StudyDate": st.dates().map(lambda d: d.strftime("%Y%m%d")),
    "CodeValue": TEXT.map(lambda t: t[:16]),
}


def _datasets(depth: int) -> Any:
    leaf = st.fixed_dictionaries({}, optional={k: v for k, v in ELEMENTS.items()})
    if depth == 0:
        return leaf
    return st.fixed_dictionaries({}, optional={
        **ELEMENTS, "ContentSequence": st.lists(_datasets(depth - 1), max_size=2)})


def _build(values: dict[str, Any]) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    for keyword, value in values.items():
        if keyword == "ContentSequence":
            setattr(ds, keyword, Sequence([_build(item) for item in value]))
        else:
            setattr(ds, keyword, value)
    return ds


@fuzz_settings(80)
@given(values=_datasets(4), charset=st.sampled_from(["ISO_IR 192", "ISO_IR 100", None]))
def test_dicom_json_of_any_stored_data_set_serialises(values: dict[str, Any],
                                                      charset: str | None) -> None:
    ds = make_instance(rows=2, columns=2)
    for keyword, value in _build(values).items():
        ds[keyword] = value
    if charset:
        ds.SpecificCharacterSet = charset
    with tempfile.NamedTemporaryFile(suffix=".dcm") as fh:
        try:
            fh.write(to_bytes(ds))
        except (UnicodeEncodeError, ValueError, OverflowError):
            return  # pydicom cannot encode this value in this character set: nothing to store
        fh.flush()
        outcome = _parse(Path(fh.name).read_bytes())
    if isinstance(outcome, InvalidInstance):
        return
    document = orjson.loads(outcome.metadata)
    assert all(len(key) == 8 and int(key, 16) >= 0 for key in document)
    if "ContentSequence" in values:
        assert document["0040A730"]["vr"] == "SQ"


# -- DIMSE identifiers ---------------------------------------------------------------------


def _identifier(level: str, implicit: bool) -> bytes:
    ds = pydicom.Dataset()
    ds.QueryRetrieveLevel = level
    ds.PatientID = "P*"
    ds.StudyInstanceUID = ""
    ds.ReferencedStudySequence = Sequence([pydicom.Dataset()])
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=True)
    return buffer.getvalue()


IDENTIFIERS = [(_identifier(level, implicit), implicit)
               for level in ("PATIENT", "STUDY", "IMAGE") for implicit in (True, False)]


@fuzz_settings(200)
@given(case=st.sampled_from(IDENTIFIERS).flatmap(
    lambda c: st.tuples(st.one_of(mutated(c[0]), st.binary(max_size=256)), st.just(c[1]))))
def test_dimse_identifiers_decode_or_are_refused_with_a_status(case: tuple[bytes, bool]) -> None:
    raw, implicit = case
    try:
        identifier = decode_identifier(raw, implicit, True)
    except Refused as exc:
        assert exc.status == 0xC000 and exc.comment
        return
    assert isinstance(identifier, pydicom.Dataset)


def test_a_deep_identifier_is_refused_before_pydicom_recurses() -> None:
    deep = deeply_nested(500)
    ds = pydicom.dcmread(io.BytesIO(deep))
    raw = deep[deep.index(b"\x08\x00\x16\x00"):]  # the data set after the file meta group
    with pytest.raises(Refused, match="nested deeper than"):
        decode_identifier(raw, ds.file_meta.TransferSyntaxUID.is_implicit_VR, True)


# -- zip / ISO import ------------------------------------------------------------------------

MEMBERS = st.sampled_from([SEEDS[0], SEEDS[1], b"not dicom", deeply_nested(300, rows=2, columns=2),
                           SEEDS[0][:-40]])
NAMES = st.one_of(st.sampled_from(["a.dcm", "../evil.dcm", "/abs.dcm", "d/e/f.dcm", "C:x.dcm",
                                   "DICOMDIR", "x\x00y"]),
                  st.text(min_size=1, max_size=30))


@st.composite
def zip_archives(draw: Any) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in draw(st.lists(st.tuples(NAMES, MEMBERS), min_size=1, max_size=5)):
            with zf.open(zipfile.ZipInfo(name), "w") as member:
                member.write(draw(st.one_of(st.just(content), mutated(content))))
    data = buffer.getvalue()
    return draw(mutated(data)) if draw(st.booleans()) else data


@st.composite
def iso_images(draw: Any) -> bytes:
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=1)
    for number, content in enumerate(draw(st.lists(MEMBERS, min_size=1, max_size=4))):
        iso.add_fp(io.BytesIO(content), len(content), iso_path=f"/I{number:07d}.;1")
    buffer = io.BytesIO()
    iso.write_fp(buffer)
    iso.close()
    data = buffer.getvalue()
    return draw(mutated(data)) if draw(st.booleans()) else data


@pytest.fixture(scope="module")
def fuzz_archive(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from cloudfilm.config import Settings
    from cloudfilm.services.context import Archive
    from conftest import database_url_for

    data_dir = tmp_path_factory.mktemp(f"fuzz-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    opened = Archive.open(Settings.load(data_dir, url), recover=False)
    try:
        yield opened
    finally:
        opened.close()
        if schema:
            schema.drop()


def _import_property(archive: Any, folder: Path, name: str, data: bytes) -> None:
    from cloudfilm.services.archive.check import check_archive
    from cloudfilm.services.exchange.importer import import_paths

    path = folder / name
    path.write_bytes(data)
    notes: list[str] = []
    results = import_paths(archive.ingest, [path], lambda r: None, notes)
    assert all(r.status in ("stored", "duplicate", "failed", "skipped") for r in results)
    assert all(r.reason for r in results if r.status == "failed")
    assert list(archive.blobs.incoming.glob("*.part")) == []
    report = check_archive(archive.index, archive.blobs)
    assert report.clean, report.problems


def _nameless_member_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), SEEDS[0])
        zf.writestr("deep.dcm", deeply_nested(300, rows=2, columns=2))
    return buffer.getvalue()


@fuzz_settings(25)
@given(data=zip_archives())
@example(data=_nameless_member_zip())
def test_zip_import_reports_every_member_and_keeps_nothing_staged(
        fuzz_archive: Any, tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _import_property(fuzz_archive, tmp_path_factory.mktemp("zip"), "upload.zip", data)


@fuzz_settings(15)
@given(data=iso_images())
def test_iso_import_reports_every_file_and_keeps_nothing_staged(
        fuzz_archive: Any, tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    _import_property(fuzz_archive, tmp_path_factory.mktemp("iso"), "disc.iso", data)
