"""`make run`'s demo: the physician login has a patient shared with them from the start."""

from __future__ import annotations

import httpx

from conftest import DemoSite, admin_token


def test_demo_physician_sees_the_demo_patients_studies_and_only_those(demo_site: DemoSite) -> None:
    server = demo_site.server
    token = admin_token(server.database_url, "demo-physician", "physician")
    doctor = {"Authorization": f"Bearer {token}"}
    with server.http() as admin, httpx.Client(base_url=server.url, headers=doctor,
                                              timeout=60) as physician:
        everything = {s["0020000D"]["Value"][0] for s in admin.get("/dicomweb/studies").json()}
        shared = {s["0020000D"]["Value"][0] for s in physician.get("/dicomweb/studies").json()}
        first = demo_site.truth["patients"][0]
        expected = {study["study_uid"] for study in first["studies"]}
        assert shared == expected and shared < everything
        patient = admin_token(server.database_url, "demo-patient", "patient")
        person = httpx.get(f"{server.url}/api/me", headers={
            "Authorization": f"Bearer {patient}"}).json()["person_id"]
        page = physician.get("/shared-with-me", headers={"Accept": "text/html"})
        assert page.status_code == 200 and f"/patients/{person}" in page.text
