"""Ingest + embed throughput: ``casebook ingest --ray`` with 1 and 2 local Ray workers against the
plain in-process ingest + embed (the import pipeline) on the same files, in one run.

Each mode starts from an empty library and does the whole job a user waits for: read headers,
store the series, decode each series, compute its encoder vectors and its findings (regions),
and bring the indexes up to date. Series/s is series stored / wall time of that job; the local
Ray's start-up is timed apart (a cluster is started once, not per ingest). The scaling ratio is
series/s with 2 workers over 1 worker, and each over in-process.

On the shared 2-core development machine the ratio is poor by construction: two cores, other
programs running (the load average is printed before and after each mode), and the driver's
own writing competes with the workers for the same cores. It measures that the work spreads,
not what a cluster gives.

    .venv/bin/python benchmarks/ingest_scale.py | tee benchmarks/results/ingest_scale.txt
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from casebook.viewer.core.config import Settings
from casebook.viewer.core.demo.phantom import PhantomOptions, generate_library
from casebook.viewer.core.services.import_pipeline import embed_and_index
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.library import open_store

ROOT = Path(__file__).resolve().parents[1]


def load() -> str:
    return "load average " + " ".join(f"{v:.1f}" for v in os.getloadavg())


def in_process(paths: list[Path], lib: Path) -> tuple[int, float, str]:
    settings = Settings(library_dir=lib, ingest_workers=0)
    store = open_store(settings)
    try:
        t0 = time.perf_counter()
        summary = ingest(paths, store)
        rep = embed_and_index(store, settings)
        return summary.series_stored, time.perf_counter() - t0, rep.text()
    finally:
        store.close()


def on_ray(paths: list[Path], lib: Path, workers: int) -> tuple[int, float, float, str]:
    import ray

    from casebook.viewer.core.services.distributed import ingest_on_ray, start_local_ray

    t0 = time.perf_counter()
    start_local_ray(workers)
    up = time.perf_counter() - t0
    settings = Settings(library_dir=lib)
    store = open_store(settings)
    try:
        t0 = time.perf_counter()
        rep = ingest_on_ray(paths, store, settings, workers=workers)
        return rep.ingest.series_stored, time.perf_counter() - t0, up, rep.index.text()
    finally:
        store.close()
        ray.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=4, help="phantom patients (demo-like series) in the data")
    ap.add_argument("--workdir", type=Path)
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, shared machine: every figure is under the load printed beside it")
    work = Path(tempfile.mkdtemp(prefix="casebook-ingest-scale-", dir=args.workdir))
    try:
        phantom = work / "phantom"
        generate_library(phantom, PhantomOptions(patients=args.patients, size=128, slices=32, big_slices=0))
        paths = [phantom]
        shared = Path(os.environ.get("CASEBOOK_SHARED", ROOT.parent / "shared")) / "data" / "dicom" / "dcm_qa_ct"
        if shared.is_dir():
            paths.append(shared)
        files = sum(1 for p in paths for f in p.rglob("*") if f.is_file())
        print(f"data: {files} files ({', '.join(p.name for p in paths)})\n")
        rows = []
        print(f"in-process ... {load()}", flush=True)
        n, s, text = in_process(paths, work / "lib-inproc")
        rows.append(("in-process (ingest + embed)", n, s, 0.0, text, load()))
        for w in (1, 2):
            print(f"ray {w} ... {load()}", flush=True)
            n, s, up, text = on_ray(paths, work / f"lib-ray{w}", w)
            rows.append((f"--ray, {w} local worker{'s' if w > 1 else ''}", n, s, up, text, load()))
        print(f"\n{'mode':<30} {'series':>6} {'wall s':>8} {'series/s':>9} {'Ray start s':>12}  after")
        for name, n, s, up, _text, ld in rows:
            print(f"{name:<30} {n:>6} {s:>8.1f} {n / s:>9.3f} {up:>12.1f}  {ld}")
        base, r1, r2 = (r[1] / r[2] for r in rows)
        print(f"\nscaling 2 workers / 1 worker: {r2 / r1:.2f}x; 1 worker / in-process: {r1 / base:.2f}x; "
              f"2 workers / in-process: {r2 / base:.2f}x")
        for name, _n, _s, _up, text, _ld in rows:
            print(f"  {name}: {text}")
        if len({r[1] for r in rows}) != 1:
            print("WARNING: the modes stored different numbers of series", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
