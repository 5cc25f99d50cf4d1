"""DICOM reports: Basic, Enhanced and Comprehensive Text SR, and reports as Encapsulated PDF.

An SR document is a tree of content items. Its sections are the CONTAINER (or TEXT) items named
by a heading concept (DCM codes 121060 History, 121064/121065 procedure description = technique,
121070 Findings, 121072/121073 Impression(s), 121076/121077 Conclusion(s), 121109 Indications,
or the same words in the code meaning); TEXT under them is the text. CODE items under findings or
impression, or named Finding (121071) / Diagnosis, are the coded diagnosis (first one wins). The
study the report belongs to is the SR's own Study Instance UID, else the study its evidence
references; a newer version is a later Content Date/Time of the same report (accession or
study), so an amended SR replaces the first one. The text of an Encapsulated PDF is extracted
with pypdf and split on headings like any other report.
"""
from __future__ import annotations

import hashlib
import io
from datetime import datetime
from pathlib import Path
from typing import Any

from casebook.index.case_store.report_records import ReportDocumentIn

from .errors import ReportFormatError
from .sections import Sections, diagnosis_from_impression, split_sections

SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.35": "Extensible SR",
}
PDF_CLASS = "1.2.840.10008.5.1.4.1.1.104.1"
REPORT_CLASSES = {*SR_CLASSES, PDF_CLASS}
_HEADING_CODES = {"121060": "history", "121062": "history", "121109": "history", "121064": "technique",
                  "121065": "technique", "121070": "findings", "121072": "impression", "121073": "impression",
                  "121076": "impression", "121077": "impression"}
_HEADING_WORDS = {"history": "history", "clinical history": "history", "indication": "history",
                  "indications for procedure": "history", "clinical information": "history",
                  "request": "history", "technique": "technique", "procedure description": "technique",
                  "current procedure descriptions": "technique", "findings": "findings", "finding": "findings",
                  "impression": "impression", "impressions": "impression", "conclusion": "impression",
                  "conclusions": "impression", "summary": "impression"}
_DIAGNOSIS_CONCEPTS = {"121071", "diagnosis", "finding", "impression", "conclusion"}


def _concept(item: Any) -> tuple[str, str]:
    seq = getattr(item, "ConceptNameCodeSequence", None)
    if not seq:
        return "", ""
    return str(getattr(seq[0], "CodeValue", "") or ""), str(getattr(seq[0], "CodeMeaning", "") or "")


def _section_of(item: Any) -> str | None:
    code, meaning = _concept(item)
    return _HEADING_CODES.get(code) or _HEADING_WORDS.get(meaning.strip().lower())


def _datetime(ds: Any, date_kw: str, time_kw: str) -> datetime | None:
    d = str(getattr(ds, date_kw, "") or "").strip()
    t = str(getattr(ds, time_kw, "") or "").strip().split(".")[0]
    if not d:
        return None
    try:
        return datetime.strptime(d + t.ljust(6, "0")[:6], "%Y%m%d%H%M%S")
    except ValueError:
        return None


def _walk_sr(items: Any, section: str, out: dict[str, list[str]], coded: list[tuple[str, str]]) -> None:
    for item in items or []:
        vtype = str(getattr(item, "ValueType", "")).upper()
        own = _section_of(item)
        here = own or section
        if vtype == "TEXT":
            text = str(getattr(item, "TextValue", "") or "").strip()
            if text:
                out[here].append(text)
        elif vtype == "CODE":
            cc = getattr(item, "ConceptCodeSequence", None)
            code, meaning = _concept(item)
            if cc and (here in ("findings", "impression") or code in _DIAGNOSIS_CONCEPTS
                       or meaning.lower() in _DIAGNOSIS_CONCEPTS):
                c = cc[0]
                coded.append((str(getattr(c, "CodeMeaning", "") or ""),
                              f"{getattr(c, 'CodingSchemeDesignator', '')}:{getattr(c, 'CodeValue', '')}"))
        _walk_sr(getattr(item, "ContentSequence", None), here, out, coded)


def _study_uid(ds: Any) -> str:
    own = str(getattr(ds, "StudyInstanceUID", "") or "").strip()
    if own:
        return own
    for kw in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence"):
        for ev in getattr(ds, kw, None) or []:
            uid = str(getattr(ev, "StudyInstanceUID", "") or "").strip()
            if uid:
                return uid
    return ""


def _pdf_text(blob: bytes, path: Path) -> str:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(blob))
        return "\n".join((page.extract_text() or "") for page in reader.pages).strip()
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise ReportFormatError(f"{path}: the encapsulated PDF cannot be read: {exc}") from exc


def read_dicom_report(path: Path, ds: Any | None = None) -> ReportDocumentIn:
    """One SR or Encapsulated PDF file as a report document (see the module docstring); a file
    whose content tree or header is broken is a :class:`ReportFormatError` naming it."""
    try:
        return _read_dicom_report(path, ds)
    except ReportFormatError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, OSError, EOFError) as exc:
        raise ReportFormatError(f"{path}: the DICOM report cannot be read: {exc.__class__.__name__}: {exc}") from exc


def _read_dicom_report(path: Path, ds: Any | None) -> ReportDocumentIn:
    import pydicom
    from pydicom.errors import InvalidDicomError

    if ds is None:
        try:
            ds = pydicom.dcmread(str(path))
        except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError) as exc:
            raise ReportFormatError(f"{path}: not a readable DICOM file: {exc}") from exc
    sop_class = str(getattr(ds, "SOPClassUID", "") or "")
    if sop_class not in REPORT_CLASSES:
        raise ReportFormatError(f"{path}: is not a DICOM report (SOP class {sop_class or 'missing'}; "
                                "reports are Basic/Enhanced/Comprehensive SR or Encapsulated PDF)")
    study_uid = _study_uid(ds)
    accession = str(getattr(ds, "AccessionNumber", "") or "").strip()
    if not study_uid and not accession:
        raise ReportFormatError(f"{path}: the report names no study (no Study Instance UID, no referenced "
                                "evidence, no Accession Number), so it cannot be linked")
    observed = _datetime(ds, "ContentDate", "ContentTime") or _datetime(ds, "InstanceCreationDate",
                                                                        "InstanceCreationTime")
    study_dt = _datetime(ds, "StudyDate", "StudyTime")
    author = ""
    for kw in ("VerifyingObserverSequence", "AuthorObserverSequence"):
        seq = getattr(ds, kw, None)
        if seq:
            author = str(getattr(seq[0], "VerifyingObserverName", "") or getattr(seq[0], "PersonName", "") or "")
            if author:
                break
    coded: list[tuple[str, str]] = []
    if sop_class == PDF_CLASS:
        mime = str(getattr(ds, "MIMETypeOfEncapsulatedDocument", "application/pdf") or "application/pdf")
        if mime.lower() != "application/pdf":
            raise ReportFormatError(f"{path}: encapsulated document is {mime}, not a PDF")
        blob = getattr(ds, "EncapsulatedDocument", None)
        if not blob:
            raise ReportFormatError(f"{path}: Encapsulated PDF without its document")
        text = _pdf_text(bytes(blob), path)
        if not text:
            raise ReportFormatError(f"{path}: the encapsulated PDF has no text (a scanned image?)")
        secs = split_sections(text)
        kind = "pdf"
        status = "final"
    else:
        out: dict[str, list[str]] = {"history": [], "technique": [], "findings": [], "impression": []}
        _walk_sr(getattr(ds, "ContentSequence", None), "findings", out, coded)
        secs = Sections(*("\n\n".join(out[k]) for k in ("history", "technique", "findings", "impression")))
        if not secs.findings and not secs.impression and secs.history == "" and not coded:
            raise ReportFormatError(f"{path}: the SR document has no text and no coded finding")
        # text SR often put the whole report in one TEXT item: split it on its headings
        if secs.findings and not (secs.impression or secs.history or secs.technique):
            secs = split_sections(secs.findings)
        kind = "sr"
        verified = str(getattr(ds, "VerificationFlag", "") or "").upper()
        status = "preliminary" if verified == "UNVERIFIED" or str(getattr(ds, "PreliminaryFlag", "")).upper() \
            == "PRELIMINARY" else "final"
    if coded:
        diagnosis, code, source = coded[0][0], coded[0][1], "coded"
    else:
        diagnosis, code = diagnosis_from_impression(secs.impression), ""
        source = "impression" if diagnosis else ""
    sop = str(getattr(ds, "SOPInstanceUID", "") or "")
    digest = hashlib.sha256(b"dicom-report\0" + sop.encode() + b"\0" + repr(
        (secs, diagnosis, code, observed)).encode()).hexdigest()
    modality = ""
    return ReportDocumentIn(
        source_kind=kind, content_sha256=digest, source_path=str(path), source_ref=sop, status=status,
        observed=observed, accession_number=accession, study_uid=study_uid,
        patient_id=str(getattr(ds, "PatientID", "") or "").strip(),
        patient_issuer=str(getattr(ds, "IssuerOfPatientID", "") or "").strip(),
        study_date=study_dt.date() if study_dt else None, modality=modality, author=author,
        history=secs.history, technique=secs.technique, findings=secs.findings, impression=secs.impression,
        diagnosis=diagnosis, diagnosis_code=code, diagnosis_source=source)


def is_dicom_report(path: Path) -> bool:
    """Whether the file is a DICOM SR or Encapsulated PDF (header only)."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SOPClassUID"])
    except Exception:  # not DICOM at all: the caller tries the other formats
        return False
    return str(getattr(ds, "SOPClassUID", "") or "") in REPORT_CLASSES
