"""Reports met at ingest: SR and Encapsulated PDF files are read as reports (not merely skipped
as non-image objects), and reports that were waiting for their study are linked once it is in."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable

from casebook.index.case_store import CaseStore

from ...errors import CasebookError
from .dicom_reports import is_dicom_report, read_dicom_report

log = logging.getLogger(__name__)


def after_ingest(store: CaseStore, summary: Any, non_image_paths: Iterable[str]) -> None:
    """Import the DICOM reports among ``non_image_paths`` and link waiting reports; the skip
    reasons of the ingest summary then say what became of each report file."""
    reasons: dict[str, str] = {}
    for p in sorted(set(non_image_paths)):
        path = Path(p)
        if not is_dicom_report(path):
            continue
        try:
            out = store.add_report_document(read_dicom_report(path))
        except CasebookError as exc:
            reasons[p] = f"report not imported: {exc}"
            continue
        where = "linked to its study" if out.study_id is not None else "kept until its study is ingested"
        reasons[p] = f"report imported ({out.status}; {where})"
    if reasons:
        for sk in summary.skipped:
            if sk.path in reasons:
                sk.reason = reasons[sk.path]
    try:
        n = store.link_pending_reports()
    except CasebookError as exc:  # the images are stored; a report link problem must not hide that
        log.warning("reports: linking after ingest failed: %s", exc)
        return
    if n:
        log.info("reports: %d waiting report(s) linked to studies ingested now", n)
