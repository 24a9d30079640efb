"""De-identification rules for research exports: DICOM PS3.15 Annex E, pure.

Why a table here and not in the library's own recipe: the profile and its options
(Table E.1-1 columns "Basic Prof.", "Rtn. Pat. Chars. Opt.", "Rtn. Long. Modif. Dates
Opt.", "Clean Desc. Opt.") are the contract a researcher and an ethics board read; the
service turns this table into a `deid` recipe (services/research/deidentify.py). The
keyed pseudonyms (HMAC-SHA256, RFC 2104), the per-person date shift, the descriptor
cleaning and the refusal rules are cloudfilm's own and live here too, with no I/O.

Action codes (PS3.15 Table E.1-1 legend): X remove, Z empty (zero length), D dummy
value, K keep, C clean (keep only if it carries nothing identifying), U replace UID.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

RESEARCH_KEY_LABEL = b"cloudfilm research pseudonyms v1"
DUMMY_NAME = "ANONYMOUS^"
DUMMY_TEXT = "ANONYMOUS"
MIN_SHIFT_DAYS, MAX_SHIFT_DAYS = 365, 3650  # dates move 1 to 10 years into the past


class Action(StrEnum):
    REMOVE = "X"
    EMPTY = "Z"
    DUMMY = "D"
    KEEP = "K"
    CLEAN = "C"
    UID = "U"


@dataclass(frozen=True)
class Options:
    """The Annex E options a research export applies (E.3)."""

    retain_dates: bool = True  # Retain Longitudinal Temporal Information, Modified Dates (E.3.6)
    retain_characteristics: bool = True  # Retain Patient Characteristics (E.3.4)
    clean_descriptors: bool = True  # Clean Descriptors (E.3.5)
    retain_safe_private: bool = False  # Retain Safe Private (E.3.10)

    def as_dict(self) -> dict[str, bool]:
        return {"retain_longitudinal_modified_dates": self.retain_dates,
                "retain_patient_characteristics": self.retain_characteristics,
                "clean_descriptors": self.clean_descriptors,
                "retain_safe_private": self.retain_safe_private}


# CID 7050 De-identification Method (coding scheme DCM)
BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
CODE_DATES = ("113106", "Retain Longitudinal Temporal Information Modified Dates Option")
CODE_CHARACTERISTICS = ("113108", "Retain Patient Characteristics Option")
CODE_CLEAN_DESCRIPTORS = ("113105", "Clean Descriptors Option")
CODE_SAFE_PRIVATE = ("113111", "Retain Safe Private Option")


def method_codes(options: Options) -> list[tuple[str, str]]:
    """DeidentificationMethodCodeSequence items (PS3.3 C.7.1.1.1.3), profile first."""
    codes = [BASIC_PROFILE]
    for on, code in ((options.retain_dates, CODE_DATES),
                     (options.retain_characteristics, CODE_CHARACTERISTICS),
                     (options.clean_descriptors, CODE_CLEAN_DESCRIPTORS),
                     (options.retain_safe_private, CODE_SAFE_PRIVATE)):
        if on:
            codes.append(code)
    return codes


X, Z, D, K, C = Action.REMOVE, Action.EMPTY, Action.DUMMY, Action.KEEP, Action.CLEAN

# keyword -> (basic profile action, with Retain Patient Characteristics, with Clean
# Descriptors); None: the option does not change it. PS3.15 2024b Table E.1-1 (the
# attributes cloudfilm's archive meets; every UI, PN, DA and DT is also handled by VR).
TABLE: dict[str, tuple[Action, Action | None, Action | None]] = {
    # patient
    "PatientName": (Z, None, None), "PatientID": (Z, None, None),
    "IssuerOfPatientID": (X, None, None), "IssuerOfPatientIDQualifiersSequence": (X, None, None),
    "OtherPatientIDs": (X, None, None), "OtherPatientIDsSequence": (X, None, None),
    "OtherPatientNames": (X, None, None), "PatientBirthDate": (Z, None, None),
    "PatientBirthTime": (X, None, None), "PatientBirthName": (X, None, None),
    "PatientMotherBirthName": (X, None, None), "PatientSex": (Z, K, None),
    "PatientAge": (X, K, None), "PatientSize": (X, K, None), "PatientWeight": (X, K, None),
    "EthnicGroup": (X, K, None), "SmokingStatus": (X, K, None),
    "PregnancyStatus": (X, K, None), "PatientSexNeutered": (X, K, None),
    "PatientAddress": (X, None, None), "PatientTelephoneNumbers": (X, None, None),
    "PatientTelecomInformation": (X, None, None), "CountryOfResidence": (X, None, None),
    "RegionOfResidence": (X, None, None), "MilitaryRank": (X, None, None),
    "BranchOfService": (X, None, None), "MedicalRecordLocator": (X, None, None),
    "Occupation": (X, None, C), "AdditionalPatientHistory": (X, None, C),
    "PatientComments": (X, None, C), "MedicalAlerts": (X, None, C), "Allergies": (X, None, C),
    "PatientReligiousPreference": (X, None, None), "PatientInsurancePlanCodeSequence": (X, None, None),
    "PatientPrimaryLanguageCodeSequence": (X, None, None), "ResponsiblePerson": (X, None, None),
    "ResponsibleOrganization": (X, None, None), "PatientState": (X, None, C),
    "SpecialNeeds": (X, None, C), "ReferencedPatientSequence": (X, None, None),
    "ReferencedPatientPhotoSequence": (X, None, None), "CurrentPatientLocation": (X, None, None),
    "PatientInstitutionResidence": (X, None, None), "PatientTransportArrangements": (X, None, None),
    "AdmissionID": (X, None, None), "AdmittingDiagnosesDescription": (X, None, C),
    "AdmittingDiagnosesCodeSequence": (X, None, None),
    # request and study
    "AccessionNumber": (Z, None, None), "StudyID": (Z, None, None),
    "StudyDate": (Z, None, None), "StudyTime": (Z, None, None),
    "StudyDescription": (X, None, C), "ReferringPhysicianName": (Z, None, None),
    "ReferringPhysicianAddress": (X, None, None), "ReferringPhysicianTelephoneNumbers": (X, None, None),
    "ReferringPhysicianIdentificationSequence": (X, None, None), "PhysiciansOfRecord": (X, None, None),
    "PhysiciansOfRecordIdentificationSequence": (X, None, None),
    "NameOfPhysiciansReadingStudy": (X, None, None),
    "PhysiciansReadingStudyIdentificationSequence": (X, None, None),
    "ConsultingPhysicianName": (X, None, None), "ReferencedStudySequence": (X, None, None),
    "ReferencedPerformedProcedureStepSequence": (X, None, None),
    "ReasonForTheRequestedProcedure": (X, None, C), "ReasonForStudy": (X, None, C),
    "RequestedProcedureDescription": (X, None, C), "RequestedProcedureID": (X, None, None),
    "RequestAttributesSequence": (X, None, None), "RequestingPhysician": (X, None, None),
    "RequestingService": (X, None, None), "PlacerOrderNumberImagingServiceRequest": (Z, None, None),
    "FillerOrderNumberImagingServiceRequest": (Z, None, None),
    # series and procedure step
    "SeriesDate": (X, None, None), "SeriesTime": (X, None, None),
    "SeriesDescription": (X, None, C), "ProtocolName": (X, None, C),
    "PerformingPhysicianName": (X, None, None),
    "PerformingPhysicianIdentificationSequence": (X, None, None), "OperatorsName": (X, None, None),
    "OperatorIdentificationSequence": (X, None, None), "PerformedProcedureStepID": (X, None, None),
    "PerformedProcedureStepStartDate": (X, None, None), "PerformedProcedureStepStartTime": (X, None, None),
    "PerformedProcedureStepEndDate": (X, None, None), "PerformedProcedureStepEndTime": (X, None, None),
    "PerformedProcedureStepDescription": (X, None, C), "PerformedStationName": (X, None, None),
    "PerformedLocation": (X, None, None), "ScheduledProcedureStepID": (X, None, None),
    "ScheduledPerformingPhysicianName": (X, None, None), "ScheduledStudyLocation": (X, None, None),
    "ScheduledStudyLocationAETitle": (X, None, None),
    # equipment
    "InstitutionName": (X, None, None), "InstitutionAddress": (X, None, None),
    "InstitutionalDepartmentName": (X, None, None), "InstitutionCodeSequence": (X, None, None),
    "StationName": (X, None, None), "DeviceSerialNumber": (X, None, None),
    "DetectorID": (X, None, None), "PlateID": (X, None, None), "GantryID": (X, None, None),
    # image and content
    "AcquisitionDate": (X, None, None), "AcquisitionTime": (X, None, None),
    "AcquisitionDateTime": (X, None, None), "ContentDate": (Z, None, None),
    "ContentTime": (Z, None, None), "InstanceCreationDate": (X, None, None),
    "InstanceCreationTime": (X, None, None), "ImageComments": (X, None, C),
    "AcquisitionComments": (X, None, C), "DerivationDescription": (X, None, C),
    "ContrastBolusAgent": (D, None, C), "FrameComments": (X, None, C),
    "IconImageSequence": (X, None, None),
    # structured reports and signatures
    "ContentCreatorName": (Z, None, None), "PersonName": (D, None, None),
    "VerifyingObserverName": (D, None, None), "VerifyingOrganization": (X, None, None),
    "AuthorObserverSequence": (X, None, None), "ParticipantSequence": (X, None, None),
    "PersonIdentificationCodeSequence": (X, None, None), "TextValue": (X, None, C),
    "TextComments": (X, None, C), "HumanPerformerName": (X, None, None),
    "HumanPerformerOrganization": (X, None, None), "ReviewerName": (X, None, None),
    "EvaluatorName": (X, None, None), "SecondaryReviewerName": (X, None, None),
    "NamesOfIntendedRecipientsOfResults": (X, None, None),
    "DigitalSignaturesSequence": (X, None, None), "OriginalAttributesSequence": (X, None, None),
    "ModifiedAttributesSequence": (X, None, None), "DataSetTrailingPadding": (X, None, None),
}


def action_for(keyword: str, options: Options) -> Action:
    """The action the profile with ``options`` takes on a tabled attribute."""
    basic, characteristics, descriptors = TABLE[keyword]
    if options.retain_characteristics and characteristics is not None:
        return characteristics
    if options.clean_descriptors and descriptors is not None:
        return descriptors
    return basic


# UIDs that name a standard thing, not a patient's: never remapped.
_STANDARD_UID_KEYWORDS = ("ClassUID", "TransferSyntaxUID", "CodingSchemeUID", "ContextUID",
                          "MappingResourceUID")
DICOM_ROOT = "1.2.840.10008."


def is_standard_uid(keyword: str, value: str) -> bool:
    return value.startswith(DICOM_ROOT) or keyword.endswith(_STANDARD_UID_KEYWORDS)


# -- pseudonyms (keyed HMAC: without the key nobody can link them back or recompute them) --

def research_key(server_key: bytes) -> bytes:
    """RFC 5869 HKDF-Expand(PRK=server key, info=label, L=32), like the audit key."""
    return hmac.new(server_key, RESEARCH_KEY_LABEL + b"\x01", hashlib.sha256).digest()


def _mac(key: bytes, kind: str, value: str) -> bytes:
    return hmac.new(key, kind.encode() + b"\0" + value.encode("utf-8"), hashlib.sha256).digest()


def person_pseudonym(key: bytes, person_key: str) -> str:
    """One PatientID per person, the same in every export (80 bits of the HMAC, base32)."""
    return "CF-" + base64.b32encode(_mac(key, "person", person_key)[:10]).decode("ascii")


def pseudo_uid(key: bytes, uid: str) -> str:
    """A UUID-derived UID (PS3.5 B.2, root 2.25) from 128 bits of the HMAC of the original,
    so every reference to one UID is remapped to the same new UID, in every export."""
    return "2.25." + str(int.from_bytes(_mac(key, "uid", uid)[:16], "big"))


def date_shift_days(key: bytes, person_key: str) -> int:
    """How many days one person's dates move back: the same for all their studies (so
    intervals are kept, E.3.6) and in every export."""
    span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS + 1
    return MIN_SHIFT_DAYS + int.from_bytes(_mac(key, "shift", person_key)[:8], "big") % span


def shift_date(value: str, days: int) -> str:
    """A DA value moved ``days`` back; "" when it is not a date (never kept as is)."""
    text = value.strip()
    if not re.fullmatch(r"\d{8}", text):
        return ""
    try:
        moved = date(int(text[:4]), int(text[4:6]), int(text[6:])) - timedelta(days=days)
    except ValueError:
        return ""
    return moved.strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str:
    """A DT value's date moved back; the time of day and offset are kept."""
    text = value.strip()
    moved = shift_date(text[:8], days)
    return moved + text[8:] if moved else ""


def shifted_date(day: date, days: int) -> date:
    return day - timedelta(days=days)


# -- Clean Descriptors (E.3.5): cloudfilm's reading ------------------------------------

_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)


def identifying_tokens(values: Iterable[str]) -> frozenset[str]:
    """The words of a source's identifying values (names, IDs, institution, dates): a
    descriptor containing any of them is not clean."""
    tokens: set[str] = set()
    for value in values:
        for token in _TOKEN.findall(str(value).casefold()):
            if len(token) >= 2 and not (token.isdigit() and len(token) < 4):
                tokens.add(token)
    return frozenset(tokens)


def clean_text(value: str, forbidden: frozenset[str]) -> str:
    """``value`` if it names none of ``forbidden`` and holds no long number (a date, phone
    or record number) nor an e-mail address; else empty."""
    text = str(value)
    if "@" in text or re.search(r"\d{6,}", text.replace(".", "").replace("-", "")):
        return ""
    words = set(_TOKEN.findall(text.casefold()))
    return "" if words & forbidden else text


# -- refusals: pixels that may show burned-in text ------------------------------------

_SCREEN_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.1": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.2": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.3": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.7.4": "secondary capture",
    "1.2.840.10008.5.1.4.1.1.6.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.3.1": "ultrasound",
    "1.2.840.10008.5.1.4.1.1.77.1.1": "visible light",
    "1.2.840.10008.5.1.4.1.1.77.1.2": "visible light",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "visible light",
    "1.2.840.10008.5.1.4.1.1.77.1.1.1": "visible light",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "visible light",
}
DOCUMENT_PREFIX = "1.2.840.10008.5.1.4.1.1.104."
SR_PREFIX = "1.2.840.10008.5.1.4.1.1.88."
CLEAN_PIXELS = "113101"  # CID 7050 Clean Pixel Data Option: a de-identifier cleaned the pixels


@dataclass(frozen=True)
class InstanceFacts:
    """What the refusal rule reads of an instance."""

    sop_class_uid: str
    burned_in: str = ""  # BurnedInAnnotation as stored ("YES", "NO" or absent)
    method_codes: frozenset[str] = frozenset()  # DeidentificationMethodCodeSequence values
    own_report: bool = False  # cloudfilm's own nodule SR (no free text)


def refusal(facts: InstanceFacts) -> str | None:
    """Why an instance may not leave in a research export (None: it may).

    Conservative, as E.1.1 asks when burned-in text cannot be ruled out: BurnedInAnnotation
    YES; secondary captures, ultrasound and photographs unless marked BurnedInAnnotation NO
    *and* cleaned (Clean Pixel Data Option code 113101); encapsulated documents always
    (their text cannot be checked); SRs other than cloudfilm's own (free text).
    """
    burned = facts.burned_in.strip().upper()
    if burned == "YES":
        return "BurnedInAnnotation is YES"
    if facts.sop_class_uid.startswith(DOCUMENT_PREFIX):
        return "encapsulated document (its text may identify the patient)"
    kind = _SCREEN_CLASSES.get(facts.sop_class_uid)
    if kind is not None and not (burned == "NO" and CLEAN_PIXELS in facts.method_codes):
        return f"{kind} image that may carry burned-in text and is not marked cleaned"
    if facts.sop_class_uid.startswith(SR_PREFIX) and not facts.own_report:
        return "structured report from another system (free text may identify the patient)"
    return None
