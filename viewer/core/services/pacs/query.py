"""What a search asks a PACS and what comes back, the same for DIMSE and DICOMweb."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

from casebook.common.dates import parse_da


@dataclass
class StudyQuery:
    """A study search: empty fields do not restrict. Names and descriptions match as substrings
    unless they hold a DICOM wildcard (``*`` or ``?``) themselves."""

    patient_id: str = ""
    patient_name: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modality: str = ""
    accession_number: str = ""
    description: str = ""
    study_uid: str = ""
    limit: int = 500

    def date_range(self) -> str:
        """DICOM range matching: ``20240101-20241231``, ``20240101-``, ``-20241231`` or ``""``."""
        if not self.date_from and not self.date_to:
            return ""
        f = self.date_from.strftime("%Y%m%d") if self.date_from else ""
        t = self.date_to.strftime("%Y%m%d") if self.date_to else ""
        return f if f == t else f"{f}-{t}"


def wildcard(text: str) -> str:
    """Substring matching for a free-text field, unless the user wrote a wildcard."""
    text = text.strip()
    if not text or "*" in text or "?" in text:
        return text
    return f"*{text}*"


def parse_date_arg(text: str) -> date | None:
    """``2024-01-31`` or ``20240131`` to a date (CLI and dialog input)."""
    text = (text or "").strip()
    if not text:
        return None
    d = parse_da(re.sub(r"[-./]", "", text))
    if d is None:
        raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD)")
    return d


@dataclass
class RemoteSeries:
    series_uid: str
    study_uid: str
    modality: str = ""
    number: int | None = None
    description: str = ""
    images: int | None = None  # what the node says the series holds
    local_images: int = 0  # how many of them are already in the library


@dataclass
class RemoteStudy:
    """One study a node holds, with how much of it the library already has."""

    node: str
    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    patient_issuer: str = ""  # Issuer of Patient ID, when the node returns it
    study_date: date | None = None
    description: str = ""
    accession_number: str = ""
    modalities: list[str] = field(default_factory=list)
    series_count: int | None = None
    images: int | None = None
    local_series: int = 0  # complete series of this study in the library
    local_images: int = 0
    partial: bool = False  # an earlier retrieve ended with images missing (the next one finishes it)

    @property
    def local(self) -> str:
        """``"yes"`` (everything the node listed is here), ``"partly"`` or ``"no"``."""
        if self.local_images == 0 and self.local_series == 0:
            return "partly" if self.partial else "no"
        if self.images is not None and self.local_images >= self.images and not self.partial:
            return "yes"
        if self.images is None and not self.partial:
            return "yes"
        return "partly"


def to_int(v: object) -> int | None:
    try:
        return int(str(v).strip()) if v not in (None, "") else None
    except ValueError:
        return None


__all__ = ["RemoteSeries", "RemoteStudy", "StudyQuery", "parse_date_arg", "to_int", "wildcard"]


def study_from_dataset(node: str, ds) -> RemoteStudy:
    """A study-level C-FIND answer or QIDO-RS result (as a pydicom Dataset) as a RemoteStudy."""
    mods = ds.get("ModalitiesInStudy", "") or []
    mods = [mods] if isinstance(mods, str) else list(mods)
    return RemoteStudy(node=node, study_uid=str(ds.get("StudyInstanceUID", "") or ""),
                       patient_id=str(ds.get("PatientID", "") or ""),
                       patient_issuer=str(ds.get("IssuerOfPatientID", "") or "").strip(),
                       patient_name=str(ds.get("PatientName", "") or ""),
                       study_date=parse_da(str(ds.get("StudyDate", "") or "")),
                       description=str(ds.get("StudyDescription", "") or ""),
                       accession_number=str(ds.get("AccessionNumber", "") or ""),
                       modalities=[str(m) for m in mods if str(m)],
                       series_count=to_int(ds.get("NumberOfStudyRelatedSeries")),
                       images=to_int(ds.get("NumberOfStudyRelatedInstances")))
