"""De-identified export of teaching cases: a DICOM folder, a JSON case document, a report, a zip.

Layout of ``OUT_DIR`` (which must be new or empty)::

    casebook-teaching.json    the cases (fields, key images, collections), no identifiers
    export-report.txt/.json   what was exported, held back, excluded, cleaned
    DICOM/case-001/S001/I00001.dcm ...
    casebook-teaching.zip     all of the above, for sending

Every DICOM file goes through :mod:`.deid` with one shared context, so UIDs and date offsets are
consistent across the whole export; series at risk of burned-in text (:mod:`.pixels`) are held
back unless their case has a confirmed mask for them or excludes them. Case text is cleaned of
every identifier found in the headers. Bad files are reported and the rest goes on.
"""
from __future__ import annotations

import json
import logging
import time
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import pydicom

from casebook.index.case_store.teaching_records import TeachingCase

from ...errors import Cancelled, CasebookError
from ...progress import ProgressCallback, SupportsCancel, check_cancel, no_progress
from .deid import CODES, DeidContext, collect_identifiers, deidentify, profile_table
from .pixels import MaskError, apply_mask, burned_in_risk

log = logging.getLogger(__name__)

FORMAT = "casebook-teaching-export"
FORMAT_VERSION = 1
DOC_NAME = "casebook-teaching.json"
REPORT_NAME = "export-report.txt"
REPORT_JSON = "export-report.json"
ZIP_NAME = "casebook-teaching.zip"
PHASE_READ, PHASE_WRITE = "reading headers", "de-identifying"
CASE_TEXT = ("title", "history", "findings", "diagnosis", "discussion", "author")


class ExportError(CasebookError):
    """An export cannot be made (the message names the folder, case or setting)."""


@dataclass
class HeldSeries:
    """A series left out of the export, and why (library series id, never a UID)."""

    case_ref: str
    case_id: int
    series_id: int
    modality: str
    files: int
    reason: str
    status: str = "held back"  # "held back" (needs a mask) | "excluded" (by the author)


@dataclass
class ExportReport:
    out_dir: str
    zip_path: str = ""
    cases: list[dict[str, Any]] = field(default_factory=list)  # ref, case id, files, key images
    held: list[HeldSeries] = field(default_factory=list)
    cleaned_text: list[tuple[str, str, int]] = field(default_factory=list)  # (case ref, field, replacements)
    dropped_key_images: list[tuple[str, int, str]] = field(default_factory=list)  # (case ref, slice, why)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)
    actions: dict[str, int] = field(default_factory=dict)
    cleaned_elements: int = 0
    masked_files: int = 0
    files_written: int = 0
    table: str = ""
    elapsed_s: float = 0.0

    @property
    def complete(self) -> bool:
        """True when nothing was held back and no file failed (excluded series are the author's choice)."""
        return not self.problems and not [h for h in self.held if h.status == "held back"]

    def text(self) -> str:
        """The human-readable report (also written into the export)."""
        lines = [f"Casebook teaching export: {len(self.cases)} case(s), {self.files_written} DICOM file(s)",
                 f"De-identification: DICOM PS3.15 Annex E basic profile, Table E.1-1 from {self.table}; "
                 "options: modified dates (per-patient shift), patient characteristics, clean pixel data "
                 "where masked; private tags removed.", ""]
        for c in self.cases:
            lines.append(f"  {c['ref']}: case {c['case_id']}, {c['files']} file(s), {c['key_images']} key image(s)"
                         + ("" if c["files"] else " (not exported: no series may go yet)"))
        held = [h for h in self.held if h.status == "held back"]
        if held:
            lines += ["", "Held back until a mask is confirmed or the series is excluded "
                          "(casebook teach edit CASE --mask SERIES:ROW0,COL0,ROW1,COL1 | --exclude SERIES):"]
            lines += [f"  {h.case_ref} (case {h.case_id}) series {h.series_id} {h.modality}, {h.files} file(s): {h.reason}"
                      for h in held]
        excl = [h for h in self.held if h.status == "excluded"]
        if excl:
            lines += ["", "Excluded by the author:"]
            lines += [f"  {h.case_ref} series {h.series_id} {h.modality}, {h.files} file(s)" for h in excl]
        if self.masked_files:
            lines.append(f"\nBurned-in text masked on {self.masked_files} file(s) (every frame).")
        if self.cleaned_text:
            lines += ["", "Identifiers found in the case text and replaced by [removed]:"]
            lines += [f"  {ref} {name}: {n}" for ref, name, n in self.cleaned_text]
        if self.cleaned_elements:
            lines.append(f"\n{self.cleaned_elements} kept element(s) still carried a header identifier and were cleaned.")
        if self.dropped_key_images:
            lines += ["", "Key images not exported:"]
            lines += [f"  {ref} slice {k}: {why}" for ref, k, why in self.dropped_key_images]
        if self.problems:
            lines += ["", "Files that could not be exported:"]
            lines += [f"  {p}: {why}" for p, why in self.problems]
        lines += ["", "Elements by action: " + ", ".join(f"{k} {v}" for k, v in sorted(self.actions.items()))]
        return "\n".join(lines) + "\n"


@dataclass
class _Series:
    series_id: int
    series_uid: str
    modality: str
    paths: list[str]
    held: str | None = None


def _out_dir(path: Path) -> Path:
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise ExportError(f"{path}: the export folder must be new or empty")
    path.mkdir(parents=True, exist_ok=True)
    return path


def export_cases(store: Any, case_ids: Sequence[int], out_dir: Path, *, keep_characteristics: bool = True,
                 make_zip: bool = True, progress: ProgressCallback | None = None,
                 cancel: SupportsCancel | None = None) -> ExportReport:
    """Export ``case_ids`` of ``store`` de-identified into ``out_dir`` (see the module docstring)."""
    progress = progress or no_progress
    t0 = time.monotonic()
    if not case_ids:
        raise ExportError("nothing to export: no case given")
    cases = [store.get_teaching_case(int(c)) for c in dict.fromkeys(case_ids)]
    out = _out_dir(out_dir)
    ctx = DeidContext(keep_characteristics=keep_characteristics, table=profile_table())
    rep = ExportReport(out_dir=str(out), table=ctx.table.edition)
    refs = {c.id: f"case-{i + 1:03d}" for i, c in enumerate(cases)}
    plan: dict[int, list[_Series]] = {}
    patients: dict[int, str] = {}
    # pass 1: every header, for the identifiers and the burned-in risk
    total = 0
    for c in cases:
        series = []
        for se in store.list_series(study_id=c.study_id):
            paths = list(dict.fromkeys(i.path for i in store.series_files(se.id)))
            series.append(_Series(se.id, se.series_uid, se.modality, paths))
            total += len(paths)
        plan[c.id] = series
    done = 0
    for c in cases:
        for s in plan[c.id]:
            for p in s.paths:
                check_cancel(cancel)
                done += 1
                progress(done, total, PHASE_READ)
                try:
                    ds = pydicom.dcmread(p, stop_before_pixels=True)
                except Exception as exc:  # unreadable files are reported, the rest goes on
                    rep.problems.append((p, f"cannot be read: {exc.__class__.__name__}"))
                    continue
                collect_identifiers(ds, ctx.identifiers, table=ctx.table, keep_characteristics=keep_characteristics)
                patients.setdefault(c.id, str(ds.get("PatientID", "") or "") or f"case:{c.id}")
                if s.held is None:
                    s.held = burned_in_risk(ds)
            if s.series_uid in c.excluded:
                rep.held.append(HeldSeries(refs[c.id], c.id, s.series_id, s.modality, len(s.paths), "excluded",
                                           "excluded"))
            elif s.held and s.series_uid not in c.masks:
                rep.held.append(HeldSeries(refs[c.id], c.id, s.series_id, s.modality, len(s.paths), s.held))
    # pass 2: de-identify and write
    left_out = {(h.case_id, h.series_id) for h in rep.held}
    to_write = sum(len(s.paths) for c in cases for s in plan[c.id] if (c.id, s.series_id) not in left_out)
    done = 0
    doc_cases = []
    for c in cases:
        ref = refs[c.id]
        written: dict[int, int] = {}
        sn = 0
        for s in plan[c.id]:
            if (c.id, s.series_id) in left_out:
                continue
            sn += 1
            folder = out / "DICOM" / ref / f"S{sn:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k, p in enumerate(s.paths):
                check_cancel(cancel)
                done += 1
                progress(done, to_write, PHASE_WRITE)
                try:
                    ds = pydicom.dcmread(p)
                    masked = False
                    if s.series_uid in c.masks:
                        apply_mask(ds, c.masks[s.series_uid], path=p)
                        masked = True
                        rep.masked_files += 1
                    deidentify(ds, ctx, patient=patients.get(c.id, f"case:{c.id}"), masked=masked)
                    ds.save_as(folder / f"I{k + 1:05d}.dcm", enforce_file_format=True)
                    written[s.series_id] = written.get(s.series_id, 0) + 1
                    rep.files_written += 1
                except (Cancelled, KeyboardInterrupt):
                    raise
                except MaskError as exc:
                    rep.problems.append((p, str(exc)))
                except Exception as exc:  # a bad file is reported, the rest goes on
                    log.warning("teaching export: a file failed: %s", exc.__class__.__name__)
                    rep.problems.append((p, f"cannot be exported: {exc.__class__.__name__}: {exc}"))
        if not written:  # every series held back or excluded: the case waits for its images
            rep.cases.append({"ref": ref, "case_id": c.id, "files": 0, "key_images": 0})
            continue
        doc_cases.append(_case_doc(c, ref, ctx, written, rep))
        rep.cases.append({"ref": ref, "case_id": c.id, "files": sum(written.values()),
                          "key_images": len(doc_cases[-1]["key_images"])})
    rep.actions, rep.cleaned_elements = dict(ctx.actions), ctx.cleaned
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "export_id": str(uuid.uuid4()),
           "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
           "deidentification": {"profile": "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile",
                                "table": ctx.table.edition,
                                "codes": [CODES[k][0] for k in ("basic", "modified_dates")]
                                + ([CODES["patient_characteristics"][0]] if keep_characteristics else [])},
           "cases": doc_cases,
           "collections": _collections_doc(store, [c for c in cases if refs[c.id] in {d["ref"] for d in doc_cases}],
                                           refs, ctx)}
    (out / DOC_NAME).write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    rep.elapsed_s = time.monotonic() - t0
    (out / REPORT_NAME).write_text(rep.text(), encoding="utf-8")
    (out / REPORT_JSON).write_text(json.dumps(asdict(rep), indent=1, default=str), encoding="utf-8")
    if make_zip:
        rep.zip_path = str(out / ZIP_NAME)
        _zip(out, out / ZIP_NAME)
    return rep


def _clean(ctx: DeidContext, rep: ExportReport, ref: str, name: str, value: str) -> str:
    new, n = ctx.clean_text(value or "")
    if n:
        rep.cleaned_text.append((ref, name, n))
    return new


def _case_doc(c: TeachingCase, ref: str, ctx: DeidContext, written: dict[int, int], rep: ExportReport) -> dict[str, Any]:
    d: dict[str, Any] = {"ref": ref}
    for name in CASE_TEXT:
        d[name] = _clean(ctx, rep, ref, name, getattr(c, name))
    d["differential"] = [_clean(ctx, rep, ref, "differential", v) for v in c.differential]
    d["systems"] = [_clean(ctx, rep, ref, "systems", v) for v in c.systems]
    d["tags"] = [_clean(ctx, rep, ref, "tags", v) for v in c.tags]
    d["certainty"], d["difficulty"] = c.certainty, c.difficulty
    d["study_uid"] = ctx.uids(c.study_uid)
    kis = []
    for ki in c.key_images:
        if ki.series_id not in written:
            rep.dropped_key_images.append((ref, ki.slice_index, "its series is not in this export"))
            continue
        anns = []
        for a in ki.annotations:
            a = dict(a)
            if a.get("label"):
                a["label"] = _clean(ctx, rep, ref, "key image label", str(a["label"]))
            anns.append(a)
        kis.append({"series_uid": ctx.uids(ki.series_uid), "sop_instance_uid": ctx.uids(ki.sop_instance_uid),
                    "frame_index": ki.frame_index, "slice_index": ki.slice_index, "orientation": ki.orientation,
                    "view_index": ki.view_index,
                    "window_center": ki.window_center, "window_width": ki.window_width, "annotations": anns,
                    "caption": _clean(ctx, rep, ref, "key image caption", ki.caption)})
    d["key_images"] = kis
    masks = {ctx.uids(uid): rects for uid, rects in c.masks.items()}
    d["masks_applied"] = masks
    return d


def _collections_doc(store: Any, cases: list[TeachingCase], refs: dict[int | None, str],
                     ctx: DeidContext) -> list[dict[str, Any]]:
    by_study = {c.study_id: refs[c.id] for c in cases}
    out = []
    for name, description, _n in store.collections():
        members = [by_study[sid] for sid in store.collection_studies(name) if sid in by_study]
        if members:
            out.append({"name": ctx.clean_text(name)[0], "description": ctx.clean_text(description or "")[0],
                        "cases": members})
    return out


def _zip(root: Path, target: Path) -> None:
    # level 1: images compress little more at the default level, for several times the time
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1, allowZip64=True) as z:
        for p in sorted(root.rglob("*")):
            if p.is_file() and p != target:
                z.write(p, p.relative_to(root).as_posix())


__all__ = ["DOC_NAME", "ExportError", "ExportReport", "FORMAT", "FORMAT_VERSION", "HeldSeries", "REPORT_NAME",
           "ZIP_NAME", "export_cases"]
