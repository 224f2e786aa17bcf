"""De-identification after DICOM PS3.15 Annex E (Basic Profile and options).

:func:`deidentify` rewrites the header of one dataset in memory; the pixel
data element is never touched, so frames stay bit-exact. The action table is
derived from PS3.15 Table E.1-1 (Application Level Confidentiality Profile
Attributes), restricted to the attributes listed below; the action codes are
the standard's:

- ``D`` replace with a non-zero-length dummy value of the same VR
- ``Z`` replace with a zero-length value
- ``X`` remove
- ``K`` keep
- ``C`` clean: handled here as ``D`` (a dummy value), the safe reading
- ``U`` replace a UID with a pseudonymous UID, the same for the same input
  within one de-identification key, so a study stays consistent

Combined codes (``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``) take the
stricter reading allowed for a Type 3 attribute: remove, except that ``U``
wins for UIDs. Options (Table E.1-1 columns) switch an attribute to ``K``.
Private elements are removed unless their tag is whitelisted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag

# Option names, as in PS3.15 Table E.1-1's columns, and their CID 7050 codes.
RETAIN_UIDS = "retain_uids"
RETAIN_DATES = "retain_dates"
RETAIN_DEVICE = "retain_device"
RETAIN_INSTITUTION = "retain_institution"
RETAIN_PATIENT_CHARACTERISTICS = "retain_patient_characteristics"
OPTION_CODES = {
    "basic": ("113100", "Basic Application Confidentiality Profile"),
    RETAIN_DATES: ("113106", "Retain Longitudinal Temporal Information Full Dates"),
    RETAIN_PATIENT_CHARACTERISTICS: ("113108", "Retain Patient Characteristics"),
    RETAIN_DEVICE: ("113109", "Retain Device Identity Option"),
    RETAIN_UIDS: ("113110", "Retain UIDs Option"),
    RETAIN_INSTITUTION: ("113112", "Retain Institution Identity Option"),
}

# Modalities whose images often carry burned-in text (PS3.15 E.3.1 warns of
# ultrasound, secondary capture and others); reported, never passed silently.
BURNED_IN_MODALITIES = frozenset({"US", "SC", "OT", "XA", "ES", "RF", "XC", "GM"})

# keyword: (action, option that keeps it or ""). From PS3.15 Table E.1-1.
PROFILE: dict[str, tuple[str, str]] = {
    # Patient
    "PatientName": ("Z", ""),
    "PatientID": ("Z", ""),
    "IssuerOfPatientID": ("X", ""),
    "PatientBirthDate": ("Z", ""),
    "PatientBirthTime": ("X", ""),
    "PatientSex": ("Z", RETAIN_PATIENT_CHARACTERISTICS),
    "PatientAge": ("X", RETAIN_PATIENT_CHARACTERISTICS),
    "PatientSize": ("X", RETAIN_PATIENT_CHARACTERISTICS),
    "PatientWeight": ("X", RETAIN_PATIENT_CHARACTERISTICS),
    "PatientAddress": ("X", ""),
    "PatientTelephoneNumbers": ("X", ""),
    "PatientMotherBirthName": ("X", ""),
    "PatientBirthName": ("X", ""),
    "OtherPatientIDs": ("X", ""),
    "OtherPatientIDsSequence": ("X", ""),
    "OtherPatientNames": ("X", ""),
    "PatientComments": ("X", ""),
    "PatientReligiousPreference": ("X", ""),
    "EthnicGroup": ("X", RETAIN_PATIENT_CHARACTERISTICS),
    "Occupation": ("X", ""),
    "MilitaryRank": ("X", ""),
    "BranchOfService": ("X", ""),
    "MedicalRecordLocator": ("X", ""),
    "MedicalAlerts": ("X", ""),
    "Allergies": ("X", ""),
    "CountryOfResidence": ("X", ""),
    "RegionOfResidence": ("X", ""),
    "PatientInsurancePlanCodeSequence": ("X", ""),
    "PatientPrimaryLanguageCodeSequence": ("X", ""),
    "PatientState": ("X", ""),
    "PregnancyStatus": ("X", RETAIN_PATIENT_CHARACTERISTICS),
    "SmokingStatus": ("X", RETAIN_PATIENT_CHARACTERISTICS),
    "AdditionalPatientHistory": ("X", ""),
    "ResponsiblePerson": ("X", ""),
    "ResponsibleOrganization": ("X", ""),
    "PatientSpeciesDescription": ("K", ""),
    # Study, visit, request
    "StudyDate": ("Z", RETAIN_DATES),
    "StudyTime": ("Z", RETAIN_DATES),
    "StudyID": ("Z", ""),
    "AccessionNumber": ("Z", ""),
    "StudyDescription": ("X", ""),
    "ReferringPhysicianName": ("Z", ""),
    "ReferringPhysicianAddress": ("X", ""),
    "ReferringPhysicianTelephoneNumbers": ("X", ""),
    "PhysiciansOfRecord": ("X", ""),
    "NameOfPhysiciansReadingStudy": ("X", ""),
    "PerformingPhysicianName": ("X", ""),
    "RequestingPhysician": ("X", ""),
    "OperatorsName": ("X", ""),
    "AdmittingDiagnosesDescription": ("X", ""),
    "AdmissionID": ("X", ""),
    "CurrentPatientLocation": ("X", ""),
    "RequestedProcedureDescription": ("X", ""),
    "RequestedProcedureID": ("X", ""),
    "RequestAttributesSequence": ("X", ""),
    "ReasonForStudy": ("X", ""),
    "RequestedContrastAgent": ("X", ""),
    "ScheduledProcedureStepDescription": ("X", ""),
    "PerformedProcedureStepDescription": ("X", ""),
    "PerformedProcedureStepID": ("X", ""),
    "PerformedProcedureStepStartDate": ("X", RETAIN_DATES),
    "PerformedProcedureStepStartTime": ("X", RETAIN_DATES),
    "ImageComments": ("X", ""),
    "InterpretationText": ("X", ""),
    "TextValue": ("X", ""),
    "ContentSequence": ("X", ""),
    "DerivationDescription": ("X", ""),
    "ProtocolName": ("X", ""),
    "SeriesDescription": ("X", ""),
    # Dates and times
    "SeriesDate": ("X", RETAIN_DATES),
    "SeriesTime": ("X", RETAIN_DATES),
    "AcquisitionDate": ("X", RETAIN_DATES),
    "AcquisitionTime": ("X", RETAIN_DATES),
    "AcquisitionDateTime": ("X", RETAIN_DATES),
    "ContentDate": ("Z", RETAIN_DATES),
    "ContentTime": ("Z", RETAIN_DATES),
    "InstanceCreationDate": ("X", RETAIN_DATES),
    "InstanceCreationTime": ("X", RETAIN_DATES),
    "OverlayDate": ("X", RETAIN_DATES),
    "OverlayTime": ("X", RETAIN_DATES),
    "CurveDate": ("X", RETAIN_DATES),
    "CurveTime": ("X", RETAIN_DATES),
    "RadiopharmaceuticalStartTime": ("X", RETAIN_DATES),
    "LastMenstrualDate": ("X", RETAIN_DATES),
    # Institution and device
    "InstitutionName": ("X", RETAIN_INSTITUTION),
    "InstitutionAddress": ("X", RETAIN_INSTITUTION),
    "InstitutionalDepartmentName": ("X", RETAIN_INSTITUTION),
    "InstitutionCodeSequence": ("X", RETAIN_INSTITUTION),
    "StationName": ("X", RETAIN_DEVICE),
    "DeviceSerialNumber": ("X", RETAIN_DEVICE),
    "DeviceUID": ("U", RETAIN_DEVICE),
    "PlateID": ("X", RETAIN_DEVICE),
    "GantryID": ("X", RETAIN_DEVICE),
    "DetectorID": ("X", RETAIN_DEVICE),
    "CassetteID": ("X", RETAIN_DEVICE),
    "GeneratorID": ("X", RETAIN_DEVICE),
    "PerformedStationAETitle": ("X", RETAIN_DEVICE),
    "PerformedStationName": ("X", RETAIN_DEVICE),
    "PerformedLocation": ("X", RETAIN_DEVICE),
    "ScheduledStationAETitle": ("X", RETAIN_DEVICE),
    "ScheduledStationName": ("X", RETAIN_DEVICE),
    "SourceApplicationEntityTitle": ("X", RETAIN_DEVICE),
    # UIDs (U)
    "StudyInstanceUID": ("U", RETAIN_UIDS),
    "SeriesInstanceUID": ("U", RETAIN_UIDS),
    "SOPInstanceUID": ("U", RETAIN_UIDS),
    "MediaStorageSOPInstanceUID": ("U", RETAIN_UIDS),
    "FrameOfReferenceUID": ("U", RETAIN_UIDS),
    "SynchronizationFrameOfReferenceUID": ("U", RETAIN_UIDS),
    "ReferencedSOPInstanceUID": ("U", RETAIN_UIDS),
    "ReferencedFrameOfReferenceUID": ("U", RETAIN_UIDS),
    "RelatedFrameOfReferenceUID": ("U", RETAIN_UIDS),
    "DimensionOrganizationUID": ("U", RETAIN_UIDS),
    "ConcatenationUID": ("U", RETAIN_UIDS),
    "IrradiationEventUID": ("U", RETAIN_UIDS),
    "StorageMediaFileSetUID": ("U", RETAIN_UIDS),
    "TransactionUID": ("U", RETAIN_UIDS),
    "InstanceCreatorUID": ("U", RETAIN_UIDS),
    "FiducialUID": ("U", RETAIN_UIDS),
    "TrackingUID": ("U", RETAIN_UIDS),
    "UID": ("U", RETAIN_UIDS),
    "ReferencedPerformedProcedureStepSequence": ("X", ""),
    "ReferencedPatientSequence": ("X", ""),
    "ReferencedStudySequence": ("X", ""),
    "Manufacturer": ("K", ""),
}

# Keywords whose values identify the patient, for callers that check output.
PATIENT_IDENTIFIERS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "ReferringPhysicianName",
    "InstitutionName",
    "OperatorsName",
    "PatientAddress",
    "OtherPatientIDs",
    "StudyID",
)


@dataclass(frozen=True, slots=True)
class DeidOptions:
    """Which PS3.15 options apply, the UID key, and kept private tags."""

    uid_key: bytes
    options: frozenset[str] = frozenset()
    keep_private: frozenset[int] = frozenset()


@dataclass
class DeidReport:
    """What :func:`deidentify` did to one dataset."""

    sop_instance_uid: str = ""
    removed: int = 0
    replaced: int = 0
    private_removed: int = 0
    burned_in: str = ""
    uid_map: dict[str, str] = field(default_factory=dict)


def pseudonymous_uid(uid: str, key: bytes) -> str:
    """A ``2.25`` UID derived from ``uid`` under ``key`` (PS3.5 B.2).

    The same UID under the same key always maps to the same result, so the
    references between the instances of a study survive.
    """
    digest = hmac.new(key, uid.encode(), hashlib.sha256).digest()[:16]
    return f"2.25.{int.from_bytes(digest, 'big')}"


def _dummy(vr: str) -> object:
    return {
        "DA": "19000101",
        "TM": "000000",
        "DT": "19000101000000",
        "PN": "ANONYMOUS",
        "AS": "000Y",
        "IS": "0",
        "DS": "0",
        "US": 0,
        "SS": 0,
        "UL": 0,
        "SL": 0,
        "FL": 0.0,
        "FD": 0.0,
    }.get(vr, "ANONYMOUS")


def burned_in_reason(ds: Dataset) -> str:
    """Why ``ds`` may carry burned-in text, or ``""``."""
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        return "BurnedInAnnotation is YES"
    modality = str(ds.get("Modality", "")).upper()
    if modality in BURNED_IN_MODALITIES:
        return f"modality {modality} often carries burned-in text"
    return ""


def deidentify(ds: Dataset, options: DeidOptions) -> DeidReport:
    """De-identify ``ds`` in place (header only; pixel data untouched).

    Changes the dataset given: attributes of the profile table are removed,
    emptied, replaced or re-mapped; private elements go unless whitelisted;
    the de-identification attributes of PS3.15 E.1.1 are added.
    """
    report = DeidReport(burned_in=burned_in_reason(ds))
    _walk(ds, options, report)
    if "file_meta" in ds.__dict__ or hasattr(ds, "file_meta"):
        meta = ds.file_meta
        if "MediaStorageSOPInstanceUID" in meta and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    report.sop_instance_uid = str(ds.get("SOPInstanceUID", ""))

    ds.PatientIdentityRemoved = "YES"
    names = ["basic", *sorted(options.options)]
    ds.DeidentificationMethod = "PS3.15 Annex E: " + ", ".join(
        OPTION_CODES[n][1] for n in names if n in OPTION_CODES
    )
    codes = []
    for name in names:
        if name in OPTION_CODES:
            item = Dataset()
            item.CodeValue, item.CodeMeaning = OPTION_CODES[name]
            item.CodingSchemeDesignator = "DCM"
            codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    if RETAIN_DATES in options.options:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    return report


def _walk(ds: Dataset, options: DeidOptions, report: DeidReport) -> None:
    for element in list(ds):
        tag = element.tag
        if tag.is_private:
            if int(tag) not in options.keep_private:
                del ds[tag]
                report.private_removed += 1
            continue
        if element.VR == "SQ":
            for item in element.value or []:
                _walk(item, options, report)
        action, keeper = PROFILE.get(element.keyword, ("K", ""))
        if action == "K" or (keeper and keeper in options.options):
            continue
        if action == "X":
            del ds[tag]
            report.removed += 1
        elif action == "Z":
            element.value = None if element.VR != "SQ" else Sequence()
            report.replaced += 1
        elif action == "U":
            _map_uids(element, options, report)
        else:
            element.value = _dummy(element.VR)
            report.replaced += 1


def _map_uids(element: object, options: DeidOptions, report: DeidReport) -> None:
    value = element.value  # type: ignore[attr-defined]
    values: Iterable[str] = value if isinstance(value, list | tuple) else [value]
    mapped = []
    for uid in values:
        uid = str(uid)
        new = report.uid_map.setdefault(uid, pseudonymous_uid(uid, options.uid_key))
        mapped.append(new)
    element.value = mapped if len(mapped) != 1 else mapped[0]  # type: ignore[attr-defined]
    report.replaced += 1


def keep_private_tags(tags: Iterable[str]) -> frozenset[int]:
    """Parse ``"0009,1010"``-style tags into a whitelist."""
    return frozenset(int(Tag(int(t.replace(",", ""), 16))) for t in tags)
