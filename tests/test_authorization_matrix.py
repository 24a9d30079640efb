"""The authorisation matrix: every role × endpoint family × own, shared and unrelated data.

One real server per database, with two patients at two hospitals, a caregiver, a
physician holding a view-only grant, a share link, an operator and an admin, plus
DICOM nodes that see all, their own hospital's studies, or nothing. Each row of
MATRIX is (who, which study, expected outcome per endpoint); each cell is one real
request. "Denied" is checked as the caller would meet it: 401 for nobody, 404 (the
same as a missing study) or absence from a list for everyone else.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pydicom
import pytest
from pydicom import Dataset
from pynetdicom import AE, build_role
from pynetdicom.sop_class import (
    CTImageStorage,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
)

from conftest import Server, admin_token, database_url_for, free_port
from factory import make_instance, multipart_related, to_bytes
from jobs_wait import wait_for_tracking

Y, N = True, False  # allowed / denied

# Studies: "own" and "unrelated" are relative to the patient; the physicians' grants and the
# share links each cover one study of patient 1, and two studies belong to nobody (one under
# patient 2's PatientID at another hospital).
STUDIES = {
    "p1_granted": dict(patient_id="P1", issuer="HOSP_A", patient_name="Wang^Fang"),
    "p1_linked": dict(patient_id="P1-B", issuer="HOSP_B", patient_name="Wang^Fang"),
    "p2": dict(patient_id="P2", issuer="HOSP_A", patient_name="Li^Lei"),
    "nobody": dict(patient_id="P9", issuer="HOSP_B", patient_name="Zhao^Qi"),
    "p2_elsewhere": dict(patient_id="P2", issuer="HOSP_B", patient_name="Sun^Mei"),
}

# Grants on p1_granted (physicians) and p1_linked (links), by their permissions.
PHYSICIAN_GRANTS = {"physician": ("doc-one", ["view"]),
                    "physician_dl": ("doc-two", ["view", "download"]),
                    "physician_rw": ("doc-three", ["view", "upload"])}
LINK_GRANTS = {"link": ["view"], "link_dl": ["view", "download"]}

# who × study → (qido, metadata, frames, thumbnail, wado-uri image/jpeg, wado-uri
# application/dicom, instance retrieve, study retrieve, export, timeline). The original
# Part-10 objects (uri_dicom, instance, retrieve, export) need "download"; the images and
# their metadata need "view".
ENDPOINTS = ("qido", "metadata", "frames", "thumbnail", "uri_jpeg", "uri_dicom", "instance",
             "retrieve", "export", "timeline")
MATRIX: list[tuple[str, str, tuple[bool, ...]]] = [
    # who            study         qido meta frame thumb jpeg dicom inst retr export timeline
    ("patient",      "p1_granted", (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),  # own, A
    ("patient",      "p1_linked",  (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),  # own, B
    ("patient",      "p2",         (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),  # unrelated
    ("patient",      "nobody",     (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("caregiver",    "p1_granted", (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),  # acts for 1
    ("caregiver",    "p1_linked",  (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),
    ("caregiver",    "p2",         (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("physician",    "p1_granted", (Y,  Y,   Y,    Y,    Y,   N,    N,   N,   N,     Y)),  # view only
    ("physician",    "p1_linked",  (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),  # not shared
    ("physician",    "p2",         (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("physician_dl", "p1_granted", (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),  # download
    ("physician_dl", "p1_linked",  (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("physician_rw", "p1_granted", (Y,  Y,   Y,    Y,    Y,   N,    N,   N,   N,     Y)),  # may write
    ("link",         "p1_linked",  (Y,  Y,   Y,    Y,    Y,   N,    N,   N,   N,     Y)),  # view only
    ("link",         "p1_granted", (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),  # not shared
    ("link",         "p2",         (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("link_dl",      "p1_linked",  (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),  # download
    ("link_dl",      "p1_granted", (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("operator",     "p2",         (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),  # hospital IT
    ("operator",     "nobody",     (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     N)),  # no person
    ("admin",        "p1_granted", (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     Y)),
    ("admin",        "nobody",     (Y,  Y,   Y,    Y,    Y,   Y,    Y,   Y,   Y,     N)),
    ("anonymous",    "p1_granted", (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("anonymous",    "nobody",     (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
    ("researcher",   "p1_granted", (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),  # issue 15
    ("researcher",   "nobody",     (N,  N,   N,    N,    N,   N,    N,   N,   N,     N)),
]

# who × study → may STOW a new instance into that study (the upload permission)
UPLOADS: list[tuple[str, str, bool]] = [
    ("patient", "p1_granted", Y), ("patient", "p2", N),
    ("caregiver", "p1_linked", Y), ("caregiver", "p2", N),
    ("physician", "p1_granted", N), ("physician_dl", "p1_granted", N),
    ("physician_rw", "p1_granted", Y), ("physician_rw", "p1_linked", N),
    ("link", "p1_linked", N),
    ("operator", "p2", Y), ("admin", "nobody", Y), ("anonymous", "p1_granted", N),
]

# who × study → HTTP status of writing a nodule measurement (which becomes an SR in the
# study): a hospital role, or a physician whose grant allows writing; 403 for a caller who
# may see the study but not write, 404 for one who may not see it, 401 for a link.
WRITES: list[tuple[str, str, int]] = [
    ("physician", "p1_granted", 403), ("physician_dl", "p1_granted", 403),
    ("physician_rw", "p1_granted", 201), ("physician_rw", "p1_linked", 404),
    ("physician", "p2", 404), ("patient", "p1_granted", 403), ("link", "p1_linked", 401),
    ("operator", "p2", 201), ("admin", "nobody", 201),
]

# calling AE × study → visible to C-FIND (and retrievable by C-GET)
NODES = {"ALLNODE": ("all", ""), "HOSPA": ("own", "HOSP_A"), "BLIND": ("none", "")}
DIMSE: list[tuple[str, str, bool]] = [
    ("ALLNODE", "p1_granted", Y), ("ALLNODE", "nobody", Y),
    ("HOSPA", "p1_granted", Y), ("HOSPA", "p2", Y), ("HOSPA", "p1_linked", N),
    ("HOSPA", "nobody", N),
    ("BLIND", "p1_granted", N), ("BLIND", "nobody", N),
    ("STRANGER", "p1_granted", N), ("STRANGER", "p2", N),  # not a known node at all
]


@dataclass
class World:
    server: Server
    studies: dict[str, str] = field(default_factory=dict)  # name → StudyInstanceUID
    series: dict[str, str] = field(default_factory=dict)
    sops: dict[str, str] = field(default_factory=dict)
    persons: dict[str, int] = field(default_factory=dict)
    clients: dict[str, httpx.Client] = field(default_factory=dict)

    def person_of(self, study: str) -> int | None:
        return {"p1_granted": self.persons["p1"], "p1_linked": self.persons["p1"],
                "p2": self.persons["p2"]}.get(study)


def _stow(client: httpx.Client, parts: list[bytes]) -> httpx.Response:
    body, content_type = multipart_related(parts)
    return client.post("/dicomweb/studies", content=body,
                       headers={"content-type": content_type, "accept": "application/dicom+json"})


def _token_client(server: Server, username: str, role: str) -> httpx.Client:
    token = admin_token(server.database_url, username, role)
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"},
                        timeout=60)


def _link_session(server: Server, url: str) -> httpx.Client:
    """Open a share link as a fresh browser would: the secret becomes a session cookie."""
    browser = httpx.Client(base_url=server.url, timeout=60)
    opened = browser.get(url.replace(server.url, ""), follow_redirects=False)
    assert opened.status_code == 303 and "cf_session" in opened.cookies
    browser.headers["X-CSRF-Token"] = browser.cookies["cf_csrf"]
    return browser


def _build(server: Server) -> World:
    world = World(server)
    admin = server.http()
    world.clients["admin"] = admin
    for name, patient in STUDIES.items():
        ds = make_instance(**patient, rows=32, columns=32)
        assert _stow(admin, [to_bytes(ds)]).status_code == 200
        world.studies[name] = ds.StudyInstanceUID
        world.series[name] = ds.SeriesInstanceUID
        world.sops[name] = ds.SOPInstanceUID
    world.clients["patient"] = _token_client(server, "pat-one", "patient")
    world.clients["patient2"] = _token_client(server, "pat-two", "patient")
    world.clients["caregiver"] = _token_client(server, "care-one", "caregiver")
    for who, (username, _permissions) in PHYSICIAN_GRANTS.items():
        world.clients[who] = _token_client(server, username, "physician")
    world.clients["operator"] = _token_client(server, "op-one", "operator")
    world.clients["researcher"] = _token_client(server, "res-one", "researcher")
    world.clients["anonymous"] = httpx.Client(base_url=server.url, timeout=60)
    for key, client, records in (("p1", "patient", [("P1", "HOSP_A"), ("P1-B", "HOSP_B")]),
                                 ("p2", "patient2", [("P2", "HOSP_A")])):
        world.persons[key] = world.clients[client].get("/api/me").json()["person_id"]
        for patient_id, issuer in records:
            linked = admin.post(f"/api/persons/{world.persons[key]}/records",
                                json={"patient_id": patient_id, "issuer": issuer})
            assert linked.status_code == 201, linked.text
    cared = admin.post(f"/api/persons/{world.persons['p1']}/caregivers",
                       json={"username": "care-one"})
    assert cared.status_code == 201, cared.text
    patient = world.clients["patient"]
    for username, permissions in PHYSICIAN_GRANTS.values():
        granted = patient.post("/api/shares", json={
            "scope": {"studies": [world.studies["p1_granted"]]},
            "audience": {"physician": username}, "permissions": permissions})
        assert granted.status_code == 201, granted.text
    for who, permissions in LINK_GRANTS.items():
        link = patient.post("/api/shares", json={
            "scope": {"studies": [world.studies["p1_linked"]]}, "audience": "link",
            "permissions": permissions})
        assert link.status_code == 201, link.text
        world.clients[who] = _link_session(server, link.json()["url"])
    return world


@pytest.fixture(scope="module")
def world(database_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    data_dir = tmp_path_factory.mktemp(f"matrix-{database_kind}") / "data"
    url, schema = database_url_for(database_kind, data_dir)
    server = Server(data_dir, url, dimse_port=free_port()).start()
    try:
        built = _build(server)
        admin = built.clients["admin"]
        for aet, (sees, issuer) in NODES.items():
            added = admin.post("/api/admin/nodes", json={
                "name": aet.lower(), "aet": aet, "host": "127.0.0.1", "port": 104,
                "sees": sees, "issuer": issuer})
            assert added.status_code == 201, added.text
        yield built
        for client in built.clients.values():
            client.close()
    finally:
        server.stop()
        if schema:
            schema.drop()


def _seen(world: World, who: str, endpoint: str, study: str) -> bool:
    """Perform one cell's request; True if the caller got the study, False if denied."""
    client, uid = world.clients[who], world.studies[study]
    series, sop = world.series[study], world.sops[study]
    instance = f"/dicomweb/studies/{uid}/series/{series}/instances/{sop}"
    wado_uri = {"requestType": "WADO", "studyUID": uid, "seriesUID": series, "objectUID": sop}
    as_dicom = {"Accept": 'multipart/related; type="application/dicom"'}
    if endpoint == "qido":
        found = client.get("/dicomweb/studies", params={"StudyInstanceUID": uid})
        return _ok(found, who) and len(found.json()) == 1
    if endpoint == "metadata":
        return _ok(client.get(f"/dicomweb/studies/{uid}/metadata"), who)
    if endpoint == "frames":
        return _ok(client.get(f"{instance}/frames/1", headers={
            "Accept": 'multipart/related; type="application/octet-stream"'}), who)
    if endpoint == "thumbnail":
        return _ok(client.get(f"{instance}/thumbnail", headers={"Accept": "image/png"}), who)
    if endpoint == "uri_jpeg":
        got = client.get("/wado", params=wado_uri | {"contentType": "image/jpeg"})
        return _ok(got, who) and got.content[:2] == b"\xff\xd8"
    if endpoint == "uri_dicom":
        got = client.get("/wado", params=wado_uri | {"contentType": "application/dicom"})
        return _ok(got, who) and got.content[128:132] == b"DICM"
    if endpoint == "instance":
        return _ok(client.get(instance, headers=as_dicom), who)
    if endpoint == "retrieve":
        return _ok(client.get(f"/dicomweb/studies/{uid}", headers=as_dicom), who)
    if endpoint == "export":
        exported = client.get(f"/api/studies/{uid}/export.zip")
        if not _ok(exported, who):
            return False
        names = zipfile.ZipFile(io.BytesIO(exported.content)).namelist()
        return "DICOMDIR" in names
    if endpoint == "timeline":
        person = world.person_of(study)
        if person is None:
            return False
        timeline = client.get(f"/api/patients/{person}/timeline")
        return _ok(timeline, who) and uid in {s["study_uid"] for s in timeline.json()["studies"]}
    raise AssertionError(endpoint)


def _ok(response: httpx.Response, who: str) -> bool:
    """200 is allowed; a denial must look like nothing is there (or like no login)."""
    if response.status_code == 200:
        return True
    expected = {401} if who == "anonymous" else {404}
    assert response.status_code in expected, (who, response.request.url, response.status_code,
                                              response.text[:300])
    return False


@pytest.mark.parametrize(("who", "study", "expected"), MATRIX,
                         ids=[f"{w}-{s}" for w, s, _ in MATRIX])
def test_http_matrix(world: World, who: str, study: str, expected: tuple[bool, ...]) -> None:
    got = tuple(_seen(world, who, endpoint, study) for endpoint in ENDPOINTS)
    assert dict(zip(ENDPOINTS, got, strict=True)) == dict(zip(ENDPOINTS, expected, strict=True))


@pytest.mark.parametrize(("who", "study", "allowed"), UPLOADS,
                         ids=[f"{w}-{s}" for w, s, _ in UPLOADS])
def test_stow_matrix(world: World, who: str, study: str, allowed: bool) -> None:
    """A new instance into an existing study: only where the caller may upload."""
    patient = STUDIES[study]
    ds = make_instance(study=world.studies[study], **patient)
    stored = _stow(world.clients[who], [to_bytes(ds)])
    if who == "anonymous":
        assert stored.status_code == 401
        return
    assert stored.status_code == (200 if allowed else 409), stored.text
    if not allowed:
        failed = stored.json()["00081198"]["Value"][0]
        assert failed["00081197"]["Value"] == [0x0124]
    visible = world.clients["admin"].get(
        f"/dicomweb/studies/{world.studies[study]}/series/{ds.SeriesInstanceUID}/instances")
    assert (visible.status_code == 200) is allowed


def test_pages_need_a_login_or_a_link(world: World) -> None:
    """Pages: nobody is sent to the login page; the share page shows only the link's study."""
    anonymous = world.clients["anonymous"].get("/shared", headers={"Accept": "text/html"})
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    link = world.clients["link"]
    assert link.get(f"/shared/studies/{world.studies['p1_linked']}").status_code == 200
    for other in ("p1_granted", "p2", "nobody"):
        assert link.get(f"/shared/studies/{world.studies[other]}").status_code == 404
    for public in ("/login", "/healthz"):
        assert world.clients["anonymous"].get(public).status_code == 200


def test_a_series_of_another_study_cannot_widen_a_link(world: World) -> None:
    """URL tricks: the shared study's UID with another study's series or instance."""
    shared, other = world.studies["p1_linked"], "p2"
    link = world.clients["link"]
    base = f"/dicomweb/studies/{shared}/series/{world.series[other]}"
    assert link.get(f"{base}/metadata").status_code == 404
    assert link.get(f"{base}/instances/{world.sops[other]}/frames/1").status_code == 404
    assert link.get("/dicomweb/series", params={"SeriesInstanceUID": world.series[other]}).json() == []
    assert link.get("/dicomweb/instances", params={"PatientID": "P2"}).json() == []


def test_qido_counts_only_what_the_caller_sees(world: World) -> None:
    """Computed attributes never leak: the link sees one series and one instance, even after
    other studies of the same patient grew."""
    found = world.clients["link"].get("/dicomweb/studies", params={
        "PatientID": "P1-B", "includefield": "NumberOfStudyRelatedInstances"}).json()
    assert [s["0020000D"]["Value"][0] for s in found] == [world.studies["p1_linked"]]
    admin_view = world.clients["admin"].get("/dicomweb/studies", params={
        "StudyInstanceUID": world.studies["p1_linked"],
        "includefield": "NumberOfStudyRelatedInstances"}).json()
    assert found[0]["00201208"] == admin_view[0]["00201208"]
    patients = world.clients["physician"].get("/dicomweb/studies", params={"PatientID": "P1*"})
    assert [s["0020000D"]["Value"][0] for s in patients.json()] == [world.studies["p1_granted"]]


def _c_find(world: World, aet: str, uid: str) -> int:
    ae = AE(ae_title=aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
    assoc = ae.associate("127.0.0.1", world.server.dimse_port, ae_title=world.server.ae_title)
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = uid
    try:
        return sum(1 for status, identifier in assoc.send_c_find(
            query, StudyRootQueryRetrieveInformationModelFind)
            if status and status.Status in (0xFF00, 0xFF01) and identifier is not None)
    finally:
        assoc.release()


def _c_get(world: World, aet: str, uid: str) -> int:
    received: list[str] = []

    def on_store(event: object) -> int:
        received.append(str(event.dataset.SOPInstanceUID))  # type: ignore[attr-defined]
        return 0x0000

    ae = AE(ae_title=aet)
    ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
    ae.add_requested_context(CTImageStorage)
    from pynetdicom import evt

    assoc = ae.associate("127.0.0.1", world.server.dimse_port, ae_title=world.server.ae_title,
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert assoc.is_established
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = uid
    try:
        for _status, _identifier in assoc.send_c_get(query, StudyRootQueryRetrieveInformationModelGet):
            pass
    finally:
        assoc.release()
    return len(received)


@pytest.mark.parametrize(("aet", "study", "allowed"), DIMSE,
                         ids=[f"{a}-{s}" for a, s, _ in DIMSE])
def test_dimse_matrix(world: World, aet: str, study: str, allowed: bool) -> None:
    uid = world.studies[study]
    assert _c_find(world, aet, uid) == (1 if allowed else 0)
    assert (_c_get(world, aet, uid) > 0) is allowed


def test_denials_and_reads_are_audited(world: World) -> None:
    """The physician's view of the shared study, a refused study and a node's C-FIND all
    leave records."""
    doctor = world.clients["physician"]
    assert doctor.get(f"/dicomweb/studies/{world.studies['p1_granted']}/metadata").status_code == 200
    assert doctor.get(f"/dicomweb/studies/{world.studies['p2']}/metadata").status_code == 404
    _c_find(world, "HOSPA", world.studies["p2"])
    entries = world.clients["admin"].get("/api/audit", params={"format": "json",
                                                                "limit": 10_000}).json()
    views = {(e["who"], e["study"]) for e in entries if e["action"] == "view"
             and e["outcome"] == "success"}
    assert ("doc-one", world.studies["p1_granted"]) in views
    refused = {(e["who"], e["study"]) for e in entries if e["outcome"] == "failure"}
    assert ("doc-one", world.studies["p2"]) in refused
    queries = [e for e in entries if e["action"] == "query" and e["who"] == "aet:HOSPA"]
    assert queries, "DIMSE C-FIND by a node is audited"


def test_c_store_is_audited_once_per_association_and_study(world: World) -> None:
    study = make_instance(patient_id="P9", issuer="HOSP_B").StudyInstanceUID
    ae = AE(ae_title="ALLNODE")
    ae.add_requested_context(CTImageStorage)
    assoc = ae.associate("127.0.0.1", world.server.dimse_port, ae_title=world.server.ae_title)
    assert assoc.is_established
    try:
        for number in range(1, 4):
            ds = make_instance(study=study, patient_id="P9", issuer="HOSP_B",
                               instance_number=number)
            assert assoc.send_c_store(ds).Status == 0x0000
    finally:
        assoc.release()
    entries = world.clients["admin"].get("/api/audit", params={"format": "json",
                                                                "limit": 10_000}).json()
    stores = [e for e in entries if e["action"] == "store" and e["study"] == study]
    assert [(e["who"], e["outcome"]) for e in stores] == [("aet:ALLNODE", "success")]


def _audit_count(world: World, who: str, study: str, action: str, outcome: str) -> int:
    entries = world.clients["admin"].get("/api/audit", params={"format": "json",
                                                                "limit": 10_000}).json()
    return sum(1 for e in entries if (e["who"], e["study"], e["action"], e["outcome"])
               == (who, world.studies[study], action, outcome))


def test_an_original_is_audited_as_a_download_and_refused_to_view_only(world: World) -> None:
    """One instance as application/dicom (WADO-RS and WADO-URI) is a download: recorded as
    one, and refused, with a refusal on record, to a physician who may only view."""
    uid, series, sop = (world.studies["p1_granted"], world.series["p1_granted"],
                        world.sops["p1_granted"])
    instance = f"/dicomweb/studies/{uid}/series/{series}/instances/{sop}"
    wado_uri = {"requestType": "WADO", "studyUID": uid, "seriesUID": series, "objectUID": sop,
                "contentType": "application/dicom"}
    as_dicom = {"Accept": 'multipart/related; type="application/dicom"'}
    downloads = _audit_count(world, "doc-two", "p1_granted", "download", "success")
    assert world.clients["physician_dl"].get(instance, headers=as_dicom).status_code == 200
    assert world.clients["physician_dl"].get("/wado", params=wado_uri).status_code == 200
    assert _audit_count(world, "doc-two", "p1_granted", "download", "success") == downloads + 2
    refusals = _audit_count(world, "doc-one", "p1_granted", "download", "failure")
    assert world.clients["physician"].get(instance, headers=as_dicom).status_code == 404
    assert world.clients["physician"].get("/wado", params=wado_uri).status_code == 404
    assert _audit_count(world, "doc-one", "p1_granted", "download", "failure") == refusals + 2


def test_wado_uri_sends_a_report_as_its_file_only_to_who_may_download(world: World) -> None:
    """Without a contentType, WADO-URI sends an object without images (a report) as its
    file: that is a download, not a view."""
    report = make_instance(study=world.studies["p1_granted"], **STUDIES["p1_granted"],
                           Modality="SR", SOPClassUID="1.2.840.10008.5.1.4.1.1.88.11")
    report.file_meta.MediaStorageSOPClassUID = report.SOPClassUID
    for keyword in ("PixelData", "Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                    "PixelRepresentation", "SamplesPerPixel", "PhotometricInterpretation"):
        delattr(report, keyword)
    assert _stow(world.clients["admin"], [to_bytes(report)]).status_code == 200
    params = {"requestType": "WADO", "studyUID": report.StudyInstanceUID,
              "seriesUID": report.SeriesInstanceUID, "objectUID": report.SOPInstanceUID}
    assert world.clients["physician"].get("/wado", params=params).status_code == 404
    got = world.clients["physician_dl"].get("/wado", params=params)
    assert got.status_code == 200 and got.content[128:132] == b"DICM"


def test_patient_export_answers_by_policy_first(world: World) -> None:
    """PatientID P2 exists at two hospitals. A caller who may download none of its studies
    gets the 404 of an unknown patient (not a 409 naming the hospitals); a caller who may
    download one hospital's studies gets those; only a caller who may download both is
    asked to choose."""
    missing = world.clients["patient"].get("/api/patients/P404/export.zip")
    assert missing.status_code == 404
    for who in ("patient", "physician_dl", "link_dl"):
        hidden = world.clients[who].get("/api/patients/P2/export.zip")
        assert hidden.status_code == 404, (who, hidden.text)
        assert hidden.json() == {k: v.replace("P404", "P2") if isinstance(v, str) else v
                                 for k, v in missing.json().items()}
        assert "HOSP" not in hidden.text
    own = world.clients["patient2"].get("/api/patients/P2/export.zip")
    assert own.status_code == 200, own.text
    exported = zipfile.ZipFile(io.BytesIO(own.content))
    files = [pydicom.dcmread(io.BytesIO(exported.read(name))) for name in exported.namelist()
             if name.startswith("DICOM/")]
    assert files and {(ds.StudyInstanceUID, ds.IssuerOfPatientID) for ds in files} == \
        {(world.studies["p2"], "HOSP_A")}  # patient 2's own study, not P2 at HOSP_B
    both = world.clients["admin"].get("/api/patients/P2/export.zip")
    assert both.status_code == 409 and "HOSP_A" in both.text and "HOSP_B" in both.text


def _measurement(world: World, study: str) -> dict[str, object]:
    return {"series_uid": world.series[study], "instance_uid": world.sops[study],
            "center_patient_mm": [11.2, 11.2, 1.25], "long_axis_mm": 6.0, "short_axis_mm": 5.0,
            "nodule_type": "solid", "lobe": "RUL"}


def _report_series(world: World, study: str) -> int:
    """cloudfilm's nodule report series in the study (other SRs do not count)."""
    found = world.clients["admin"].get(f"/dicomweb/studies/{world.studies[study]}/series",
                                       params={"Modality": "SR"})
    return sum(1 for s in found.json() if s.get("0008103E", {}).get("Value")
               == ["cloudfilm nodule measurements"])


@pytest.mark.parametrize(("who", "study", "status"), WRITES,
                         ids=[f"{w}-{s}" for w, s, _ in WRITES])
def test_write_matrix(world: World, who: str, study: str, status: int) -> None:
    """A nodule measurement (stored as an SR series in the study) needs a grant that allows
    writing, or a hospital role; a refused one leaves the study as it was."""
    path = f"/api/studies/{world.studies[study]}/nodules"
    before = world.clients["admin"].get(path).json()["measurements"]
    written = world.clients[who].post(path, json=_measurement(world, study))
    assert written.status_code == status, written.text
    # The SR follows in the folder's settle job.
    after = wait_for_tracking(world.clients["admin"], world.studies[study])["measurements"]
    assert len(after) == len(before) + (1 if status == 201 else 0)
    assert (_report_series(world, study) > 0) is (len(after) > 0)


# Caregiver invitations (issue 11): who may make one, and who may accept one. A fresh
# invitation of a throwaway patient per cell, accepted by a throwaway account of that role,
# so accepting never changes what the rows above see.
INVITES: list[tuple[str, int]] = [
    ("patient", 201), ("caregiver", 403), ("physician", 403), ("operator", 403),
    ("admin", 403), ("link", 401), ("anonymous", 401),
]
JOINS: list[tuple[str, int]] = [
    ("patient", 200), ("caregiver", 200), ("physician", 403), ("operator", 403),
    ("admin", 403), ("link", 401), ("anonymous", 401),
]


def _fresh(world: World, role: str, tag: str) -> httpx.Client:
    """The role's client for the cell: a new account for roles, the shared link and nobody."""
    if role in ("link", "anonymous"):
        return world.clients[role]
    client = _token_client(world.server, f"{tag}-{role}", role)
    world.clients[f"{tag}-{role}"] = client
    return client


@pytest.mark.parametrize(("who", "status"), INVITES, ids=[w for w, _ in INVITES])
def test_invitation_matrix(world: World, who: str, status: int) -> None:
    made = _fresh(world, who, "inviter").post("/api/me/caregivers", json={})
    assert made.status_code == status, made.text


@pytest.mark.parametrize(("who", "status"), JOINS, ids=[w for w, _ in JOINS])
def test_join_matrix(world: World, who: str, status: int) -> None:
    inviter = _fresh(world, "patient", f"host-{who}")
    invitation = inviter.post("/api/me/caregivers", json={}).json()["url"].rsplit("/", 1)[1]
    joined = _fresh(world, who, "joiner").post("/api/caregiving/join",
                                                json={"invitation": invitation})
    assert joined.status_code == status, joined.text
    helpers = inviter.get("/api/me/caregivers").json()
    assert any(h.get("status") != "invited" for h in helpers) == (status == 200), helpers


# The portal's "Download" button (issue 12): the originals of one study, and every study of
# a person's folder (originals or the IHE PDI zip), only for a caller who may download;
# a view-only physician or link gets the 404 of a missing study or person.
DOWNLOADS: list[tuple[str, str, bool]] = [
    ("patient", "p1_granted", Y), ("patient", "p2", N), ("caregiver", "p1_linked", Y),
    ("physician", "p1_granted", N), ("physician_dl", "p1_granted", Y),
    ("physician_rw", "p1_granted", N), ("link", "p1_linked", N), ("link_dl", "p1_linked", Y),
    ("operator", "p2", Y), ("admin", "nobody", Y),
    ("anonymous", "p1_granted", N),
]


@pytest.mark.parametrize(("who", "study", "allowed"), DOWNLOADS,
                         ids=[f"{w}-{s}" for w, s, _ in DOWNLOADS])
def test_download_button_routes_matrix(world: World, who: str, study: str, allowed: bool) -> None:
    client, uid = world.clients[who], world.studies[study]
    originals = client.get(f"/api/studies/{uid}/originals.zip")
    assert _ok(originals, who) is allowed
    person = world.person_of(study)
    if person is None:
        return
    for kind in ("originals", "export"):
        folder = client.get(f"/api/persons/{person}/{kind}.zip")
        assert _ok(folder, who) is allowed
        if allowed:
            names = zipfile.ZipFile(io.BytesIO(folder.content)).namelist()
            assert any(name.endswith(".dcm") for name in names) is (kind == "originals")


# The viewer's tools (issue 12): GET /api/studies/{study}/tools says whether the viewer
# offers the nodule tool (and opens it for ?tool=nodule): only to a clinician whose grant
# allows writing into the study; others who may view get false, the rest a 404 (or 401).
VIEWER_TOOLS: list[tuple[str, str, bool | None]] = [
    ("patient", "p1_granted", False), ("patient", "p2", None), ("caregiver", "p1_linked", False),
    ("physician", "p1_granted", False), ("physician_dl", "p1_granted", False),
    ("physician_rw", "p1_granted", True), ("physician_rw", "p2", None),
    ("link", "p1_linked", False), ("operator", "p2", True), ("admin", "nobody", True),
    ("anonymous", "p1_granted", None),
]


@pytest.mark.parametrize(("who", "study", "measure"), VIEWER_TOOLS,
                         ids=[f"{w}-{s}" for w, s, _ in VIEWER_TOOLS])
def test_viewer_tools_matrix(world: World, who: str, study: str, measure: bool | None) -> None:
    answer = world.clients[who].get(f"/api/studies/{world.studies[study]}/tools")
    assert _ok(answer, who) is (measure is not None)
    if measure is not None:
        assert answer.json()["measure_nodule"] is measure, answer.text


# Keep it for life and family (issue 12): who reaches the sign-up, keep-a-film and
# caregiver-invite routes. Sign-up is open to everyone (an empty form is a 400, never a
# 401); keeping a film needs a patient's folder (a helper must name the person); the
# invitation alias answers like POST /api/me/caregivers.
SIGNUP_ROUTES: list[tuple[str, str, int]] = [
    (who, route, status)
    for route, statuses in (
        ("/api/signup", {"patient": 400, "caregiver": 400, "physician": 400, "operator": 400,
                         "admin": 400, "link": 400, "anonymous": 400}),
        ("/api/me/films", {"patient": 400, "caregiver": 403, "physician": 403,
                           "operator": 403, "admin": 403, "link": 401, "anonymous": 401}),
        ("/api/me/caregiver-invites", {"patient": 201, "caregiver": 403, "physician": 403,
                                       "operator": 403, "admin": 403, "link": 401,
                                       "anonymous": 401}),
    )
    for who, status in statuses.items()
]


@pytest.mark.parametrize(("who", "route", "status"), SIGNUP_ROUTES,
                         ids=[f"{w}-{r.rsplit('/', 1)[1]}" for w, r, _ in SIGNUP_ROUTES])
def test_signup_routes_matrix(world: World, who: str, route: str, status: int) -> None:
    client = _fresh(world, who, "keeper")
    answered = client.post(route, json={})
    assert answered.status_code == status, answered.text
    assert "cf_session" not in answered.cookies


# Cloud films (issue 12): the hospital desk issues, lists and withdraws films and prints
# their QR code and slip; nobody else may (a link session is not a login: 401), and the
# desk page /admin/films is "not found" to everyone but operators and admins.
FILM_ROLES = {"operator": True, "admin": True, "patient": False, "caregiver": False,
              "physician": False, "physician_rw": False, "link": False, "anonymous": False}
FILM_ROUTES: list[tuple[str, str, str, int]] = [
    (who, method, route, ok if allowed else (401 if who in ("link", "anonymous") else 403))
    for who, allowed in FILM_ROLES.items()
    for method, route, ok in (("POST", "/api/films", 201), ("GET", "/api/films?study_uid={study}", 200),
                              ("DELETE", "/api/films/{film}", 204),
                              ("GET", "/api/films/{film}/qr.png", 200),
                              ("GET", "/api/films/{film}/slip.pdf", 200))
]


@pytest.mark.parametrize(("who", "method", "route", "status"), FILM_ROUTES,
                         ids=[f"{w}-{m}-{r.split('/')[-1].split('?')[0]}"
                              for w, m, r, _ in FILM_ROUTES])
def test_film_routes_matrix(world: World, who: str, method: str, route: str,
                            status: int) -> None:
    study = world.studies["p2"]
    issued = world.clients["admin"].post("/api/films", json={"study_uid": study})
    assert issued.status_code == 201, issued.text
    url = route.format(study=study, film=issued.json()["id"])
    client = world.clients[who]
    answer = client.request(method, url, json={"study_uid": study} if method == "POST" else None)
    assert answer.status_code == status, (who, url, answer.text[:300])
    still = world.clients["admin"].get(f"/api/films?study_uid={study}").json()
    film = next(f for f in still if f["id"] == issued.json()["id"])
    assert (film["status"] == "revoked") is (method == "DELETE" and status == 204)


@pytest.mark.parametrize("who", list(FILM_ROLES), ids=list(FILM_ROLES))
def test_film_desk_page_matrix(world: World, who: str) -> None:
    answer = world.clients[who].get("/admin/films", params={"q": "P2"})
    refused = 401 if who == "anonymous" else 404
    assert answer.status_code == (200 if FILM_ROLES[who] else refused), (who, answer.text[:200])
    assert (world.studies["p2"] in answer.text) is FILM_ROLES[who]


# Opening a cloud film's URL (issue 12): without an account (or in a link session) the
# film's own share session; a signed-in patient or family helper the keep form, or the
# study itself when its record is already in their care; staff the "signed in" page.
FILM_OPEN: dict[str, tuple[int, str]] = {
    "anonymous": (303, "/shared"), "link": (303, "/shared"), "patient": (200, ""),
    "caregiver": (200, ""), "holder": (303, "/studies/{study}"), "physician": (409, ""),
    "operator": (409, ""), "admin": (409, ""),
}


@pytest.mark.parametrize("who", list(FILM_OPEN), ids=list(FILM_OPEN))
def test_film_url_matrix(world: World, who: str) -> None:
    study = world.studies["p2"]
    issued = world.clients["admin"].post("/api/films", json={"study_uid": study})
    assert issued.status_code == 201, issued.text
    path = issued.json()["url"].replace(world.server.url, "")
    if who == "anonymous":
        client = httpx.Client(base_url=world.server.url, timeout=60)
    elif who == "link":
        link = world.clients["patient"].post("/api/shares", json={
            "scope": {"studies": [world.studies["p1_linked"]]}, "audience": "link",
            "permissions": ["view"]})
        client = _link_session(world.server, link.json()["url"])
    elif who == "holder":
        client = world.clients["patient2"]
    else:
        client = world.clients["admin"] if who == "admin" else _fresh(world, who, "film-open")
    answer = client.get(path, follow_redirects=False)
    status, location = FILM_OPEN[who]
    assert answer.status_code == status, (who, answer.text[:200])
    assert answer.headers.get("location", "") == location.format(study=study)
    assert ('action="/keep"' in answer.text) is (status == 200)


# The sign-up, keep, claim and code pages and a caregiver invitation link (issue 12), and
# withdrawing an invitation (issue 11): who reaches each. Sign-up, keep, claim and the
# film-code form are open to newcomers; staff are refused the patient pages; only the
# inviting patient withdraws an invitation (everyone else: as if it did not exist).
PAGE_ROLES = ("patient", "caregiver", "physician", "operator", "admin", "link", "anonymous")
NEWCOMER_PAGES: dict[str, tuple[int, ...]] = {
    #                          patient care phys  oper admin link anon
    "/signup":                (303,    303, 303,  303, 303,  200, 200),  # signed in: to /claim
    "/claim":                 (200,    200, 403,  403, 403,  200, 200),
    "/keep":                  (200,    200, 403,  403, 403,  200, 200),
    "/code":                  (200,    200, 200,  200, 200,  200, 200),
    "/caregivers/join/bogus": (404,    404, 403,  403, 403,  404, 404),
}


@pytest.mark.parametrize(("who", "page", "status"),
                         [(who, page, statuses[i]) for page, statuses in NEWCOMER_PAGES.items()
                          for i, who in enumerate(PAGE_ROLES)],
                         ids=[f"{who}-{page}" for page in NEWCOMER_PAGES for who in PAGE_ROLES])
def test_newcomer_pages_matrix(world: World, who: str, page: str, status: int) -> None:
    assert _fresh(world, who, "newcomer").get(page, follow_redirects=False).status_code == status


@pytest.mark.parametrize("who", (*PAGE_ROLES, "inviter"))
def test_withdraw_invitation_matrix(world: World, who: str) -> None:
    inviter = _fresh(world, "patient", f"withdrawer-{who}")
    made = inviter.post("/api/me/caregivers", json={}).json()
    client = inviter if who == "inviter" else _fresh(world, who, "withdraw")
    answer = client.delete(f"/api/me/caregivers/invitations/{made['invite_id']}")
    expected = 204 if who == "inviter" else 401 if who in ("link", "anonymous") else 404
    assert answer.status_code == expected, answer.text
    still_open = [h for h in inviter.get("/api/me/caregivers").json() if h["status"] == "invited"]
    assert bool(still_open) == (who != "inviter")


# AI candidates (issue 15): the list and the built-in detector's job for clinicians who may
# see the study (physicians with a grant, operators, admins); deciding on a candidate (here
# one that does not exist) answers like a missing one. Everyone else: 404, nobody: 401.
AI_CANDIDATES: list[tuple[str, str, int]] = [
    ("patient", "p1_granted", 404), ("caregiver", "p1_linked", 404),
    ("physician", "p1_granted", 200), ("physician", "p2", 404),
    ("physician_rw", "p1_granted", 200), ("physician_rw", "p1_linked", 404),
    ("link", "p1_linked", 404), ("operator", "p2", 200), ("admin", "nobody", 200),
    ("anonymous", "p1_granted", 401),
]


@pytest.mark.parametrize(("who", "study", "status"), AI_CANDIDATES,
                         ids=[f"{w}-{s}" for w, s, _ in AI_CANDIDATES])
def test_ai_candidates_matrix(world: World, who: str, study: str, status: int) -> None:
    client, uid = world.clients[who], world.studies[study]
    listed = client.get(f"/api/studies/{uid}/ai-candidates")
    assert listed.status_code == status, listed.text
    if status == 200:
        answer = listed.json()
        assert (answer["study_uid"], answer["candidates"]) == (uid, [])
        assert answer["detection"]["state"] in ("idle", "queued", "running", "failed")
    detect = client.post(f"/api/studies/{uid}/nodules/detect")
    assert detect.status_code == (202 if status == 200 else status), detect.text
    for action in ("accept", "reject"):
        decided = client.post(f"/api/ai-candidates/999999/{action}")
        assert decided.status_code == (401 if who == "anonymous" else 404), decided.text


# Research exports (issue 15): researchers and admins make de-identified exports and read
# their own (an admin reads any); everyone else is refused (403, or 401 without a login),
# and another researcher meets the 404 of a missing export.
RESEARCH_ROLES = {"researcher": 201, "admin": 201, "operator": 403, "patient": 403,
                  "caregiver": 403, "physician": 403, "link": 401, "anonymous": 401}


@pytest.mark.parametrize("who", list(RESEARCH_ROLES), ids=list(RESEARCH_ROLES))
def test_research_export_routes_matrix(world: World, who: str) -> None:
    client = world.clients[who]
    made = client.post("/api/research/exports", json={"studies": [world.studies["p2"]]})
    assert made.status_code == RESEARCH_ROLES[who], (who, made.text[:300])
    mine = world.clients["researcher"].post("/api/research/exports",
                                            json={"studies": [world.studies["p2"]]})
    assert mine.status_code == 201, mine.text
    export = mine.json()["id"]
    readable = {"researcher": 200, "admin": 200}.get(who, RESEARCH_ROLES[who])
    for path in (f"/api/research/exports/{export}", f"/api/research/exports/{export}/archive",
                 "/api/research/exports"):
        answer = client.get(path)
        assert answer.status_code == readable, (who, path, answer.status_code)
    if who == "researcher":
        other = _fresh(world, "researcher", "second")
        assert other.get(f"/api/research/exports/{export}").status_code == 404
        assert other.get(f"/api/research/exports/{export}/archive").status_code == 404
