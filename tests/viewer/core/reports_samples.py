"""Real report messages and DICOM files for the report tests: HL7 v2.3/v2.5 ORU^R01 as RIS send
them, CT series written with pydicom, DICOM SR built with highdicom, Encapsulated PDF."""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid


def obr(fields: dict[int, str]) -> str:
    """An OBR segment with the given fields (1-based positions) filled."""
    n = max(fields)
    return "OBR|" + "|".join(fields.get(i, "") for i in range(1, n + 1))


def oru(*, version: str = "2.5", control: str = "MSG1", pid: str = "MRN001", accession: str = "ACC1001",
        in_obr18: bool = True, study_dt: str = "202403051000", report_dt: str = "202403051430", status: str = "F",
        modality: str = "CT", obx: list[str] | None = None, charset: str | None = None, extra: list[str] = ()) -> str:
    """One ORU^R01 message, segments separated by CR (as on the wire)."""
    msh = f"MSH|^~\\&|RIS|GENHOSP|CASEBOOK|RADIOLOGY|{report_dt}||ORU^R01|{control}|P|{version}"
    if charset is not None:
        msh += "|" * 6 + charset  # MSH-18
    fields = {1: "1", 2: "ORD" + accession, 3: accession, 4: "CTCHEST^CT CHEST^L", 7: study_dt, 22: report_dt,
              24: modality, 25: status, 32: "1234&Radiologist&Anna" if version >= "2.5" else "1234^Radiologist^Anna"}
    if in_obr18:
        fields[18] = accession
    if obx is None:
        obx = ["OBX|1|TX|&GDT^Report Text||CLINICAL HISTORY: Cough for three weeks.||||||" + status,
               "OBX|2|TX|&GDT^Report Text||TECHNIQUE: CT chest without contrast.||||||" + status,
               "OBX|3|TX|&GDT^Report Text||FINDINGS: A 9 mm solid nodule in the right upper lobe.||||||" + status,
               "OBX|4|TX|&GDT^Report Text||No pleural effusion.||||||" + status,
               "OBX|5|TX|&GDT^Report Text||IMPRESSION: Nodule, RUL. Follow-up CT in 3 months.||||||" + status]
    segs = [msh, "EVN|R01|" + report_dt, f"PID|1||{pid}^^^GENHOSP^MR||TEST^PATIENT||19600101|M",
            f"ORC|RE|ORD{accession}|{accession}", obr(fields), *obx, *extra]
    return "\r".join(segs) + "\r"


def write_ct(folder: Path, *, study_uid: str, accession: str = "", patient_id: str = "MRN001",
             study_date: str = "20240305", modality: str = "CT", slices: int = 3, seed: int = 0,
             series_uid: str | None = None) -> list[Path]:
    """A small real CT series (16×16 slices) as DICOM files; ``seed`` changes the pixels only."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or f"{study_uid}.1"
    rng = np.random.default_rng(seed)
    out = []
    for k in range(slices):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = f"{series_uid}.{k + 1}"
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"ct{k:03d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.PatientID, ds.PatientName, ds.PatientSex = patient_id, "TEST^PATIENT", "M"
        ds.PatientBirthDate, ds.ReferringPhysicianName, ds.StudyID = "19600101", "", "1"
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber = study_date, "100000", accession
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = modality, 1, k + 1
        ds.StudyDescription, ds.SeriesDescription = "CT CHEST", "AX"
        ds.ImagePositionPatient, ds.ImageOrientationPatient = [0.0, 0.0, float(k * 2)], [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.0
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = rng.integers(0, 2000, (16, 16), dtype=np.int16).tobytes()
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def write_sr(path: Path, evidence: list[Path], *, findings: str, impression: str = "", coded: tuple[str, str, str]
             | None = None, content_dt: datetime | None = None, accession: str | None = None) -> Path:
    """A Comprehensive SR built with highdicom over ``evidence`` images (their study)."""
    import highdicom as hd
    from highdicom.sr import CodedConcept, CodeContentItem, ContainerContentItem, RelationshipTypeValues, \
        TextContentItem

    images = [pydicom.dcmread(str(p)) for p in evidence]
    title = CodedConcept("18748-4", "LN", "Diagnostic imaging report")
    root = ContainerContentItem(name=title)
    sections = []
    f = ContainerContentItem(name=CodedConcept("121070", "DCM", "Findings"),
                             relationship_type=RelationshipTypeValues.CONTAINS)
    f.ContentSequence = [TextContentItem(name=CodedConcept("121071", "DCM", "Finding"), value=findings,
                                         relationship_type=RelationshipTypeValues.CONTAINS)]
    sections.append(f)
    if impression or coded:
        imp = ContainerContentItem(name=CodedConcept("121072", "DCM", "Impressions"),
                                   relationship_type=RelationshipTypeValues.CONTAINS)
        items = []
        if impression:
            items.append(TextContentItem(name=CodedConcept("121073", "DCM", "Impression"), value=impression,
                                         relationship_type=RelationshipTypeValues.CONTAINS))
        if coded:
            items.append(CodeContentItem(name=CodedConcept("121071", "DCM", "Finding"),
                                         value=CodedConcept(*coded),
                                         relationship_type=RelationshipTypeValues.CONTAINS))
        imp.ContentSequence = items
        sections.append(imp)
    root.ContentSequence = sections
    when = content_dt or datetime(2024, 3, 5, 15, 0, 0)
    sr = hd.sr.ComprehensiveSR(
        evidence=images, content=root, series_instance_uid=generate_uid(), series_number=99,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Casebook tests",
        is_complete=True, is_final=True, is_verified=True, verifying_observer_name="Radiologist^Anna",
        verifying_organization="Gen Hosp", content_date=when.date(), content_time=when.time(),
        series_description="Report")
    if accession is not None:
        sr.AccessionNumber = accession
    sr.save_as(path)
    return path


def minimal_pdf(lines: list[str]) -> bytes:
    """A real one-page PDF with the given text lines (Helvetica), byte offsets and xref exact."""
    content = "BT /F1 11 Tf 72 740 Td 14 TL " + " ".join(
        "(" + ln.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ") Tj T*" for ln in lines) + " ET"
    objs = ["<< /Type /Catalog /Pages 2 0 R >>", "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 4 0 R >> >> "
            "/Contents 5 0 R >>", "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            f"<< /Length {len(content)} >>\nstream\n{content}\nendstream"]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{o}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets)
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


def write_pdf_report(path: Path, *, study_uid: str, accession: str, patient_id: str, lines: list[str]) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.104.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.PatientID, ds.PatientName, ds.AccessionNumber, ds.Modality = patient_id, "TEST^PATIENT", accession, "DOC"
    ds.StudyDate, ds.ContentDate, ds.ContentTime = "20240305", "20240305", "160000"
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.BurnedInAnnotation = "YES"
    blob = minimal_pdf(lines)
    ds.EncapsulatedDocument = blob + (b"\0" if len(blob) % 2 else b"")
    ds.save_as(path, enforce_file_format=True)
    return path


def ds_uid(path: Path) -> str:
    return str(pydicom.dcmread(str(path), stop_before_pixels=True).StudyInstanceUID)


__all__ = ["oru", "obr", "write_ct", "write_sr", "write_pdf_report", "minimal_pdf"]
