"""Import of a teaching export (folder or zip) into this library: images, cases, key images, collections.

The library records where its DICOM files are, so the export's images are copied into
``<library>/teaching-imports/<export id>/`` first and ingested from there (a USB stick can be
removed afterwards). Importing the same export again adds nothing: ingest skips the files it
has and a study that already is a case is reported, not duplicated.
"""
from __future__ import annotations

import json
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from casebook.index.case_store.teaching_records import KeyImage, TeachingCase

from ...config import Settings
from ...errors import CasebookError
from ...progress import ProgressCallback, SupportsCancel, check_cancel, no_progress
from .export import DOC_NAME, FORMAT, FORMAT_VERSION, ZIP_NAME

PHASE_COPY = "copying the export"


class ImportFormatError(CasebookError):
    """The folder or zip is not a Casebook teaching export (the message names it and why)."""


@dataclass
class TeachingImportReport:
    source: str
    folder: str = ""
    created: list[tuple[str, int]] = field(default_factory=list)  # (case ref, new case id)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (case ref, why)
    missing_key_images: list[tuple[str, str]] = field(default_factory=list)  # (case ref, why)
    collections: list[str] = field(default_factory=list)
    ingest_headline: str = ""
    index_problem: str = ""

    def text(self) -> str:
        lines = [f"Imported {len(self.created)} teaching case(s) from {self.source}",
                 f"  images: {self.ingest_headline}"]
        lines += [f"  {ref} -> case {cid}" for ref, cid in self.created]
        lines += [f"  {ref}: not imported: {why}" for ref, why in self.skipped]
        lines += [f"  {ref}: a key image was not found: {why}" for ref, why in self.missing_key_images]
        if self.collections:
            lines.append("  collections: " + ", ".join(self.collections))
        if self.index_problem:
            lines.append(f"  search: {self.index_problem}")
        return "\n".join(lines) + "\n"


def read_document(path: Path) -> dict[str, Any]:
    """The case document of an export folder or zip, checked for format and version."""
    path = Path(path)
    try:
        if path.is_dir():
            raw = (path / DOC_NAME).read_text(encoding="utf-8")
        elif zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                raw = z.read(DOC_NAME).decode("utf-8")
        else:
            raise ImportFormatError(f"{path}: not a folder or zip of a Casebook teaching export")
        doc = json.loads(raw)
    except (OSError, KeyError) as exc:
        raise ImportFormatError(f"{path}: no {DOC_NAME} (is this a Casebook teaching export?)") from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"{path}: {DOC_NAME} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ImportFormatError(f"{path}: {DOC_NAME} is not a Casebook teaching export document")
    if int(doc.get("version", 0)) > FORMAT_VERSION:
        raise ImportFormatError(f"{path}: export format version {doc.get('version')} is newer than this Casebook "
                                f"reads ({FORMAT_VERSION}); update Casebook")
    if not isinstance(doc.get("cases"), list):
        raise ImportFormatError(f"{path}: {DOC_NAME} has no list of cases")
    return doc


def _copy_images(src: Path, dest: Path, progress: ProgressCallback, cancel: SupportsCancel | None) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if src.is_dir():
        files = [p for p in (src / "DICOM").rglob("*") if p.is_file()]
        for i, p in enumerate(files):
            check_cancel(cancel)
            target = dest / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists() or target.stat().st_size != p.stat().st_size:
                shutil.copyfile(p, target)
            progress(i + 1, len(files), PHASE_COPY)
        return
    with zipfile.ZipFile(src) as z:
        names = [n for n in z.namelist() if n.startswith("DICOM/") and not n.endswith("/")]
        for i, n in enumerate(names):
            check_cancel(cancel)
            pp = PurePosixPath(n)
            if pp.is_absolute() or ".." in pp.parts:
                raise ImportFormatError(f"{src}: member {n!r} would be written outside the import folder")
            target = dest.joinpath(*pp.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with z.open(n) as fin, open(target, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            progress(i + 1, len(names), PHASE_COPY)


def import_export(settings: Settings, path: Path, *, progress: ProgressCallback | None = None,
                  cancel: SupportsCancel | None = None, embed: bool = True, encoder: Any = None) -> TeachingImportReport:
    """Bring the export at ``path`` (folder or zip) into the settings' library."""
    from ..import_pipeline import import_paths
    from ..library import open_store

    progress = progress or no_progress
    path = Path(path)
    if path.is_dir() and not (path / DOC_NAME).exists() and (path / ZIP_NAME).exists():
        path = path / ZIP_NAME
    doc = read_document(path)
    export_id = str(doc.get("export_id") or "unnamed")
    if not export_id.replace("-", "").isalnum():
        raise ImportFormatError(f"{path}: export id {export_id!r} is not valid")
    dest = settings.library_dir / "teaching-imports" / export_id
    _copy_images(path, dest, progress, cancel)
    rep = TeachingImportReport(source=str(path), folder=str(dest))
    imp = import_paths(settings, [dest / "DICOM"], progress=progress, cancel=cancel, embed=embed, encoder=encoder)
    rep.ingest_headline = imp.headline("images").split(": ", 1)[-1]
    rep.index_problem = imp.index.problem if embed else ""
    store = open_store(settings)
    try:
        refs: dict[str, int] = {}
        for d in doc["cases"]:
            ref = str(d.get("ref", "?"))
            sid = store.study_id_for_uid(str(d.get("study_uid", "")))
            if sid is None:
                rep.skipped.append((ref, "its images are not in the export or could not be stored"))
                continue
            existing = store.teaching_case_for_study(sid)
            if existing is not None:
                rep.skipped.append((ref, f"already in this library as case {existing}"))
                refs[ref] = existing
                continue
            case = TeachingCase(study_id=sid, source="imported",
                                **{k: str(d.get(k, "") or "") for k in ("title", "history", "findings", "diagnosis",
                                                                        "discussion", "certainty", "difficulty",
                                                                        "author")},
                                differential=[str(x) for x in d.get("differential", [])],
                                systems=[str(x) for x in d.get("systems", [])],
                                tags=[str(x) for x in d.get("tags", [])])
            for k in d.get("key_images", []):
                where = store.locate_instance(str(k.get("sop_instance_uid", "")), int(k.get("frame_index", -1)))
                if where is None:
                    rep.missing_key_images.append((ref, f"slice {k.get('slice_index')} is not among the imported images"))
                    continue
                case.key_images.append(KeyImage(series_id=where[0], slice_index=where[1],
                                                sop_instance_uid=str(k["sop_instance_uid"]),
                                                frame_index=int(k.get("frame_index", -1)),
                                                orientation=str(k.get("orientation", "axial")),
                                                view_index=(None if k.get("view_index") is None
                                                            else int(k["view_index"])),
                                                window_center=float(k.get("window_center", 40.0)),
                                                window_width=float(k.get("window_width", 400.0)),
                                                annotations=list(k.get("annotations", [])),
                                                caption=str(k.get("caption", ""))))
            try:
                refs[ref] = store.create_teaching_case(case)
            except CasebookError as exc:
                rep.skipped.append((ref, str(exc)))
                continue
            rep.created.append((ref, refs[ref]))
        for col in doc.get("collections", []):
            name = str(col.get("name", "")).strip()
            if not name:
                continue
            for ref in col.get("cases", []):
                if ref in refs:
                    store.add_to_collection(name, store.get_teaching_case(refs[ref]).study_id,
                                            description=str(col.get("description", "")))
            rep.collections.append(name)
    finally:
        store.close()
    return rep


__all__ = ["ImportFormatError", "TeachingImportReport", "import_export", "read_document"]
