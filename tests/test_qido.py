"""QIDO-RS through the real server (PS3.18 §10.6), on SQLite and PostgreSQL.

Why: search is how every viewer finds studies; wrong matching hides a patient's
images or shows another's. Each test stores its own instances under a unique
PatientID, because the server is shared by the whole module.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import pydicom
import pytest
from dicomweb_client.api import DICOMwebClient
from pydicom.uid import generate_uid

from cloudfilm.domain.levels import Level
from cloudfilm.domain.matching import parse_query
from cloudfilm.services.archive.part10 import parse_instance
from cloudfilm.services.archive.query import QueryService, UnknownStudy
from cloudfilm.storage.index.db import Index
from cloudfilm.storage.index.models import InstanceRow
from cloudfilm.storage.index.writer import ParentCache, write_instance
from conftest import DATABASES, database_url_for
from factory import make_instance, multipart_related, to_bytes

PATIENT_NAME, PATIENT_ID = "00100010", "00100020"
STUDY_UID, SERIES_UID, SOP_UID = "0020000D", "0020000E", "00080018"
RETRIEVE_URL = "00081190"


def new_pid() -> str:
    return f"Q{secrets.token_hex(6).upper()}"


def store(client: httpx.Client, *datasets: pydicom.Dataset | bytes) -> None:
    parts = [ds if isinstance(ds, bytes) else to_bytes(ds) for ds in datasets]
    body, content_type = multipart_related(parts)
    response = client.post("/studies", content=body, headers={"Content-Type": content_type})
    assert response.status_code == 200, response.text


def search(
    client: httpx.Client, path: str, params: Any = None, status: int = 200
) -> list[dict[str, Any]]:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/dicom+json")
    return response.json()


def values(items: list[dict[str, Any]], tag: str) -> list[Any]:
    return [item[tag]["Value"][0] if "Value" in item[tag] else None for item in items]


def study_uids(client: httpx.Client, params: Any) -> set[str]:
    return set(values(search(client, "/studies", params), STUDY_UID))


# -- matching kinds ----------------------------------------------------------------------


def test_single_value_and_uid_list(client: httpx.Client) -> None:
    pid = new_pid()
    studies = [generate_uid() for _ in range(3)]
    store(
        client,
        *(
            make_instance(study=s, patient_id=pid, AccessionNumber=f"A{pid}{i}")
            for i, s in enumerate(studies)
        ),
    )
    assert study_uids(client, {"PatientID": pid}) == set(studies)
    assert study_uids(client, {"AccessionNumber": f"A{pid}1"}) == {studies[1]}
    assert study_uids(client, {"StudyInstanceUID": f"{studies[0]}\\{studies[2]}"}) == {
        studies[0],
        studies[2],
    }
    assert study_uids(client, {"0020000D": f"{studies[0]},{studies[1]}"}) == {
        studies[0],
        studies[1],
    }
    assert (
        study_uids(client, {"PatientID": pid[:-1]}) == set()
    )  # single value is not a prefix match


def test_wildcards_and_literal_percent_underscore(client: httpx.Client) -> None:
    pid = new_pid()
    first, second, third = (generate_uid() for _ in range(3))
    store(
        client,
        make_instance(study=first, patient_id=pid, StudyDescription="100%_DOSE"),
        make_instance(study=second, patient_id=pid, StudyDescription="1000xDOSE"),
        make_instance(study=third, patient_id=pid, StudyDescription="HEAD"),
    )
    assert study_uids(client, {"PatientID": pid, "StudyDescription": "100%_*"}) == {first}
    assert study_uids(client, {"PatientID": pid, "StudyDescription": "100%?DOSE"}) == {first}
    assert study_uids(client, {"PatientID": pid, "StudyDescription": "100??DOSE"}) == {
        first,
        second,
    }
    assert study_uids(client, {"PatientID": pid, "StudyDescription": "100_xDOSE"}) == set()
    assert study_uids(client, {"PatientID": pid, "StudyDescription": "*DOSE"}) == {first, second}
    assert study_uids(client, {"PatientID": pid, "StudyDescription": "H?AD"}) == {third}
    assert study_uids(client, {"PatientID": f"{pid[:4]}*", "StudyDescription": "HEA*"}) >= {third}
    assert study_uids(client, {"PatientID": pid, "StudyDescription": "*"}) == {first, second, third}


def test_date_range_forms(client: httpx.Client) -> None:
    pid = new_pid()
    january, february, march = (generate_uid() for _ in range(3))
    store(
        client,
        make_instance(study=january, patient_id=pid, study_date="20200110"),
        make_instance(study=february, patient_id=pid, study_date="20200220"),
        make_instance(study=march, patient_id=pid, study_date="20200330"),
    )
    assert study_uids(client, {"PatientID": pid, "StudyDate": "20200201-20200331"}) == {
        february,
        march,
    }
    assert study_uids(client, {"PatientID": pid, "StudyDate": "20200220-"}) == {february, march}
    assert study_uids(client, {"PatientID": pid, "StudyDate": "-20200220"}) == {january, february}
    assert study_uids(client, {"PatientID": pid, "StudyDate": "20200220"}) == {february}
    assert study_uids(client, {"PatientID": pid, "StudyDate": "20200111-20200219"}) == set()


def test_time_range(client: httpx.Client) -> None:
    pid = new_pid()
    early, mid, late = (generate_uid() for _ in range(3))
    store(
        client,
        make_instance(study=early, patient_id=pid, study_time="0830"),
        make_instance(study=mid, patient_id=pid, study_time="101500.5"),
        make_instance(study=late, patient_id=pid, study_time="235959"),
    )
    assert study_uids(client, {"PatientID": pid, "StudyTime": "08-1015"}) == {early, mid}
    assert study_uids(client, {"PatientID": pid, "StudyTime": "1016-"}) == {late}
    assert study_uids(client, {"PatientID": pid, "StudyTime": "-0829"}) == set()
    assert study_uids(client, {"PatientID": pid, "StudyTime": "-08"}) == {early}
    assert study_uids(client, {"PatientID": pid, "StudyTime": "1015"}) == {mid}


def test_person_name_is_case_insensitive(client: httpx.Client) -> None:
    pid = new_pid()
    study = generate_uid()
    store(client, make_instance(study=study, patient_id=pid, patient_name="McDonald^Ronald^^^"))
    for value in (
        "mcdonald^ronald",
        "MCDONALD^RONALD",
        "McDonald^Ronald",
        "mcd*",
        "*RON*",
        "McDonald^R?nald",
    ):
        assert study_uids(client, {"PatientID": pid, "PatientName": value}) == {study}, value
    for value in ("mcdonald", "ronald", "McDonald^Ronald^X", "x*"):
        assert study_uids(client, {"PatientID": pid, "PatientName": value}) == set(), value


def test_fuzzy_matching_prefixes_each_component(client: httpx.Client) -> None:
    pid = new_pid()
    study = generate_uid()
    store(
        client,
        make_instance(
            study=study,
            patient_id=pid,
            patient_name="Gonzalez^Maria^Elena",
            ReferringPhysicianName="Ng^Alice",
        ),
    )
    fuzzy = {"PatientID": pid, "fuzzymatching": "true"}
    for value in ("mar", "GON", "ele mar", "maria^gonz", "Gonzalez^Maria^Elena"):
        assert study_uids(client, fuzzy | {"PatientName": value}) == {study}, value
    for value in ("ria", "mar^x", "elenax"):
        assert study_uids(client, fuzzy | {"PatientName": value}) == set(), value
    assert study_uids(client, {"PatientID": pid, "PatientName": "mar"}) == set()  # not fuzzy: exact
    assert study_uids(client, fuzzy | {"ReferringPhysicianName": "ali"}) == {study}
    assert study_uids(client, fuzzy | {"ReferringPhysicianName": "bob"}) == set()


def iso2022_ir58_instance(**kwargs: Any) -> bytes:
    """Zhang^San=张^三 in ISO 2022 IR 58: ideographic components after ESC $ ) A (PS3.5 Annex K).

    Made by hand: pydicom 3.0 writes GB2312 bytes without the designating escape sequence.
    """
    gb = b"\x1b$)A" + "张".encode("gb2312") + b"^" + b"\x1b$)A" + "三".encode("gb2312")
    value = b"Zhang^San=" + gb
    placeholder = b"Zhang^San=" + b"X" * len(gb)
    data = to_bytes(
        make_instance(patient_name=placeholder.decode(), charset=["", "ISO 2022 IR 58"], **kwargs)
    )
    assert data.count(placeholder) == 1
    return data.replace(placeholder, value)


def chinese_instance(charset: str, **kwargs: Any) -> pydicom.Dataset | bytes:
    if charset in ("GB18030", "GBK"):
        return make_instance(patient_name="Zhang^San=张^三", charset=charset, **kwargs)
    return iso2022_ir58_instance(**kwargs)


@pytest.mark.parametrize("charset", ["GB18030", "GBK", "ISO 2022 IR 58"])
def test_chinese_name_by_ideographic_group(client: httpx.Client, charset: str) -> None:
    pid = new_pid()
    study = generate_uid()
    store(client, chinese_instance(charset, study=study, patient_id=pid))
    [item] = search(client, "/studies", {"StudyInstanceUID": study})
    assert item[PATIENT_NAME]["Value"][0] == {"Alphabetic": "Zhang^San", "Ideographic": "张^三"}
    for value in ("张^三", "=张^三", "张*", "*^三", "zhang^san", "Zhang^San=张^三"):
        assert study_uids(client, {"PatientID": pid, "PatientName": value}) == {study}, value
    assert study_uids(client, {"PatientID": pid, "PatientName": "李^四"}) == set()
    assert study_uids(client, {"PatientID": pid, "PatientName": "张^三=zhang^san"}) == set()
    assert study in study_uids(client, {"PatientName": "张^三"})
    fuzzy = {"PatientID": pid, "PatientName": "三", "fuzzymatching": "true"}
    assert study_uids(client, fuzzy) == {study}


def test_sequence_matching(client: httpx.Client) -> None:
    pid = new_pid()
    study, wanted, other = generate_uid(), generate_uid(), generate_uid()
    request = pydicom.Dataset()
    request.RequestedProcedureID = f"RP{pid}"
    request.ScheduledProcedureStepID = f"SPS{pid}"
    store(
        client,
        make_instance(
            study=study,
            series=wanted,
            patient_id=pid,
            RequestAttributesSequence=pydicom.Sequence([request]),
        ),
        make_instance(study=study, series=other, patient_id=pid, SeriesNumber=2),
    )
    for key in ("RequestAttributesSequence.RequestedProcedureID", "00400275.00401001"):
        items = search(client, f"/studies/{study}/series", {key: f"RP{pid}"})
        assert values(items, SERIES_UID) == [wanted]
        assert items[0]["00400275"]["Value"][0]["00401001"]["Value"] == [f"RP{pid}"]
    items = search(
        client, "/series", {"RequestAttributesSequence.ScheduledProcedureStepID": f"SPS{pid}"}
    )
    assert values(items, SERIES_UID) == [wanted]
    assert search(client, f"/studies/{study}/series", {"00400275.00401001": "RP*nothing"}) == []


# -- what is returned --------------------------------------------------------------------


def test_includefield_keyword_hex_and_all(client: httpx.Client) -> None:
    pid = new_pid()
    study = generate_uid()
    store(
        client,
        make_instance(
            study=study, patient_id=pid, InstitutionName="General Hospital", PatientWeight=61.5
        ),
    )
    [default] = search(client, "/studies", {"PatientID": pid})
    assert "00080080" not in default and "00101030" not in default
    [item] = search(
        client, "/studies", {"PatientID": pid, "includefield": "InstitutionName,00101030"}
    )
    assert item["00080080"]["Value"] == ["General Hospital"]
    assert item["00101030"]["Value"] == [61.5]
    [item] = search(
        client,
        "/studies",
        [("PatientID", pid), ("includefield", "00081032"), ("includefield", "SeriesDescription")],
    )
    assert item["00081032"] == {"vr": "SQ"}  # requested, absent: returned empty
    assert "0008103E" not in item  # a series attribute is not returned at study level
    [item] = search(client, "/studies", {"PatientID": pid, "includefield": "all"})
    assert item["00080080"]["Value"] == ["General Hospital"]
    assert item["00101030"]["Value"] == [61.5]
    assert "00280010" not in item


def test_instance_includefield_and_all(client: httpx.Client, server: Any) -> None:
    pid = new_pid()
    ds = make_instance(patient_id=pid)
    store(client, ds)
    base = f"/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}/instances"
    [item] = search(client, base, {"includefield": "ImagePositionPatient"})
    assert item["00200032"]["Value"] == [0, 0, 1.25]
    assert "7FE00010" not in item
    [item] = search(client, base, {"includefield": "all"})
    assert item["7FE00010"]["BulkDataURI"].startswith("http://127.0.0.1:")
    assert item["7FE00010"]["BulkDataURI"].endswith(
        f"/instances/{ds.SOPInstanceUID}/bulkdata/7FE00010"
    )
    assert item["00280030"]["Value"] == [0.7, 0.7]


def test_default_attributes_and_retrieve_urls(client: httpx.Client, server: Any) -> None:
    pid = new_pid()
    ds = make_instance(patient_id=pid, patient_name="Doe^Jane")
    store(client, ds)
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    [item] = search(client, "/studies", {"PatientID": pid})
    for tag in (
        "00080020",
        "00080030",
        "00080050",
        "00080061",
        "00080090",
        "00100010",
        "00100020",
        "00100030",
        "00100040",
        "0020000D",
        "00200010",
        "00201206",
        "00201208",
    ):
        assert tag in item, tag
    assert item["00080056"]["Value"] == ["ONLINE"]
    assert item[RETRIEVE_URL]["Value"] == [f"{server.dicomweb}/studies/{study}"]
    [item] = search(client, f"/studies/{study}/series")
    assert item[RETRIEVE_URL]["Value"] == [f"{server.dicomweb}/studies/{study}/series/{series}"]
    [item] = search(client, f"/studies/{study}/series/{series}/instances")
    assert item[RETRIEVE_URL]["Value"] == [
        f"{server.dicomweb}/studies/{study}/series/{series}/instances/{sop}"
    ]
    assert item["00280010"]["Value"] == [16] and item["00080016"]["Value"] == [ds.SOPClassUID]


def test_limit_offset_and_warning(client: httpx.Client) -> None:
    pid = new_pid()
    studies = [generate_uid() for _ in range(5)]
    store(
        client,
        *(
            make_instance(study=s, patient_id=pid, study_date=f"2021010{i + 1}")
            for i, s in enumerate(studies)
        ),
    )
    newest_first = list(reversed(studies))
    response = client.get("/studies", params={"PatientID": pid, "limit": "2"})
    assert response.status_code == 200
    assert values(response.json(), STUDY_UID) == newest_first[:2]
    warning = response.headers.get("warning", "")
    assert warning.startswith("299 cloudfilm ") and "offset=2" in warning
    response = client.get("/studies", params={"PatientID": pid, "limit": "2", "offset": "2"})
    assert values(response.json(), STUDY_UID) == newest_first[2:4]
    assert "offset=4" in response.headers.get("warning", "")
    response = client.get("/studies", params={"PatientID": pid, "limit": "2", "offset": "4"})
    assert values(response.json(), STUDY_UID) == newest_first[4:]
    assert "warning" not in response.headers
    response = client.get("/studies", params={"PatientID": pid, "limit": "5"})
    assert len(response.json()) == 5 and "warning" not in response.headers
    response = client.get("/studies", params={"PatientID": pid, "offset": "9"})
    assert response.status_code == 200 and response.json() == []


def test_computed_counts_and_modalities_in_study(client: httpx.Client) -> None:
    pid = new_pid()
    study, ct, mr = generate_uid(), generate_uid(), generate_uid()
    store(
        client,
        make_instance(study=study, series=ct, patient_id=pid, modality="CT", instance_number=1),
        make_instance(study=study, series=ct, patient_id=pid, modality="CT", instance_number=2),
        make_instance(study=study, series=mr, patient_id=pid, modality="MR", SeriesNumber=2),
        make_instance(patient_id=pid, modality="US"),
    )
    [item] = search(client, "/studies", {"PatientID": pid, "ModalitiesInStudy": "MR"})
    assert item[STUDY_UID]["Value"] == [study]
    assert item["00080061"]["Value"] == ["CT", "MR"]
    assert item["00201206"]["Value"] == [2]
    assert item["00201208"]["Value"] == [3]
    assert len(search(client, "/studies", {"PatientID": pid, "ModalitiesInStudy": "CT\\US"})) == 2
    assert len(search(client, "/studies", {"PatientID": pid, "ModalitiesInStudy": "M?"})) == 1
    assert search(client, "/studies", {"PatientID": pid, "ModalitiesInStudy": "XA"}) == []
    items = search(client, f"/studies/{study}/series")
    assert values(items, SERIES_UID) == [ct, mr]
    assert values(items, "00201209") == [2, 1]
    assert values(items, "00080060") == ["CT", "MR"]


def test_every_resource_path(client: httpx.Client) -> None:
    pid = new_pid()
    study, first, second = generate_uid(), generate_uid(), generate_uid()
    sops = [generate_uid() for _ in range(3)]
    store(
        client,  # stored out of order: results come in InstanceNumber order
        make_instance(study=study, series=first, sop=sops[2], patient_id=pid, instance_number=3),
        make_instance(study=study, series=first, sop=sops[0], patient_id=pid, instance_number=1),
        make_instance(
            study=study,
            series=second,
            sop=sops[1],
            patient_id=pid,
            instance_number=2,
            SeriesNumber=2,
            modality="MR",
        ),
        make_instance(patient_id=pid),
    )
    in_study = search(client, f"/studies/{study}/series")
    assert values(in_study, SERIES_UID) == [first, second]
    assert "00201206" not in in_study[0]  # study attributes only for /series (PS3.18 §10.6.3.3.2)
    all_series = search(client, "/series", {"PatientID": pid})
    assert len(all_series) == 3
    assert {item["00201206"]["Value"][0] for item in all_series} == {1, 2}
    assert values(search(client, "/series", {"PatientID": pid, "Modality": "MR"}), SERIES_UID) == [
        second
    ]
    in_series = search(client, f"/studies/{study}/series/{first}/instances")
    assert values(in_series, SOP_UID) == [sops[0], sops[2]]
    assert "0020000E" in in_series[0] and "00201209" not in in_series[0]
    in_study_instances = search(client, f"/studies/{study}/instances")
    assert values(in_study_instances, SOP_UID) == sops
    assert values(in_study_instances, "00201209") == [2, 1, 2]  # series attributes included
    assert "00201208" not in in_study_instances[0]
    everywhere = search(client, "/instances", {"PatientID": pid})
    assert len(everywhere) == 4
    assert {item["00201208"]["Value"][0] for item in everywhere} == {1, 3}
    by_uid = search(client, "/instances", {"SOPInstanceUID": sops[1]})
    assert values(by_uid, SERIES_UID) == [second]
    assert values(
        search(client, f"/studies/{study}/instances", {"InstanceNumber": "3"}), SOP_UID
    ) == [sops[2]]


def test_no_match_is_an_empty_array(client: httpx.Client) -> None:
    response = client.get("/studies", params={"PatientID": new_pid()})
    assert response.status_code == 200
    assert response.json() == []


# -- errors and negotiation --------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"PatientNam": "x"}, "PatientNam"),
        ({"limit": "-1"}, "limit"),
        ({"offset": "many"}, "offset"),
        ({"StudyDate": "20200301-20200101"}, "StudyDate"),
        ({"StudyInstanceUID": "1.2.*"}, "StudyInstanceUID"),
        ({"includefield": "NotAKeyword"}, "includefield"),
        ({"fuzzymatching": "perhaps"}, "fuzzymatching"),
        ({"bogus": "1"}, "bogus"),
    ],
)
def test_bad_parameter_is_400_naming_it(
    client: httpx.Client, params: dict[str, str], name: str
) -> None:
    for path in ("/studies", "/series", "/instances"):
        response = client.get(path, params=params)
        assert response.status_code == 400, (path, response.text)
        assert f"'{name}'" in response.json()["error"]


def test_unknown_study_or_series_in_path_is_404(client: httpx.Client) -> None:
    pid = new_pid()
    ds = make_instance(patient_id=pid)
    store(client, ds)
    unknown = generate_uid()
    assert client.get(f"/studies/{unknown}/series").status_code == 404
    assert client.get(f"/studies/{unknown}/instances").status_code == 404
    assert (
        client.get(f"/studies/{unknown}/series/{ds.SeriesInstanceUID}/instances").status_code == 404
    )
    assert (
        client.get(f"/studies/{ds.StudyInstanceUID}/series/{unknown}/instances").status_code == 404
    )
    assert client.get(f"/studies/{ds.StudyInstanceUID}/series").status_code == 200


def test_unsupported_match_keys_are_ignored_with_a_warning(client: httpx.Client) -> None:
    pid = new_pid()
    study = generate_uid()
    store(client, make_instance(study=study, patient_id=pid, InstitutionName="Elsewhere"))
    response = client.get(
        "/studies", params={"PatientID": pid, "InstitutionName": "Nowhere", "Modality": "MR"}
    )
    assert response.status_code == 200
    assert values(response.json(), STUDY_UID) == [study]  # not filtered by the ignored keys
    warning = response.headers["warning"]
    assert "The following query keys were ignored: InstitutionName, Modality" in warning
    item = response.json()[0]
    assert item["00080080"]["Value"] == ["Elsewhere"]  # a study-level match key is returned
    assert "00080060" not in item


def test_accept_negotiation(client: httpx.Client) -> None:
    ok = client.get(
        "/studies",
        params={"PatientID": new_pid()},
        headers={"Accept": "application/dicom+json, application/json"},
    )
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("application/dicom+json")
    plain = client.get(
        "/studies", params={"PatientID": new_pid()}, headers={"Accept": "application/json"}
    )
    assert plain.status_code == 200 and plain.headers["content-type"].startswith("application/json")
    xml = client.get(
        "/studies", headers={"Accept": 'multipart/related; type="application/dicom+xml"'}
    )
    assert xml.status_code == 406
    assert client.get("/studies", headers={"Accept": "text/html"}).status_code == 406


# -- an independent client ---------------------------------------------------------------


def test_dicomweb_client_searches(client: httpx.Client, server: Any) -> None:
    pid = new_pid()
    studies = [generate_uid() for _ in range(3)]
    store(
        client,
        *(
            make_instance(
                study=s, patient_id=pid, patient_name="Client^Test", study_date=f"2022060{i + 1}"
            )
            for i, s in enumerate(studies)
        ),
    )
    web = DICOMwebClient(url=server.dicomweb, headers=server.auth)
    found = web.search_for_studies(search_filters={"PatientID": pid})
    assert {item[STUDY_UID]["Value"][0] for item in found} == set(studies)
    found = web.search_for_studies(
        search_filters={"PatientID": pid, "StudyDate": "20220602-"},
        fields=["StudyDescription"],
        limit=1,
    )
    assert [item[STUDY_UID]["Value"][0] for item in found] == [studies[2]]
    assert found[0]["00081030"]["Value"] == ["CT CHEST"]
    series = web.search_for_series(study_instance_uid=studies[0])
    assert len(series) == 1 and series[0]["00201209"]["Value"] == [1]
    fuzzy = web.search_for_studies(
        search_filters={"PatientID": pid, "PatientName": "cli te"}, fuzzymatching=True
    )
    assert len(fuzzy) == 3


# -- the access-control seam (no server: straight to the index) ---------------------------


def seed_index(url: str, folder: Path, datasets: list[pydicom.Dataset]) -> Index:
    """An index holding ``datasets``, written the way ingest writes them (no blobs needed)."""
    index = Index(url)
    index.migrate()
    with index.write_session() as session:
        cache = ParentCache()
        for number, ds in enumerate(datasets):
            path = folder / f"{number}.dcm"
            path.write_bytes(to_bytes(ds))
            facts = parse_instance(path)
            write_instance(session, facts, blob_key=f"k{number}", size=1, sha256="0", cache=cache)
        session.commit()
    return index


@pytest.mark.parametrize("kind", DATABASES)
def test_visible_filter_applies_to_matching_and_counts(kind: str, tmp_path: Path) -> None:
    study, hidden_study = generate_uid(), generate_uid()
    shown = [
        make_instance(study=study, series="1.2.9.1", patient_id="V1"),
        make_instance(study=study, series="1.2.9.1", patient_id="V1", instance_number=2),
    ]
    hidden = [
        make_instance(study=study, series="1.2.9.2", patient_id="V1", modality="MR"),
        make_instance(study=hidden_study, patient_id="V1"),
    ]
    url, schema = database_url_for(kind, tmp_path)
    index = seed_index(url, tmp_path, shown + hidden)
    try:
        visible = InstanceRow.sop_uid.in_([ds.SOPInstanceUID for ds in shown])
        service = QueryService(index)
        by_patient = parse_query([("PatientID", "V1")], Level.STUDY)
        assert len(service.search_studies(by_patient).items) == 2
        [item] = service.search_studies(by_patient, visible=visible).items
        assert item["00201206"]["Value"] == [1] and item["00201208"]["Value"] == [2]
        assert item["00080061"]["Value"] == ["CT"]
        by_modality = parse_query([("ModalitiesInStudy", "MR")], Level.STUDY)
        assert len(service.search_studies(by_modality).items) == 1
        assert service.search_studies(by_modality, visible=visible).items == []
        series = service.search_series(parse_query([], Level.SERIES), study, visible=visible).items
        assert [s["0020000E"]["Value"][0] for s in series] == ["1.2.9.1"]
        assert series[0]["00201209"]["Value"] == [2]
        instances = service.search_instances(parse_query([], Level.IMAGE), visible=visible).items
        assert sorted(i[SOP_UID]["Value"][0] for i in instances) == sorted(
            ds.SOPInstanceUID for ds in shown
        )
        with pytest.raises(UnknownStudy):
            service.search_series(parse_query([], Level.SERIES), hidden_study, visible=visible)
    finally:
        index.dispose()
        if schema:
            schema.drop()


def test_every_name_group_is_searchable_including_phonetic(client: httpx.Client) -> None:
    """PS3.5 §6.2.1: Alphabetic=Ideographic=Phonetic; each group finds the patient."""
    pid = new_pid()
    study = generate_uid()
    name = "Wang^Fang=王^芳=ワン^ファン"
    store(client, make_instance(patient_name=name, charset=["ISO_IR 192"], study=study, patient_id=pid))
    for value in ("wang^fang", "王^芳", "ワン*", "==ワン^ファン", "*ファン"):
        assert study_uids(client, {"PatientID": pid, "PatientName": value}) == {study}, value
    assert study_uids(client, {"PatientID": pid, "PatientName": "==王^芳"}) == set()
