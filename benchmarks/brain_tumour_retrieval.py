"""Does a box on a real tumour find the same tumour? Region search on TCIA Brain-Tumor-Progression.

A held-out real-data check of the finding (region) search of issue 11: nothing in the region code
was chosen on this data, and this script changes nothing in it. As a reader would:

1. every NIfTI scan of ``temporal/brain_tumor_progression`` (11 glioblastoma patients, an earlier
   and a later contrast T1 each) is written as a DICOM MR series (one patient per folder number,
   earlier scan = earlier StudyDate, dates from ``supplementary.csv``, geometry from the NIfTI
   affine: 1 mm voxels, the original spacing is lost) into a temporary library, ingested with the
   project's ingest and its findings embedded (``embed_and_index_regions``, as ``casebook embed``).
   The masks are not ingested: they are only this check's ground truth.
2. per patient, a box around the tumour of the later scan (the mask's in-plane bounding box on the
   axial slice with the largest mask area, plus ``--margin`` voxels) is searched with the
   same-patient filter OFF (same study excluded): is the top hit the same patient's earlier scan
   (target >= 80% of patients), and does the earlier scan's matched region overlap its tumour mask
   (any voxel of ``matched_box`` in the mask; target >= 80%)?
3. the same box with the filter ON (other patients only): P@5 where a hit counts when its matched
   region overlaps that series' tumour mask (tumour-bearing regions ahead of tumour-free ones;
   target >= 0.8).

Prints a per-patient table, the three figures against their targets, the load average and the time,
and writes ``benchmarks/results/brain_tumour_retrieval.txt``. Data: TCIA Brain-Tumor-Progression
(CC BY 3.0; Schmainda KM, Prah M (2018), doi:10.7937/K9/TCIA.2018.15quzvnb).

    .venv/bin/python benchmarks/brain_tumour_retrieval.py

``--pixel-mm/--slice-mm`` write another spacing than the NIfTI's 1 mm (the originals' is lost; with
1 mm the detector sees a 24 mm-thick head): ``--pixel-mm 0.94 --slice-mm 6`` is a scanner-like
geometry (240 mm field of view, 22 slices over the cerebrum). The default stays the files' own.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET_FIRST, TARGET_OVERLAP, TARGET_P5 = 0.8, 0.8, 0.8
LARGE_MM = 10.0  # regions this size or larger: what a box framing a tumour is matched with


def default_data() -> Path:
    """The shared folder (``CASEBOOK_SHARED`` or ``../shared`` beside the repo)."""
    env = os.environ.get("CASEBOOK_SHARED")
    root = Path(env) if env else REPO.parent / "shared"
    return root / "data" / "temporal" / "brain_tumor_progression"


def _revision() -> str:
    """The checkout's commit (``+dirty`` with uncommitted changes): which code the figures are of."""
    import subprocess

    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=10", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "at an unknown commit"
    return f"at {rev}{'+dirty' if dirty else ''}" if rev else "at an unknown commit"


def study_dates(data: Path) -> dict[str, tuple[date, date]]:
    """Patient folder -> (earlier, later) scan date, from ``supplementary.csv``."""
    out: dict[str, tuple[date, date]] = {}
    lines = (data / "supplementary.csv").read_text().splitlines()
    for line in lines[1:]:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 4 and parts[0]:
            out[parts[0]] = (date.fromisoformat(parts[2]), date.fromisoformat(parts[3]))
    return out


def _uid(*parts: object) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["casebook-btp", *map(str, parts)])


def write_series(nifti: Path, out_dir: Path, *, patient: str, when: date, timepoint: int,
                 description: str, pixel_mm: float | None = None, slice_mm: float | None = None) -> tuple[str, Path]:
    """Write one NIfTI scan as a DICOM MR series (one file per axial slice); return its series UID.

    Geometry comes from the NIfTI affine (RAS) turned into DICOM patient space (LPS): row and column
    directions are the affine's first two axes, each slice's position is the affine of its corner."""
    import nibabel as nib
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

    img = nib.load(str(nifti))
    vol = np.asanyarray(img.dataobj)
    if vol.ndim != 3:
        raise ValueError(f"{nifti}: not a 3-D volume")
    if not np.all(vol == np.rint(vol)) or vol.min() < 0 or vol.max() > 65535:
        raise ValueError(f"{nifti}: values are not 16-bit unsigned integers")
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ img.affine
    col_step, row_step, slice_step = (lps[:3, n] for n in range(3))  # along NIfTI i (DICOM column), j (row), k
    di, dj, dk = (float(np.linalg.norm(v)) for v in (col_step, row_step, slice_step))
    if pixel_mm or slice_mm:  # the files' 1 mm is not the scanner's spacing (the module's docstring)
        f = np.array([(pixel_mm or di) / di, (pixel_mm or dj) / dj, (slice_mm or dk) / dk, 1.0])
        lps = lps @ np.diag(f)
        col_step, row_step, slice_step = (lps[:3, n] for n in range(3))
        di, dj, dk = (float(np.linalg.norm(v)) for v in (col_step, row_step, slice_step))
    rdir, cdir = col_step / di, row_step / dj
    normal = np.cross(rdir, cdir)
    pid = f"BTP-{patient}"
    study_uid, series_uid, for_uid = (_uid(patient, timepoint, w) for w in ("study", "series", "for"))
    nz = vol[vol > 0]
    lo, hi = (np.percentile(nz, [0.5, 99.5]) if nz.size else (0.0, 1.0))
    base = Dataset()
    base.SpecificCharacterSet = "ISO_IR 100"
    base.ImageType = ["DERIVED", "PRIMARY", "AXIAL"]
    base.SOPClassUID = MRImageStorage
    base.StudyDate = base.SeriesDate = base.ContentDate = base.AcquisitionDate = when.strftime("%Y%m%d")
    base.StudyTime = base.SeriesTime = base.ContentTime = "120000"
    base.AccessionNumber = f"BTP{patient}{timepoint}"
    base.Modality = "MR"
    base.Manufacturer = "TCIA Brain-Tumor-Progression (from NIfTI)"
    base.InstitutionName = "TCIA"
    base.ReferringPhysicianName = ""
    base.StudyDescription = "MR BRAIN" + (" FOLLOW-UP" if timepoint else "")
    base.SeriesDescription = description
    base.PatientName = f"BTP^{patient}"
    base.PatientID = pid
    base.PatientBirthDate = ""
    base.PatientSex = ""
    base.PatientIdentityRemoved = "YES"
    base.DeidentificationMethod = "TCIA de-identified; written from NIfTI"
    base.BodyPartExamined = "BRAIN"
    base.SliceThickness = f"{dk:g}"
    base.SpacingBetweenSlices = f"{dk:g}"
    base.PatientPosition = "HFS"
    base.StudyInstanceUID = study_uid
    base.SeriesInstanceUID = series_uid
    base.StudyID = str(timepoint + 1)
    base.SeriesNumber = 1
    base.FrameOfReferenceUID = for_uid
    base.PositionReferenceIndicator = ""
    base.ImageOrientationPatient = [f"{v:.6f}" for v in (*rdir, *cdir)]
    base.SamplesPerPixel = 1
    base.PhotometricInterpretation = "MONOCHROME2"
    base.Rows, base.Columns = int(vol.shape[1]), int(vol.shape[0])
    base.PixelSpacing = [f"{dj:g}", f"{di:g}"]  # between rows, between columns
    base.BitsAllocated = base.BitsStored = 16
    base.HighBit = 15
    base.PixelRepresentation = 0
    base.ScanningSequence = "SE"
    base.SequenceVariant = "NONE"
    base.MRAcquisitionType = "2D"
    base.WindowCenter, base.WindowWidth = f"{(lo + hi) / 2:.0f}", f"{max(hi - lo, 1.0):.0f}"
    d = out_dir / pid / f"{when:%Y%m%d}_MR"
    d.mkdir(parents=True, exist_ok=True)
    for k in range(vol.shape[2]):
        ds = Dataset()
        ds.update(base)
        ds.SOPInstanceUID = _uid(patient, timepoint, "inst", k)
        ds.InstanceNumber = k + 1
        pos = (lps @ np.array([0.0, 0.0, float(k), 1.0]))[:3]
        ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
        ds.SliceLocation = f"{float(pos @ normal):.4f}"
        ds.PixelData = np.ascontiguousarray(vol[:, :, k].T).astype(np.uint16).tobytes()  # rows = NIfTI j
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = ds.SOPClassUID
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta = meta
        ds.save_as(d / f"IM{k + 1:04d}.dcm", enforce_file_format=True)
    return series_uid, d


@dataclass
class Scan:
    patient: str
    timepoint: int  # 0 = earlier (Pre), 1 = later (Post)
    series_uid: str
    mask_kji: np.ndarray  # tumour mask in the stored series' (k, j, i) voxels
    series_id: int = -1


@dataclass
class PatientRow:
    patient: str
    box: tuple[int, ...]
    top_patient: str = "-"
    top_is_earlier: bool = False
    earlier_rank: int = 0  # rank of the earlier scan with the filter off (0 = not returned)
    earlier_overlap: bool = False
    top_score: float = float("nan")
    top_confidence: str = ""
    p5: float = 0.0
    p5_hits: str = ""
    n_off: int = 0
    n_on: int = 0
    query_on_tumour: bool = False  # the box's own finding (query row 0) overlaps the later scan's mask
    earlier_has_tumour_region: bool = False  # some stored region of the earlier scan overlaps its mask
    modalities: set[str] = field(default_factory=set)
    top_same_place: bool = False  # the top hit is a same-place hit (the box's surroundings found again)
    # the box's context slid over EVERY other scan's map, no patient rule: rank of the earlier scan
    # among the 21 by best agreement (1 = it beats every other patient's best place), and whether
    # that best place is on its tumour (within 8 mm in-plane, 2 slices)
    context_rank: int = 0
    context_on_tumour: bool = False
    error: str = ""


def largest_slice_box(mask_kji: np.ndarray, margin: int) -> tuple[int, int, int, int, int, int]:
    """The in-plane bounding box (plus ``margin`` voxels) of the mask on its largest axial slice."""
    areas = mask_kji.reshape(mask_kji.shape[0], -1).sum(axis=1)
    k = int(np.argmax(areas))
    jj, ii = np.nonzero(mask_kji[k])
    nj, ni = mask_kji.shape[1:]
    return (k, k + 1, max(int(jj.min()) - margin, 0), min(int(jj.max()) + 1 + margin, nj),
            max(int(ii.min()) - margin, 0), min(int(ii.max()) + 1 + margin, ni))


def overlaps(mask_kji: np.ndarray, box: tuple[int, ...]) -> bool:
    k0, k1, j0, j1, i0, i1 = (int(v) for v in box)
    return bool(mask_kji[max(k0, 0):k1, max(j0, 0):j1, max(i0, 0):i1].any())


def build_library(data: Path, lib: Path, patients: list[str], log=print, *, pixel_mm: float | None = None,
                  slice_mm: float | None = None) -> tuple[dict[str, list[Scan]], dict]:
    """Write, ingest and embed the scans of ``patients``; return the scans and timings."""
    import nibabel as nib

    os.environ["CASEBOOK_LIBRARY"] = str(lib)
    os.environ["CASEBOOK_CONFIG"] = str(lib / "settings.toml")
    from casebook.index.case_store import CaseStore
    from casebook.viewer.core.config import load_settings
    from casebook.viewer.core.services.ingest import ingest
    from casebook.viewer.core.services.library import load_stored_volume
    from casebook.viewer.core.services.regions import embed_and_index_regions

    dates = study_dates(data)
    dicom = lib / "dicom"
    scans: dict[str, list[Scan]] = {}
    t = {}
    t0 = time.perf_counter()
    for p in patients:
        for tp, (scan, mask, desc) in enumerate((("Pre_Scan_T1", "Pre_Mask", "T1 post-contrast (earlier)"),
                                                 ("Post_Scan_T1", "Post_Mask", "T1 post-contrast (later)"))):
            uid, _ = write_series(data / p / f"{scan}.nii.gz", dicom, patient=p, when=dates[p][tp], timepoint=tp,
                                  description=desc, pixel_mm=pixel_mm, slice_mm=slice_mm)
            m = np.asanyarray(nib.load(str(data / p / f"{mask}.nii.gz")).dataobj) > 0
            scans.setdefault(p, []).append(Scan(p, tp, uid, np.ascontiguousarray(m.transpose(2, 1, 0))))
    t["write_s"] = time.perf_counter() - t0
    settings = load_settings()
    lib.mkdir(parents=True, exist_ok=True)
    store = CaseStore.open(settings.database_path, create=True)
    try:
        t0 = time.perf_counter()
        summary = ingest([dicom], store)
        t["ingest_s"] = time.perf_counter() - t0
        by_uid = {s.series_uid: s for s in store.list_series()}
        for p, pair in scans.items():
            for sc in pair:
                se = by_uid.get(sc.series_uid)
                if se is None:
                    raise RuntimeError(f"patient {p} scan {sc.timepoint}: series not ingested ({summary.skip_reasons})")
                sc.series_id = int(se.id)
                # the stored voxel grid must be the NIfTI's (k, j, i) for the masks to mean anything
                vox = np.asarray(load_stored_volume(store, sc.series_id).voxels)
                scan = ("Pre_Scan_T1", "Post_Scan_T1")[sc.timepoint]
                ref = np.asanyarray(nib.load(str(data / p / f"{scan}.nii.gz")).dataobj).transpose(2, 1, 0)
                if vox.shape[:3] != ref.shape or not np.allclose(vox.reshape(ref.shape), ref):
                    raise RuntimeError(f"patient {p}: the stored series is not the NIfTI's voxel grid")
        t0 = time.perf_counter()
        rep = embed_and_index_regions(store, settings.index_dir)
        t["embed_s"] = time.perf_counter() - t0
        t["regions"] = rep.regions
        t["embed_text"] = rep.text()
        log(f"library {lib}: {len(by_uid)} series ingested in {t['ingest_s']:.0f} s; {rep.text()} "
            f"in {t['embed_s']:.0f} s")
    finally:
        store.close()
    return scans, t


def evaluate(lib: Path, scans: dict[str, list[Scan]], *, margin: int = 4,
             k: int = 10) -> tuple[list[PatientRow], tuple[int, int, int, int, int, int]]:
    """Box on the later scan's tumour -> region search with the same-patient filter off and on.

    Also returns what the stored findings allow: (regions on a tumour, regions, series with a
    region on their tumour, series)."""
    os.environ["CASEBOOK_LIBRARY"] = str(lib)
    os.environ["CASEBOOK_CONFIG"] = str(lib / "settings.toml")
    from casebook.index.case_store import CaseStore
    from casebook.viewer.core.config import load_settings
    from casebook.viewer.core.services.region_search import RegionSearchService
    from casebook.viewer.core.services.regions import register
    from casebook.viewer.core.services.search_types import SearchFilters

    settings = load_settings()
    store = CaseStore.open(settings.database_path)
    svc = RegionSearchService(store, settings.index_dir)
    by_id = {sc.series_id: sc for pair in scans.values() for sc in pair}
    modality = {s.id: s.modality for s in store.list_series()}
    rows: list[PatientRow] = []
    # what the stored findings allow: share of all stored regions on a tumour (a random hit's
    # chance of counting for P@5) and, per series, whether any stored region is on the tumour
    regions, desc = register(store)
    on_tumour: dict[int, bool] = {}
    n_regions = n_on_tumour = n_large = n_large_on = 0
    for sid, sc in by_id.items():
        stored, _ = regions.regions_of_series(desc.id, sid)
        flags = [overlaps(sc.mask_kji, r.box) for r in stored]
        on_tumour[sid] = any(flags)
        n_regions += len(flags)
        n_on_tumour += sum(flags)
        # a larger region is likelier to touch a tumour: the chance for hits of a box-scale query's size
        large = [f for f, r in zip(flags, stored) if r.diameter_mm >= LARGE_MM]
        n_large += len(large)
        n_large_on += sum(large)
    stored = (n_on_tumour, n_regions, sum(on_tumour.values()), len(on_tumour), n_large_on, n_large)
    try:
        for p, (earlier, later) in sorted(scans.items()):
            box = largest_slice_box(later.mask_kji, margin)
            row = PatientRow(p, box)
            row.earlier_has_tumour_region = on_tumour.get(earlier.series_id, False)
            rows.append(row)
            try:
                q = svc.query_from_box(later.series_id, box)
                row.query_on_tumour = bool(q.regions) and overlaps(later.mask_kji, q.regions[0].box)
                off = svc.search(q, filters=SearchFilters(exclude_same_patient=False, exclude_same_study=True), k=k)
                on = svc.search(q, filters=SearchFilters(exclude_same_patient=True, exclude_same_study=True), k=k)
            except Exception as exc:  # noqa: BLE001 - a failed query is a miss, said in the table
                row.error = f"{type(exc).__name__}: {exc}"
                continue
            row.n_off, row.n_on = len(off.hits), len(on.hits)
            row.modalities = {modality.get(h.series_id, "?") for h in (*off.hits, *on.hits)}
            if off.hits:
                top = off.hits[0]
                row.top_patient = by_id[top.series_id].patient if top.series_id in by_id else "?"
                row.top_is_earlier = top.series_id == earlier.series_id
                row.top_score, row.top_confidence = float(top.score), top.confidence
                row.top_same_place = bool(getattr(top, "same_place", False))
            _context_check(svc, q, row, earlier, by_id)
            for h in off.hits:
                if h.series_id == earlier.series_id:
                    row.earlier_rank = h.rank if h.rank else off.hits.index(h) + 1
                    row.earlier_overlap = overlaps(earlier.mask_kji, h.matched_box)
                    break
            marks = []
            for h in on.hits[:5]:
                sc = by_id.get(h.series_id)
                marks.append(sc is not None and overlaps(sc.mask_kji, h.matched_box))
            row.p5 = sum(marks) / 5.0
            row.p5_hits = "".join("+" if m else "-" for m in marks)
    finally:
        svc.close()
        store.close()
    return rows, stored


def _context_check(svc, q, row: PatientRow, earlier: Scan, by_id: dict) -> None:
    """Without the same-patient rule: is the earlier scan the best place among all other scans?"""
    from casebook.inference.regions import context as cx
    from casebook.viewer.core.services.same_place import load_context_map

    if q.context is None:
        return
    best = {}
    for sid in by_id:
        if sid == q.series_id:
            continue
        cmap = load_context_map(svc.maps, sid)
        if cmap is not None:
            best[sid] = cx.best_context(q.context.vector, cmap)
    if earlier.series_id not in best:
        return
    order = sorted(best, key=lambda s: -best[s].score)
    row.context_rank = order.index(earlier.series_id) + 1
    k, j, i = (int(round(v)) for v in best[earlier.series_id].centre_kji)
    m = earlier.mask_kji
    row.context_on_tumour = bool(m[max(k - 2, 0):k + 3, max(j - 8, 0):j + 8, max(i - 8, 0):i + 8].any())


def report(rows: list[PatientRow], timings: dict, *, stored: tuple[int, int, int, int, int, int] | None = None, margin: int,
           elapsed: float, load: tuple) -> str:
    """The per-patient table and the three figures against their targets."""
    out = io.StringIO()
    w = out.write
    w(f"{'pt':3s} {'box (k0,k1,j0,j1,i0,i1)':28s} {'top':4s} {'first':5s} {'rank':4s} {'ovl':4s} "
      f"{'score':6s} {'confidence':14s} {'P@5':4s} {'on-hits':7s} {'q-on-t':6s} {'e-has-t':7s} {'ctx':3s}\n")
    for r in rows:
        w(f"{r.patient:3s} {str(r.box):28s} {r.top_patient:4s} {'yes' if r.top_is_earlier else 'no':5s} "
          f"{r.earlier_rank or '-':>4} {'yes' if r.earlier_overlap else 'no':4s} {r.top_score:6.3f} "
          f"{r.top_confidence[:14]:14s} {r.p5:4.2f} {r.p5_hits:7s} {'yes' if r.query_on_tumour else 'no':6s} "
          f"{'yes' if r.earlier_has_tumour_region else 'no':7s} {r.context_rank or '-':>3}"
          f"{'' if r.context_on_tumour else '*'}{'  ' + r.error if r.error else ''}\n")
    w("columns: top = patient of the top hit (filter off); first = it is the same patient's earlier scan; rank = "
      "the earlier scan's rank (filter off); ovl = its matched region overlaps its tumour mask; on-hits = top 5 "
      "with the filter on, + when the matched region overlaps that series' tumour; q-on-t = the box's own finding "
      "overlaps the later scan's tumour; e-has-t = some stored region of the earlier scan overlaps its tumour; "
      "ctx = the earlier scan's rank when the box's surroundings are slid over every other scan, no patient rule "
      "(* = its best place is off the tumour)\n")
    n = max(len(rows), 1)
    first = sum(r.top_is_earlier for r in rows) / n
    ovl = sum(r.earlier_overlap for r in rows) / n
    strict = sum(r.top_is_earlier and r.earlier_overlap for r in rows) / n
    p5 = float(np.mean([r.p5 for r in rows])) if rows else 0.0
    mods = sorted(set().union(*(r.modalities for r in rows))) if rows else []

    def verdict(v: float, t: float) -> str:
        return "meets" if v >= t else "MISSES"

    w(f"\nfilter off (same study excluded): top hit = same patient's earlier scan: "
      f"{first:.2f} ({sum(r.top_is_earlier for r in rows)}/{len(rows)}), target >= {TARGET_FIRST} -> "
      f"{verdict(first, TARGET_FIRST)}\n")
    w(f"filter off: the earlier scan's matched region overlaps its tumour mask: {ovl:.2f} "
      f"({sum(r.earlier_overlap for r in rows)}/{len(rows)}), target >= {TARGET_OVERLAP} -> "
      f"{verdict(ovl, TARGET_OVERLAP)}  (top hit AND overlap: {strict:.2f})\n")
    w(f"filter on (other patients): P@5, a hit = matched region overlaps that series' tumour mask: "
      f"{p5:.2f}, target >= {TARGET_P5} -> {verdict(p5, TARGET_P5)}\n")
    from casebook.viewer.core.services.same_place import SAME_PLACE

    ctx1 = sum(r.context_rank == 1 for r in rows)
    w(f"how: the top hit is a same-place hit (the patient's own scan where the box's surroundings agree >= "
      f"{SAME_PLACE:.2f}) for {sum(r.top_same_place for r in rows)}/{len(rows)}; without that rule, slid over every other "
      f"scan, the earlier scan is the best place for {ctx1}/{len(rows)} and its best place is on its tumour "
      f"for {sum(r.context_on_tumour for r in rows)}/{len(rows)}\n")
    st = stored
    if st:
        chance_first = 1.0 / max(2 * len(rows) - 1, 1)
        w(f"reference: chance of the earlier scan first = 1/{max(2 * len(rows) - 1, 1)} = {chance_first:.2f}; "
          f"stored regions on a tumour {st[0]}/{st[1]} = {st[0] / max(st[1], 1):.2f} (a random hit's chance for "
          f"P@5), of those {LARGE_MM:.0f} mm or larger {st[4]}/{st[5]} = {st[4] / max(st[5], 1):.2f} (the chance "
          f"for hits of that size); series with a stored region on their tumour {st[2]}/{st[3]}; box's own finding on the tumour "
          f"{sum(r.query_on_tumour for r in rows)}/{len(rows)}\n")
    w(f"hit modalities: {', '.join(mods) or 'none'}; box margin {margin} voxels (1 mm NIfTI voxels)\n")
    w(f"timings: write {timings.get('write_s', 0):.0f} s, ingest {timings.get('ingest_s', 0):.0f} s, "
      f"embed regions {timings.get('embed_s', 0):.0f} s ({timings.get('regions', 0)} regions), "
      f"total {elapsed:.0f} s; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
      f"({os.cpu_count()} CPUs; under load when above that)\n")
    w("data: TCIA Brain-Tumor-Progression (CC BY 3.0), 11 glioblastoma patients, NIfTI resampled "
      "(original spacing lost)\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=None, help="brain_tumor_progression folder (default: shared data)")
    ap.add_argument("--patients", default="", help="comma-separated folder numbers (default: all)")
    ap.add_argument("--margin", type=int, default=4, help="voxels around the mask's bounding box")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--library", type=Path, default=None, help="keep the library here (default: a temporary folder)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "brain_tumour_retrieval.txt",
                    help="where to write the report ('-' for nowhere)")
    ap.add_argument("--pixel-mm", type=float, default=None, help="in-plane spacing to write (default: the NIfTI's)")
    ap.add_argument("--slice-mm", type=float, default=None, help="slice spacing to write (default: the NIfTI's)")
    args = ap.parse_args(argv)
    data = args.data or default_data()
    if not (data / "supplementary.csv").is_file():
        print(f"no brain_tumor_progression data at {data} (set CASEBOOK_SHARED)", file=sys.stderr)
        return 2
    patients = [p.strip() for p in args.patients.split(",") if p.strip()] or sorted(
        d.name for d in data.iterdir() if d.is_dir() and (d / "Post_Mask.nii.gz").is_file())
    t0 = time.perf_counter()
    tmp = None
    lib = args.library
    if lib is None:
        tmp = tempfile.mkdtemp(prefix="casebook-btp-")
        lib = Path(tmp)
    elif lib.exists():
        shutil.rmtree(lib)
    try:
        scans, timings = build_library(data, lib, patients, pixel_mm=args.pixel_mm, slice_mm=args.slice_mm)
        rows, stored = evaluate(lib, scans, margin=args.margin, k=args.k)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report(rows, timings, stored=stored, margin=args.margin, elapsed=time.perf_counter() - t0, load=os.getloadavg())
    head = (f"# benchmarks/brain_tumour_retrieval.py --patients {','.join(patients)} --margin {args.margin} "
            f"--k {args.k}\n# run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
            f"casebook {_revision()}; this script sha1 {hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:10]}\n")
    print(text, end="")
    if str(args.out) != "-":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(head + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
