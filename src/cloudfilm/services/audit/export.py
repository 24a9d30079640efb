"""Audit records as standard documents: FHIR R4 AuditEvent (IHE BALP) and DICOM PS3.15 A.5.

Both carry the same facts: the event (DCM 110100-series EventID from
``domain.audit.EVENT_CODES``, the EventActionCode and a subtype: a FHIR RESTful
interaction as in IHE BALP and/or a DCM event type), when, the outcome ("0" success,
"4" minor failure), the requesting user (with role, network address and an extra
participant for whom they acted), this server as the destination and audit source,
and the patient (PS3.15 A.5: type 1 / role 1) and study (type 2 / role 3, 110180).
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from cloudfilm.domain.audit import EVENT_CODES
from cloudfilm.services.audit.record import AuditRecord

DCM = "http://dicom.nema.org/resources/ontology/DCM"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
SITE = "cloudfilm"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"  # the query's SOP Class unless detail names one
SECURITY_CHANGED = ("110135", "Object Security Attributes Changed")

# action -> (EventActionCode, FHIR RESTful interaction, DCM event type (EventTypeCode))
ACTION_DETAILS: dict[str, tuple[str, str | None, tuple[str, str] | None]] = {
    "login": ("E", None, ("110122", "Login")),
    "login-failed": ("E", None, ("110122", "Login")),
    "logout": ("E", None, ("110123", "Logout")),
    "view": ("R", "read", None),
    "download": ("R", "read", None),
    "query": ("E", "search-type", None),
    "upload": ("C", "create", None),
    "store": ("C", "create", None),
    "delete": ("D", "delete", None),
    "share-create": ("C", "create", SECURITY_CHANGED),
    "share-renew": ("U", "update", SECURITY_CHANGED),
    "share-revoke": ("D", "delete", SECURITY_CHANGED),
    "share-open": ("R", "read", None),
    "link": ("U", "update", SECURITY_CHANGED),
    "unlink": ("U", "update", SECURITY_CHANGED),
    "admin": ("E", None, ("110129", "Security Configuration")),
    "access-denied": ("E", None, ("110132", "Use of Restricted Function")),
}


def outcome_code(record: AuditRecord) -> str:
    """EventOutcomeIndicator / AuditEvent.outcome: 0 success, 4 minor failure."""
    return "0" if record.entry.outcome == "success" else "4"


def action_details(action: str) -> tuple[str, str | None, tuple[str, str] | None]:
    return ACTION_DETAILS.get(action, ("E", None, None))


def address_type(address: str) -> str:
    """NetworkAccessPointTypeCode: 2 for an IP address, 1 for a machine name."""
    try:
        ipaddress.ip_address(address)
        return "2"
    except ValueError:
        return "1"


def audit_source_id() -> str:
    return socket.gethostname() or SITE


def _query_text(record: AuditRecord) -> str:
    query = record.entry.detail.get("query")
    return query if isinstance(query, str) else ""


# --- FHIR R4 AuditEvent (IHE BALP) -----------------------------------------------------------

def _coding(system: str, code: str, display: str = "") -> dict[str, str]:
    return {"system": system, "code": code} | ({"display": display} if display else {})


def _user_agent_type(record: AuditRecord) -> dict[str, Any]:
    """BALP user agent types: PAT when the user is the patient, IRCP reads, AUT writes."""
    if record.entry.actor_role == "patient":
        return {"coding": [_coding(ROLE_CLASS, "PAT", "patient")]}
    if action_details(record.entry.action)[0] in ("C", "U", "D"):
        return {"coding": [_coding(PARTICIPATION, "AUT", "author (originator)")]}
    return {"coding": [_coding(PARTICIPATION, "IRCP", "information recipient")]}


def _fhir_agents(record: AuditRecord, source_id: str) -> list[dict[str, Any]]:
    entry = record.entry
    user: dict[str, Any] = {"type": _user_agent_type(record),
                            "who": {"identifier": {"value": entry.actor}, "display": entry.actor},
                            "requestor": True}
    if entry.actor_role:
        user["role"] = [{"text": entry.actor_role}]
    if entry.source:
        user["network"] = {"address": entry.source, "type": address_type(entry.source)}
    agents = [user]
    if entry.on_behalf_of:
        agents.append({"type": {"coding": [_coding(ROLE_CLASS, "PAT", "patient")]},
                       "role": [{"text": "on behalf of"}],
                       "who": {"identifier": {"value": entry.on_behalf_of},
                               "display": entry.on_behalf_of},
                       "requestor": False})
    agents.append({"type": {"coding": [_coding(DCM, "110152", "Destination Role ID")]},
                   "who": {"identifier": {"value": source_id}, "display": SITE},
                   "requestor": False})
    return agents


def _fhir_entities(record: AuditRecord) -> list[dict[str, Any]]:
    entry = record.entry
    entities: list[dict[str, Any]] = []
    if entry.person_id is not None or entry.patient_ref:
        what: dict[str, Any] = {}
        if entry.person_id is not None:
            what["reference"] = f"Patient/{entry.person_id}"
        if entry.patient_ref:
            what["identifier"] = {"value": entry.patient_ref}
        entities.append({"what": what, "type": _coding(ENTITY_TYPE, "1", "Person"),
                         "role": _coding(OBJECT_ROLE, "1", "Patient")})
    if entry.study_uid:
        identifier = {"type": {"coding": [_coding(DCM, "110180", "Study Instance UID")]},
                      "system": "urn:dicom:uid", "value": f"urn:oid:{entry.study_uid}"}
        entities.append({"what": {"identifier": identifier},
                         "type": _coding(ENTITY_TYPE, "2", "System Object"),
                         "role": _coding(OBJECT_ROLE, "3", "Report")})
    if query := _query_text(record):
        entities.append({"type": _coding(ENTITY_TYPE, "2", "System Object"),
                         "role": _coding(OBJECT_ROLE, "24", "Query"),
                         "query": base64.b64encode(query.encode("utf-8")).decode("ascii")})
    return entities


def fhir_audit_event(record: AuditRecord, source_id: str | None = None) -> dict[str, Any]:
    """One record as a FHIR R4 AuditEvent in the IHE BALP pattern."""
    source_id = source_id or audit_source_id()
    code, display = EVENT_CODES[record.entry.action]
    action, interaction, event_type = action_details(record.entry.action)
    subtype = [_coding(RESTFUL, interaction, interaction)] if interaction else []
    if event_type:
        subtype.append(_coding(DCM, *event_type))
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "id": str(record.id),
        "type": _coding(DCM, code, display), "action": action,
        "recorded": record.at.isoformat(), "outcome": outcome_code(record),
        "agent": _fhir_agents(record, source_id),
        "source": {"site": SITE, "observer": {"display": source_id},
                   "type": [_coding(SOURCE_TYPE, "4", "Application Server")]},
    }
    if subtype:
        event["subtype"] = subtype
    if record.entry.outcome != "success" and isinstance(record.entry.detail.get("reason"), str):
        event["outcomeDesc"] = record.entry.detail["reason"]
    if entities := _fhir_entities(record):
        event["entity"] = entities
    return event


def fhir_bundle(records: Iterable[AuditRecord], source_id: str | None = None) -> dict[str, Any]:
    """A FHIR R4 searchset Bundle of AuditEvents."""
    source_id = source_id or audit_source_id()
    entries = [{"resource": fhir_audit_event(r, source_id), "search": {"mode": "match"}}
               for r in records]
    return {"resourceType": "Bundle", "type": "searchset", "total": len(entries), "entry": entries}


# --- DICOM PS3.15 A.5 audit message (IHE ATNA) ----------------------------------------------

def _xml_text(value: str) -> str:
    """Drop characters XML 1.0 cannot carry (C0 controls other than tab, LF, CR)."""
    return "".join(c for c in value if c >= " " or c in "\t\n\r")


def _code(parent: ET.Element, tag: str, code: str, system: str, text: str) -> ET.Element:
    """A CodedValueType element (PS3.15 A.5.1: csd-code, codeSystemName, originalText)."""
    return ET.SubElement(parent, tag, {"csd-code": _xml_text(code), "codeSystemName": system,
                                       "originalText": _xml_text(text)})


def _event_identification(root: ET.Element, record: AuditRecord) -> None:
    action, _interaction, event_type = action_details(record.entry.action)
    ident = ET.SubElement(root, "EventIdentification", {
        "EventActionCode": action, "EventDateTime": record.at.isoformat(),
        "EventOutcomeIndicator": outcome_code(record)})
    code, display = EVENT_CODES[record.entry.action]
    _code(ident, "EventID", code, "DCM", display)
    if event_type:
        _code(ident, "EventTypeCode", event_type[0], "DCM", event_type[1])
    reason = record.entry.detail.get("reason")
    if record.entry.outcome != "success" and isinstance(reason, str):
        ET.SubElement(ident, "EventOutcomeDescription").text = _xml_text(reason)


def _participants(root: ET.Element, record: AuditRecord, source_id: str) -> None:
    entry = record.entry
    user = {"UserID": _xml_text(entry.actor), "UserName": _xml_text(entry.actor),
            "UserIsRequestor": "true"}
    if entry.source:
        user |= {"NetworkAccessPointID": _xml_text(entry.source),
                 "NetworkAccessPointTypeCode": address_type(entry.source)}
    requestor = ET.SubElement(root, "ActiveParticipant", user)
    _code(requestor, "RoleIDCode", "110153", "DCM", "Source Role ID")
    if entry.actor_role:
        _code(requestor, "RoleIDCode", entry.actor_role, "cloudfilm", entry.actor_role)
    if entry.on_behalf_of:
        behalf = ET.SubElement(root, "ActiveParticipant", {
            "UserID": _xml_text(entry.on_behalf_of), "UserIsRequestor": "false"})
        _code(behalf, "RoleIDCode", "PAT", "2.16.840.1.113883.5.110", "on behalf of (patient)")
    server = ET.SubElement(root, "ActiveParticipant", {"UserID": _xml_text(source_id),
                                                       "UserIsRequestor": "false"})
    _code(server, "RoleIDCode", "110152", "DCM", "Destination Role ID")


def _participant_objects(root: ET.Element, record: AuditRecord) -> None:
    entry = record.entry
    if entry.person_id is not None or entry.patient_ref:
        patient = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": _xml_text(entry.patient_ref or f"Patient/{entry.person_id}"),
            "ParticipantObjectTypeCode": "1", "ParticipantObjectTypeCodeRole": "1"})
        _code(patient, "ParticipantObjectIDTypeCode", "2", "RFC-3881", "Patient Number")
    if entry.study_uid:
        study = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": _xml_text(entry.study_uid),
            "ParticipantObjectTypeCode": "2", "ParticipantObjectTypeCodeRole": "3"})
        _code(study, "ParticipantObjectIDTypeCode", "110180", "DCM", "Study Instance UID")
    if query := _query_text(record):
        sop_class = entry.detail.get("sop_class_uid")
        obj = ET.SubElement(root, "ParticipantObjectIdentification", {
            "ParticipantObjectID": _xml_text(sop_class if isinstance(sop_class, str)
                                             else STUDY_ROOT_FIND),
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "24"})
        _code(obj, "ParticipantObjectIDTypeCode", "110181", "DCM", "SOP Class UID")
        ET.SubElement(obj, "ParticipantObjectQuery").text = base64.b64encode(
            query.encode("utf-8")).decode("ascii")


def dicom_audit_message(record: AuditRecord, source_id: str | None = None) -> ET.Element:
    """One record as a DICOM PS3.15 A.5.1 ``AuditMessage`` element."""
    source_id = source_id or audit_source_id()
    root = ET.Element("AuditMessage")
    _event_identification(root, record)
    _participants(root, record, source_id)
    source = ET.SubElement(root, "AuditSourceIdentification", {
        "AuditEnterpriseSiteID": SITE, "AuditSourceID": _xml_text(source_id)})
    _code(source, "AuditSourceTypeCode", "4", "DCM", "Application Server")
    _participant_objects(root, record)
    return root


def dicom_audit_xml(record: AuditRecord, source_id: str | None = None) -> bytes:
    """One AuditMessage as a UTF-8 XML document (the syslog MSG of IHE ATNA, ITI-20)."""
    xml: bytes = ET.tostring(dicom_audit_message(record, source_id), encoding="utf-8",
                             xml_declaration=True)
    return xml


def dicom_audit_messages_xml(records: Iterable[AuditRecord], source_id: str | None = None) -> bytes:
    """Many records: one AuditMessage each, inside an ``AuditMessages`` root element."""
    source_id = source_id or audit_source_id()
    root = ET.Element("AuditMessages")
    root.extend(dicom_audit_message(r, source_id) for r in records)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml
