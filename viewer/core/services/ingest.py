"""Ingest: fill the case store from files, folders and DICOMDIRs.

The same service runs behind ``casebook ingest`` and the GUI's import dialog. It finds files,
skips those already stored and unchanged (path + size + mtime: an interrupted ingest resumes where
it stopped, a repeated one changes nothing), reads the headers of the rest in parallel, groups
them into stacks, and stores each DICOM series (all its stacks) in one transaction, so a crash or
a cancel never leaves half a series behind. Files that cannot be used are reported with the
reason and remembered, and the rest goes on.
"""
from __future__ import annotations

import logging
import os
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from casebook.common.dates import format_da
from casebook.index.case_store import CaseStore, FileState, InstanceRecord, StackRecord

from ..dicom.scan import HeaderReader
from ..dicom.scan import scan as scan_files
from ..dicom.stack import SeriesStack
from ..dicom.walk import walk_files
from ..errors import Cancelled, CasebookError
from ..progress import ProgressCallback, SupportsCancel, no_progress

log = logging.getLogger(__name__)

PHASE_FIND = "finding files"
PHASE_SCAN = "reading headers"
PHASE_STORE = "storing series"

_SKIP_NAMES = {"DICOMDIR", "Thumbs.db", "desktop.ini"}


@dataclass
class SkippedFile:
    path: str
    reason: str


@dataclass
class IngestedSeries:
    """One stack that this run stored or grew (for the summary table; no patient data)."""

    series_id: int
    status: str  # stored | updated
    modality: str
    description: str
    study_date: str
    images: int
    split_reason: str = ""


@dataclass
class IngestSummary:
    library: str = ""
    files_seen: int = 0  # files found under the given paths
    files_stored: int = 0  # files whose images were stored by this run
    files_unchanged: int = 0  # already in the library, unchanged since: not read again
    files_duplicate: int = 0  # same images (SOP Instance UID) as files already stored elsewhere
    files_relocated: int = 0  # stored images found at a new path, their old file gone: path updated
    series_stored: int = 0  # new stacks
    series_updated: int = 0  # stacks that gained images
    series_unchanged: int = 0  # stacks read again that had nothing new
    images_stored: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    series: list[IngestedSeries] = field(default_factory=list)
    cancelled: bool = False
    elapsed_s: float = 0.0

    @property
    def files_skipped(self) -> int:
        return len(self.skipped)

    def skip_reasons(self) -> list[tuple[str, int]]:
        """Skip reasons grouped (text before the first ':' or '(' ), most frequent first."""
        c = Counter(_reason_group(s.reason) for s in self.skipped)
        return c.most_common()


def _reason_group(reason: str) -> str:
    """'duplicate of SOP instance 1.2.3 (x)' -> 'duplicate of SOP instance <uid>': one row per kind."""
    head = reason.split(":", 1)[0].split("(", 1)[0].strip() or reason
    head = re.sub(r"\b\d+(?:\.\d+){2,}\b", "<uid>", head)
    return re.sub(r"\b\d+\b", "N", head)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _walk(paths: Iterable[str | Path], summary: IngestSummary, progress: ProgressCallback,
          cancel: SupportsCancel | None) -> tuple[list[str], list[str]]:
    """(files, DICOMDIRs given explicitly); missing paths go into ``summary.skipped``."""
    files: list[str] = []
    dicomdirs: list[str] = []
    for raw in paths:
        p = Path(raw).expanduser()
        ap = os.path.abspath(p)
        if p.is_file():
            (dicomdirs if p.name.upper() == "DICOMDIR" else files).append(ap)
        elif p.is_dir():
            def unreadable(e: OSError) -> None:
                summary.skipped.append(SkippedFile(str(e.filename), f"cannot list folder: {e.strerror}"))

            for n, f in enumerate(walk_files(ap, skip_names=_SKIP_NAMES, onerror=unreadable)):
                files.append(str(f))
                if n % 256 == 0:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("ingest cancelled")
                    progress(len(files), 0, PHASE_FIND)
            progress(len(files), 0, PHASE_FIND)
        else:
            summary.skipped.append(SkippedFile(ap, "no such file or folder"))
    # the same file named twice (overlapping folders) is read once
    seen: set[str] = set()
    unique = [f for f in files if not (f in seen or seen.add(f))]  # type: ignore[func-returns-value]
    return unique, dicomdirs


class IngestPathError(CasebookError):
    """A path given to ingest does not exist (a typo, an unmounted share): refused before anything
    is read or created, rather than reported as an empty ingest."""


def missing_paths(paths: Iterable[str | Path], *, raise_error: bool = False) -> list[str]:
    """The given paths that do not exist; with ``raise_error``, :class:`IngestPathError` naming them."""
    gone = [str(p) for p in paths if not Path(p).expanduser().exists()]
    if gone and raise_error:
        more = f" (and {len(gone) - 3} more)" if len(gone) > 3 else ""
        raise IngestPathError(f"{', '.join(gone[:3])}{more}: no such file or folder")
    return gone


def to_stack_record(stack: SeriesStack, stats: dict[str, tuple[int, int]]) -> StackRecord:
    """A scanned stack as the store's plain record (the store never imports the viewer)."""
    instances = []
    for h in stack.instances:
        path = os.path.abspath(str(h.path))
        st = stats.get(path) or _stat(path) or (0, 0)
        instances.append(InstanceRecord(
            path=path, sop_instance_uid=h.sop_instance_uid, sop_class_uid=h.sop_class_uid or "",
            instance_number=h.instance_number,
            position=tuple(float(v) for v in h.position) if h.position is not None else None,  # type: ignore[arg-type]
            orientation=tuple(float(v) for v in h.orientation) if h.orientation is not None else None,
            number_of_frames=int(h.number_of_frames or 1), transfer_syntax_uid=h.transfer_syntax_uid or "",
            acquisition_number=h.acquisition_number, echo_number=h.echo_number,
            acquisition_datetime=h.acquisition_datetime or "", frame_index=h.frame_index,
            file_size=st[0], file_mtime_ns=st[1]))
    return StackRecord(
        key=stack.key, series_uid=stack.series_uid, study_uid=stack.study_uid, patient_id=stack.patient_id or "",
        patient_issuer=getattr(stack, "patient_issuer", "") or "", patient_name=stack.patient_name or "", patient_sex=stack.patient_sex or "",
        patient_birth_date=stack.patient_birth_date or "", patient_age=stack.patient_age or "",
        study_date=stack.study_date or "", study_time=stack.study_time or "",
        study_description=stack.study_description or "", accession_number=stack.accession_number or "",
        series_number=stack.series_number, series_description=stack.series_description or "",
        modality=stack.modality or "", body_part=stack.body_part or "", manufacturer=stack.manufacturer or "",
        rows=int(stack.rows or 0), columns=int(stack.columns or 0), instances=instances,
        split_reason=stack.split_reason or "", is_localizer=bool(stack.is_localizer),
        pixel_spacing=getattr(stack, "pixel_spacing", None), slice_thickness=getattr(stack, "slice_thickness", None),
        frame_of_reference_uid=getattr(stack, "frame_of_reference_uid", "") or "")


def ingest(
    paths: Sequence[str | Path],
    store: CaseStore,
    *,
    progress: ProgressCallback | None = None,
    cancel: SupportsCancel | None = None,
    workers: int = 0,
    rescan: bool = False,
    reader: HeaderReader | None = None,
) -> IngestSummary:
    """Scan ``paths`` and store every image series found; see the module docstring.

    ``progress(done, total, phase)`` is called with ``phase`` one of :data:`PHASE_FIND`,
    :data:`PHASE_SCAN`, :data:`PHASE_STORE` (counts are files). Setting ``cancel`` stops at the
    next series boundary: what was stored stays, complete, and the next run resumes. ``rescan``
    re-reads files even when the library says they are unchanged. ``reader`` reads the headers
    elsewhere (``casebook ingest --ray``: on a Ray cluster); storing stays here, the one writer.
    """
    progress = progress or no_progress
    t0 = time.monotonic()
    summary = IngestSummary(library=str(store.path))
    try:
        files, dicomdirs = _walk(paths, summary, progress, cancel)
    except Cancelled:
        summary.cancelled = True
        summary.elapsed_s = time.monotonic() - t0
        return summary
    summary.files_seen = len(files)
    stats: dict[str, tuple[int, int]] = {}
    known = {} if rescan else store.file_states()
    to_scan: list[str] = []
    for f in files:
        st = _stat(f)
        if st is None:
            summary.skipped.append(SkippedFile(f, "cannot read file"))
            continue
        stats[f] = st
        prev = known.get(f)
        # A duplicate is read again: its twin may be gone since (the archive moved), and then
        # this copy takes over the stored image. Duplicates are rare, so this costs little.
        if prev is not None and (prev.size, prev.mtime_ns) == st and prev.status != "duplicate":
            if prev.status == "stored":
                summary.files_unchanged += 1
            else:
                summary.skipped.append(SkippedFile(f, prev.reason or "skipped before"))
            continue
        to_scan.append(f)
    log.info("ingest: %d files found, %d unchanged, %d to read", len(files), len(files) - len(to_scan), len(to_scan))
    if not to_scan and not dicomdirs:
        summary.elapsed_s = time.monotonic() - t0
        return summary

    def scan_progress(done: int, total: int, message: str = "") -> None:
        progress(done, total, PHASE_SCAN)

    try:
        result = scan_files([*to_scan, *dicomdirs], progress=scan_progress, cancel=cancel, workers=workers,
                            reader=reader)
    except Cancelled:
        summary.cancelled = True
        summary.elapsed_s = time.monotonic() - t0
        return summary
    if dicomdirs:  # files named by a DICOMDIR were not walked: count them now
        summary.files_seen += max(0, result.files_seen - len(to_scan))

    # files that cannot be used: report and remember (an unchanged bad file is not read again)
    remembered: list[FileState] = []
    for prob in result.problems:
        path = os.path.abspath(str(prob.path))
        summary.skipped.append(SkippedFile(path, prob.reason))
        st = stats.get(path) or _stat(path)
        if st is not None:
            remembered.append(FileState(path, st[0], st[1], "problem", prob.reason))
    image_stacks: list[SeriesStack] = []
    for stack in result.stacks:
        if getattr(stack, "is_image", True) and stack.instances:
            image_stacks.append(stack)
            continue
        what = stack.modality or "object"
        reason = f"not an image ({what}{': ' + stack.series_description if stack.series_description else ''})"
        for h in {os.path.abspath(str(h.path)) for h in stack.instances}:
            summary.skipped.append(SkippedFile(h, reason))
            st = stats.get(h) or _stat(h)
            if st is not None:
                remembered.append(FileState(h, st[0], st[1], "skipped", reason))
    # files the scan read but put in no stack and reported no problem for (non-image objects
    # such as SR or RT structure sets): say so, and remember them like the rest
    accounted = {os.path.abspath(str(p.path)) for p in result.problems}
    for stack in result.stacks:
        accounted.update(os.path.abspath(str(h.path)) for h in stack.instances)
    for f in to_scan:
        if f not in accounted:
            reason = "no image to store (a non-image object such as a report, RT plan or structure set)"
            summary.skipped.append(SkippedFile(f, reason))
            st = stats.get(f)
            if st is not None:
                remembered.append(FileState(f, st[0], st[1], "skipped", reason))
    if remembered:
        store.record_problems(remembered)

    # one transaction per DICOM series (all of its stacks), so splits are stored together
    groups: dict[str, list[SeriesStack]] = {}
    for stack in sorted(image_stacks, key=lambda s: (s.study_uid, s.series_uid, s.key)):
        groups.setdefault(stack.series_uid, []).append(stack)
    total_files = sum(len({h.path for h in st.instances}) for st in image_stacks)
    done_files = 0
    stored_paths: set[str] = set()
    unchanged_paths: set[str] = set()
    duplicate_paths: set[str] = set()
    relocated_paths: set[str] = set()
    progress(0, total_files, PHASE_STORE)
    for group in groups.values():
        if cancel is not None and cancel.is_set():
            summary.cancelled = True
            break
        records = [to_stack_record(st, stats) for st in group]
        if any(not (rec.key and rec.series_uid and rec.study_uid) for rec in records):
            # the store cannot file a series without its UIDs; checked here on the record itself
            # (not by reading the store's error text), and one such series never stops the archive
            reason = "missing Study/Series Instance UID"
            bad = {inst.path: inst for rec in records for inst in rec.instances}
            for path, inst in bad.items():
                summary.skipped.append(SkippedFile(path, reason))
            store.record_problems(FileState(path, inst.file_size or 0, inst.file_mtime_ns or 0, "problem", reason)
                                  for path, inst in bad.items())
            continue
        results = store.add_stacks(records)
        for rec, res in zip(records, results):
            paths_in = {i.path for i in rec.instances}
            dup_paths = {p for p, _ in res.duplicates}
            # a multi-frame file split over several stacks is counted once
            if res.instances_added:
                stored_paths.update(paths_in - dup_paths)
            elif res.status == "unchanged":
                unchanged_paths.update(paths_in - dup_paths)
            duplicate_paths.update(dup_paths)
            relocated_paths.update(p for p, _old in res.relocated)
            summary.images_stored += res.instances_added
            if res.status == "stored":
                summary.series_stored += 1
            elif res.status == "updated":
                summary.series_updated += 1
            else:
                summary.series_unchanged += 1
            if res.status in ("stored", "updated"):
                summary.series.append(IngestedSeries(
                    res.series_id, res.status, rec.modality, rec.series_description,
                    format_da(rec.study_date), len(rec.instances), rec.split_reason))
            done_files += len(paths_in)
        progress(done_files, total_files, PHASE_STORE)
    summary.files_stored += len(stored_paths)
    summary.files_relocated += len(relocated_paths - stored_paths)
    summary.files_unchanged += len(unchanged_paths - stored_paths - relocated_paths)
    summary.files_duplicate += len(duplicate_paths - stored_paths)
    from .reports import after_ingest  # SR / PDF reports are read, waiting reports linked to new studies
    after_ingest(store, summary, [k.path for k in summary.skipped if k.reason.startswith(("not an image", "no image"))])
    summary.elapsed_s = time.monotonic() - t0
    log.info("ingest: %d series stored, %d updated, %d files skipped%s", summary.series_stored,
             summary.series_updated, summary.files_skipped, " (cancelled)" if summary.cancelled else "")
    return summary


__all__ = ["IngestPathError", "missing_paths", "IngestSummary", "IngestedSeries", "SkippedFile", "ingest", "to_stack_record",
           "PHASE_FIND", "PHASE_SCAN", "PHASE_STORE"]
