"""Ingest throughput: how fast ``casebook ingest`` fills a library, against plain pydicom, in one run.

The PACS/IT admin ingests archives of millions of images, so what matters is images per second
through the whole path (walk, skip unchanged, header read, grouping, SQLite transactions) and
how cheap a resumed or repeated run is. The benchmark writes an archive of real CT headers: the
Philips CT slices of ``dcm_qa_ct`` re-issued as ``--patients`` x ``--series`` series of
``--slices`` images with new UIDs and positions (pixel data cut to 64x64 to keep the disk
footprint small; ingest reads headers only), then times, in one run:

* ``casebook ingest`` (the service behind the CLI) into a new library: cold, every file read;
* the same again: nothing changed, every file skipped by path + size + mtime;
* the baseline a plain script would be: ``pydicom.dcmread(stop_before_pixels=True)`` over every
  file in one thread, keeping (series UID, position) in memory only, storing nothing.

    .venv/bin/python benchmarks/ingest.py [--patients 20 --series 10 --slices 100] [--workers 0]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from casebook.index.case_store import CaseStore
from casebook.viewer.core.services.ingest import ingest

REPO = Path(__file__).resolve().parents[1]


def shared_ct() -> Path:
    env = os.environ.get("CASEBOOK_SHARED")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        for sub in ("data/dicom/dcm_qa_ct/In", "data/dicom/dcm_qa_ct"):
            if (c / sub).is_dir():
                return c / sub
    sys.exit("shared data (dcm_qa_ct) not found: set CASEBOOK_SHARED")


def write_archive(out: Path, patients: int, series: int, slices: int) -> int:
    """Real CT headers re-issued as a multi-patient archive; returns the number of files."""
    src = [p for p in sorted(shared_ct().rglob("*")) if p.is_file()]
    templates = []
    for p in src:
        try:
            d = pydicom.dcmread(p)
        except Exception:  # noqa: BLE001 - not DICOM: skip
            continue
        if d.get("Modality") == "CT" and "PixelData" in d and d.get("Rows") == 512:
            templates.append(d)
        if len(templates) >= 8:
            break
    if not templates:
        sys.exit("no 512x512 CT slice found in dcm_qa_ct")
    for d in templates:
        if d.file_meta.TransferSyntaxUID.is_compressed:
            d.decompress()
        d.Rows, d.Columns = 64, 64
        d.PixelData = np.zeros(64 * 64 * (int(d.BitsAllocated) // 8), np.uint8).tobytes()
    n = 0
    for pi in range(patients):
        pid = f"BENCH{pi:05d}"
        for si in range(series):
            study_uid = generate_uid() if si % 2 == 0 else study_uid  # two series per study
            series_uid = generate_uid()
            folder = out / pid / f"s{si:03d}"
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(slices):
                d = templates[k % len(templates)]
                d.PatientID, d.PatientName = pid, f"Bench^{pi}"
                d.StudyInstanceUID, d.SeriesInstanceUID = study_uid, series_uid
                d.SOPInstanceUID = generate_uid()
                d.file_meta.MediaStorageSOPInstanceUID = d.SOPInstanceUID
                d.InstanceNumber, d.SeriesNumber = k + 1, si + 1
                d.ImagePositionPatient = [0.0, 0.0, float(k) * 1.25]
                d.SliceLocation = float(k) * 1.25
                d.save_as(folder / f"{k:05d}.dcm", enforce_file_format=True)
                n += 1
    return n


def plain_pydicom(root: Path) -> int:
    seen = 0
    index: dict[str, list[float]] = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            d = pydicom.dcmread(os.path.join(dirpath, name), stop_before_pixels=True)
            index.setdefault(str(d.SeriesInstanceUID), []).append(float(d.ImagePositionPatient[2]))
            seen += 1
    return seen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--series", type=int, default=10)
    ap.add_argument("--slices", type=int, default=100)
    ap.add_argument("--workers", type=int, default=0, help="header readers (0 = one per core)")
    ap.add_argument("--workdir", type=Path, help="where the archive and library go (default: temp)")
    args = ap.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="casebook-ingest-"))
    archive, library = work / "archive", work / "library"
    shutil.rmtree(library, ignore_errors=True)
    if not archive.is_dir():
        t0 = time.perf_counter()
        n = write_archive(archive, args.patients, args.series, args.slices)
        print(f"wrote {n:,} files in {time.perf_counter() - t0:.1f}s under {archive}", file=sys.stderr)
    n = sum(len(f) for _, _, f in os.walk(archive))
    plain_pydicom(archive)  # warm the page cache for every contender alike

    library.mkdir(parents=True)
    store = CaseStore.open(library / "casebook.sqlite")
    phases: dict[str, float] = {}
    last = [time.perf_counter(), ""]

    def progress(done: int, total: int, phase: str) -> None:
        now = time.perf_counter()
        if phase != last[1]:
            if last[1]:
                phases[last[1]] = phases.get(last[1], 0.0) + now - last[0]
            last[0], last[1] = now, phase

    t0 = time.perf_counter()
    summary = ingest([archive], store, progress=progress, workers=args.workers)
    cold = time.perf_counter() - t0
    if last[1]:
        phases[last[1]] = phases.get(last[1], 0.0) + time.perf_counter() - last[0]
    t0 = time.perf_counter()
    again = ingest([archive], store, workers=args.workers)
    warm = time.perf_counter() - t0
    store.close()
    db_bytes = sum(p.stat().st_size for p in library.glob("casebook.sqlite*"))
    t0 = time.perf_counter()
    plain_n = plain_pydicom(archive)
    plain = time.perf_counter() - t0
    assert plain_n == n and summary.series_stored == args.patients * args.series, summary
    assert again.files_unchanged == n, again

    print(f"\ningest of {n:,} CT files ({args.patients} patients x {args.series} series x {args.slices} slices), "
          f"{os.cpu_count()} cores, workers={args.workers or 'one per core'}\n")
    print(f"{'run':<44} {'seconds':>8} {'images/s':>10}")
    print("-" * 64)
    print(f"{'casebook ingest, new library':<44} {cold:>8.2f} {n / cold:>10,.0f}")
    for ph, s in phases.items():
        print(f"{'  ' + ph:<44} {s:>8.2f}")
    print(f"{'casebook ingest again (nothing changed)':<44} {warm:>8.2f} {n / warm:>10,.0f}")
    print(f"{'plain pydicom header read, one thread':<44} {plain:>8.2f} {n / plain:>10,.0f}")
    print(f"\ncasebook vs plain pydicom: {plain / cold:.2f}x (>1: casebook faster, and it also stores)")
    print(f"library: {db_bytes / n:,.0f} bytes per image in SQLite; series stored {summary.series_stored}")
    print(f"extrapolated: 1,000,000 images in {1e6 / (n / cold) / 60:.0f} min cold, "
          f"a repeated run in {1e6 / (n / warm):.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
