"""``casebook reports import``: read report files of any supported kind and store them.

Each file is recognised by its content (an HL7 ``MSH`` start, a DICOM SR / Encapsulated PDF
header) or its suffix (``.csv``, ``.tsv``, ``.json``, ``.jsonl``); folders are walked. Every
report version is stored in its own transaction, so a bad file, message or row is reported with
its place and reason while the rest is imported, and nothing is ever stored half. Re-importing is
a no-op; versions of one report replace each other by time and status (see
:mod:`casebook.index.case_store.report_documents`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

from casebook.index.case_store import CaseStore
from casebook.index.case_store.report_records import ImportOutcome, ReportDocumentIn

from ...dicom.walk import walk_files
from ...errors import CasebookError
from ...progress import ProgressCallback, SupportsCancel, check_cancel, no_progress
from .dicom_reports import is_dicom_report, read_dicom_report
from .errors import ReportFormatError, ReportImportError
from .hl7 import looks_like_hl7, read_hl7_file
from .tabular import read_csv_file, read_json_file

log = logging.getLogger(__name__)

TABLE_SUFFIXES = {".csv": "csv", ".tsv": "csv", ".txt": None, ".json": "json", ".jsonl": "json", ".ndjson": "json"}


@dataclass
class ReportImportSummary:
    files: int = 0
    new: int = 0
    amended: int = 0
    older: int = 0  # older versions, kept as history
    duplicate: int = 0
    linked: int = 0  # of the stored versions, how many found their study now
    weak: int = 0  # ... by patient + date + modality only
    unmatched: int = 0
    linked_later: int = 0  # waiting reports linked by this run
    errors: list[tuple[str, str]] = field(default_factory=list)  # (place, reason)
    outcomes: list[tuple[str, ImportOutcome]] = field(default_factory=list)

    def count(self, place: str, out: ImportOutcome) -> None:
        self.outcomes.append((place, out))
        setattr(self, out.status, getattr(self, out.status) + 1)
        if out.status == "duplicate":
            return
        if out.study_id is None:
            self.unmatched += 1
        elif out.link_method == "patient_date_modality":
            self.weak += 1
        else:
            self.linked += 1


def kind_of(path: Path) -> str | None:
    """hl7 | dicom | csv | json, or None when the file is none of them."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if looks_like_hl7(head):
        return "hl7"
    if (len(head) >= 132 and head[128:132] == b"DICM") or path.suffix.lower() == ".dcm":
        return "dicom" if is_dicom_report(path) else None
    return TABLE_SUFFIXES.get(path.suffix.lower())


def read_file(path: Path, *, mapping: Mapping[str, str] | None = None, encoding: str | None = None,
              kind: str | None = None) -> list[ReportDocumentIn | ReportFormatError]:
    """Every report in one file (a document, or the error of that message/row)."""
    kind = kind or kind_of(path)
    if kind == "hl7":
        return list(read_hl7_file(path, encoding=encoding))
    if kind == "dicom":
        return [read_dicom_report(path)]
    if kind == "csv":
        return list(read_csv_file(path, mapping or {}, encoding=encoding))
    if kind == "json":
        return list(read_json_file(path, mapping or {}, encoding=encoding))
    raise ReportFormatError(f"{path}: not a report file Casebook reads (HL7 v2 ORU, DICOM SR or Encapsulated "
                            "PDF, CSV or JSON export)")


def store_documents(store: CaseStore, docs: Sequence[ReportDocumentIn | ReportFormatError],
                    summary: ReportImportSummary, place: str) -> None:
    for d in docs:
        if isinstance(d, ReportFormatError):
            summary.errors.append((place, str(d)))
            continue
        try:
            summary.count(f"{place} {d.source_ref}".strip(), store.add_report_document(d))
        except CasebookError as exc:
            summary.errors.append((place, str(exc)))


def import_reports(store: CaseStore, paths: Sequence[str | Path], *, mapping: Mapping[str, str] | None = None,
                   encoding: str | None = None, progress: ProgressCallback | None = None,
                   cancel: SupportsCancel | None = None) -> ReportImportSummary:
    """Import every report under ``paths`` (files and folders); see the module docstring."""
    progress = progress or no_progress
    summary = ReportImportSummary()
    files: list[tuple[Path, bool]] = []  # (file, named by the caller rather than found in a folder)
    for p in paths:
        path = Path(p).expanduser()
        if path.is_dir():
            files.extend((Path(f), False) for f in walk_files(path))
        elif path.exists():
            files.append((path, True))
        else:
            summary.errors.append((str(path), "no such file or folder"))
    if not files and summary.errors and len(summary.errors) == len(paths):
        raise ReportImportError(f"{paths[0]}: no such file or folder")
    for n, (f, named) in enumerate(files):
        check_cancel(cancel, "report import")
        kind = kind_of(f)
        if kind is None and not named:
            continue  # a folder's other files (images, notes) are not reports: not an error
        summary.files += 1
        try:
            docs = read_file(f, mapping=mapping, encoding=encoding, kind=kind)
        except ReportImportError as exc:
            if not isinstance(exc, ReportFormatError):
                raise
            summary.errors.append((str(f), str(exc)))
            docs = []
        store_documents(store, docs, summary, str(f))
        progress(n + 1, len(files), "importing reports")
    summary.linked_later = store.link_pending_reports()
    log.info("reports: %d new, %d amended, %d duplicates, %d unmatched, %d errors", summary.new, summary.amended,
             summary.duplicate, summary.unmatched, len(summary.errors))
    return summary
