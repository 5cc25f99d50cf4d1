"""Index layout for archives beyond one machine's RAM: the figures behind docs/archive-scale.md.

Three parts, all measured in this run:

1. **Bytes per series** in a real library: series + per-slice (slab) vectors and region
   (finding) vectors per series, the case store's bytes per series and the index files' bytes
   per vector. The library is ``--library DIR`` or, by default, one built here by the plain
   in-process import of the shared dcm_qa_ct CTs and a small phantom cohort (like the demo's).
2. **The real index at 1M region vectors** (``VectorIndex``: hnswlib HNSW, memory-mapped, the
   region descriptor's dimension from ``casebook.inference.regions.describe.DIM``), through
   ``benchmarks/search.py``'s measurement (build, open in a new process, recall@10 vs exact,
   latency per query on one core, resident bytes per vector). The vectors are that benchmark's
   clustered synthetic embeddings at dim 194: no archive of 1M real findings exists here.
3. **Compression with exact re-ranking** on the same 1M vectors: int8 scalar quantisation
   (numpy, brute force over the codes) and IVF-PQ (faiss-cpu, when installed), each followed by
   an exact float32 re-rank of its top candidates read from a memory-mapped vector file; recall@10
   against exact search, latency, bytes per vector in RAM.

It then prints what a 10-million-series archive needs (RAM and disk) under each layout, and how
many series one workstation holds.

    .venv/bin/python benchmarks/index_scale.py                 # ~15 min on 2 shared cores
    .venv/bin/python benchmarks/index_scale.py --n 100000      # a quick look
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core per query, like the app's searches

import argparse  # noqa: E402
import json  # noqa: E402
import sqlite3  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import bench_size, clustered_embeddings, exact_topk, ms, recall, timed_queries  # noqa: E402

from casebook.inference.regions.describe import DIM  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(f"[index_scale] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- 1. per series
def build_library(dest: Path) -> Path:
    """A library made by the plain in-process import (ingest + embed + findings)."""
    from casebook.viewer.core.config import Settings
    from casebook.viewer.core.demo.phantom import PhantomOptions, generate_library
    from casebook.viewer.core.services.import_pipeline import import_paths

    shared = Path(os.environ.get("CASEBOOK_SHARED", ROOT.parent / "shared")) / "data"
    paths: list[Path] = []
    ct = shared / "dicom" / "dcm_qa_ct"
    if ct.is_dir():
        paths.append(ct)
    phantom = dest / "phantom"
    generate_library(phantom, PhantomOptions(patients=6, size=128, slices=32, big_slices=0))
    paths.append(phantom)
    lib = dest / "library"
    import_paths(Settings(library_dir=lib, ingest_workers=2), paths)
    return lib


def per_series(lib: Path) -> dict:
    db = sqlite3.connect(f"file:{lib / 'casebook.sqlite'}?mode=ro", uri=True)
    q = lambda sql: db.execute(sql).fetchone()[0]  # noqa: E731
    series = q("SELECT count(*) FROM series WHERE state = 'complete'")
    emb = q("SELECT count(*) FROM embedding")
    emb_series = q("SELECT count(*) FROM embedding WHERE slice_index = -1")
    emb_dim = q("SELECT max(dim) FROM model") or 0
    regions = q("SELECT count(*) FROM region")
    db.close()
    db_bytes = sum(p.stat().st_size for p in lib.glob("casebook.sqlite*"))
    idx = lib / "vectors"
    idx_bytes = sum(p.stat().st_size for p in idx.iterdir() if p.is_file()) if idx.is_dir() else 0
    return {"library": str(lib), "series": series, "vectors_per_series": emb / max(1, series),
            "series_vectors_per_series": emb_series / max(1, series), "model_dim": emb_dim,
            "regions_per_series": regions / max(1, series), "region_dim": DIM,
            "store_bytes_per_series": db_bytes / max(1, series),
            "index_files_bytes_per_series": idx_bytes / max(1, series)}


# ----------------------------------------------------------------------------- 3. compression
def int8_codes(data: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    lo, hi = data.min(0), data.max(0)
    scale = np.maximum(hi - lo, 1e-9) / 255.0
    codes = np.clip(np.rint((data - lo) / scale), 0, 255).astype(np.uint8)
    return codes, lo.astype(np.float32), scale.astype(np.float32)


def rerank(q: np.ndarray, cand: np.ndarray, vectors: np.ndarray, k: int) -> np.ndarray:
    cand = np.sort(cand[cand >= 0])
    sims = vectors[cand] @ q  # exact float32, from the memory-mapped vector file
    top = np.argsort(-sims)[:k]
    return cand[top]


def compression(n: int, nq: int, k: int, workdir: Path, shortlist: int, pq_ms: list[int] | None = None) -> dict:
    data = clustered_embeddings(n, DIM, seed=n)  # the same vectors bench_size indexed
    queries = clustered_embeddings(nq, DIM, seed=n + 7)
    truth = exact_topk(queries, data, k)
    vec_path = workdir / "vectors.f32"
    data.tofile(vec_path)
    vectors = np.memmap(vec_path, dtype=np.float32, mode="r", shape=data.shape)
    out: dict = {"shortlist": shortlist}

    t0 = time.perf_counter()
    codes, lo, scale = int8_codes(data)
    out["int8_build_s"] = time.perf_counter() - t0
    # q . x = q . (lo + scale * c) = q.lo + (q * scale) . c: one pass over the uint8 codes
    def int8_search(q: np.ndarray) -> np.ndarray:
        approx = codes @ (q * scale)
        cand = np.argpartition(-approx, shortlist - 1)[:shortlist]
        return rerank(q, cand, vectors, k)
    found, t = timed_queries(int8_search, queries)
    out["int8"] = {"recall": recall(found, truth), "median_ms": ms(t, 50), "p99_ms": ms(t, 99),
                   "ram_bytes_per_vector": codes.shape[1]}
    log(f"int8 + re-rank: recall {out['int8']['recall']:.4f}, median {out['int8']['median_ms']:.1f} ms")
    del codes

    try:
        import faiss
    except ImportError:
        out["ivfpq"] = None
        log("faiss-cpu not installed: IVF-PQ not measured (pip install faiss-cpu)")
        return out
    faiss.omp_set_num_threads(2)
    pad = (-DIM) % 8  # padded to 200 dims (zeros change no inner product) so every m below divides it
    d = DIM + pad
    xb = np.hstack([data, np.zeros((n, pad), np.float32)]) if pad else data
    qpad = np.hstack([queries, np.zeros((nq, pad), np.float32)]) if pad else queries
    nlist = int(min(1024, max(64, 4 * np.sqrt(n))))
    train = xb[np.random.default_rng(0).choice(n, size=min(n, 50 * nlist), replace=False)]
    out["ivfpq"] = []
    for m in pq_ms or [d // 8, d // 4, d // 2]:
        faiss.omp_set_num_threads(2)
        t0 = time.perf_counter()
        index = faiss.index_factory(d, f"IVF{nlist},PQ{m}", faiss.METRIC_INNER_PRODUCT)
        index.train(train)
        index.add(xb)
        build_s = time.perf_counter() - t0
        log(f"IVF{nlist},PQ{m} trained and filled in {build_s:.0f}s")
        faiss.omp_set_num_threads(1)
        sweep = []
        for nprobe in (16, 64):
            faiss.extract_index_ivf(index).nprobe = nprobe
            for sl in sorted({shortlist, 5 * shortlist}):
                def pq_search(qp: np.ndarray) -> np.ndarray:
                    _, cand = index.search(qp[None], sl)
                    return rerank(qp[:DIM], cand[0], vectors, k)
                found, t = timed_queries(pq_search, qpad)
                sweep.append({"nprobe": nprobe, "shortlist": sl, "recall": recall(found, truth),
                              "median_ms": ms(t, 50), "p99_ms": ms(t, 99)})
                log(f"IVF-PQ{m} nprobe={nprobe} re-rank {sl}: recall {sweep[-1]['recall']:.4f}, "
                    f"median {sweep[-1]['median_ms']:.2f} ms")
        # RAM: m bytes of code + 8 bytes of id per vector, plus the coarse centroids
        out["ivfpq"].append({"nlist": nlist, "m": m, "dims_per_byte": d / m, "build_s": build_s,
                             "ram_bytes_per_vector": m + 8 + nlist * d * 4 / n, "sweep": sweep})
        del index
    return out


# ----------------------------------------------------------------------------- report
def projection(ps: dict, hnsw: dict, comp: dict, archive: int, ram_gb: float) -> list[list]:
    """RAM and disk of an archive of ``archive`` series under each layout, from the measured bytes.

    Both collections are counted: the series index (series + slice/slab vectors at the model's
    dim) and the region index (findings at the descriptor's dim). A compressed layout keeps only
    codes in RAM and the float32 vectors on disk for the exact re-rank; the case store (SQLite,
    which also holds every float32 vector) is on disk in every layout.
    """
    overhead = hnsw["file_bytes_per_vector"] - DIM * 4  # graph links + label per HNSW vector (measured)
    ram_hnsw = (hnsw["rss_bytes_per_vector"] + hnsw["mapped_file_bytes_per_vector"]) - DIM * 4  # beyond the vector
    counts = ((ps["vectors_per_series"], ps["model_dim"] or DIM), (ps["regions_per_series"], DIM))
    layouts = [("HNSW float32 (today)", lambda d: d * 4 + ram_hnsw, lambda d: d * 4 + overhead)]
    layouts.append(("int8 codes + float re-rank on disk", lambda d: d, lambda d: d * 4 + d))
    for pq in comp.get("ivfpq") or []:
        per_code = 1.0 / pq["dims_per_byte"]  # code bytes per dimension, as measured
        layouts.append((f"IVF-PQ ({pq['dims_per_byte']:g} dims/byte) + float re-rank on disk",
                        lambda d, c=per_code: d * c + 8, lambda d, c=per_code: d * 4 + d * c + 8))
    rows = []
    for name, ram_of, disk_of in layouts:
        ram_series = sum(n * ram_of(d) for n, d in counts)
        disk_series = sum(n * disk_of(d) for n, d in counts) + ps["store_bytes_per_series"]
        rows.append([name, ram_series, disk_series, ram_series * archive / 1e9, disk_series * archive / 1e9,
                     int(ram_gb * 1e9 / ram_series)])
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="region vectors in the index (default 1M)")
    ap.add_argument("--queries", type=int, default=500)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--shortlist", type=int, default=200, help="candidates re-ranked exactly (compressed layouts)")
    ap.add_argument("--library", type=Path, help="measure bytes per series in this library folder")
    ap.add_argument("--archive", type=int, default=10_000_000, help="series in the projected archive")
    ap.add_argument("--ram-gb", type=float, default=64.0, help="RAM a workstation gives the index (GB)")
    ap.add_argument("--pq-m", type=int, nargs="*", help="PQ code bytes per vector to try (default 25 50 100)")
    ap.add_argument("--hnsw-json", type=Path, help="reuse the library and HNSW figures of an earlier --json "
                                                     "(measures only the compressed layouts)")
    ap.add_argument("--workdir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    print(f"load average at start {os.getloadavg()} on {os.cpu_count()} cores (shared machine: figures under load)")
    work = Path(tempfile.mkdtemp(prefix="casebook-index-scale-", dir=args.workdir))

    if args.hnsw_json:
        earlier = json.loads(args.hnsw_json.read_text())
        ps, res = earlier["per_series"], earlier["hnsw_1m"]
        log(f"library and HNSW figures from {args.hnsw_json}")
    else:
        t0 = time.perf_counter()
        lib = args.library or build_library(work)
        ps = per_series(lib)
        log(f"library measured in {time.perf_counter() - t0:.0f}s: {ps}")
        ns = argparse.Namespace(dim=DIM, k=args.k, queries=args.queries, exact_queries=50, M=16,
                                ef_construction=200, target=0.98, reuse=False, keep=False, study_slices=500)
        res = bench_size(args.n, ns, work / "hnsw")
    hnsw = res["hnsw"]
    comp = compression(args.n, args.queries, args.k, work, args.shortlist, args.pq_m)

    print(f"\nbytes per series in {ps['library']} ({ps['series']} series)")
    print(f"  vectors in the series index per series : {ps['vectors_per_series']:.1f} "
          f"({ps['series_vectors_per_series']:.1f} series-level, the rest per slice/slab; dim {ps['model_dim']})")
    print(f"  region (finding) vectors per series     : {ps['regions_per_series']:.1f} (dim {DIM})")
    print(f"  case store bytes per series             : {ps['store_bytes_per_series']:,.0f}")
    print(f"  index files bytes per series            : {ps['index_files_bytes_per_series']:,.0f}")
    print(f"\n{args.n:,} region vectors (dim {DIM}), recall@{args.k} vs exact, one core per query")
    e = res["exact"]
    print(f"  {'layout':<44} {'recall':>7} {'median ms':>10} {'p99 ms':>8} {'RAM B/vec':>10}")
    print(f"  {'exact float32 (numpy)':<44} {e['recall']:>7.4f} {e['median_ms']:>10.2f} {e['p99_ms']:>8.2f} {DIM * 4:>10,}")
    print(f"  {'HNSW M=16 ef=%d (VectorIndex, mapped)' % hnsw['ef']:<44} {hnsw['recall']:>7.4f} "
          f"{hnsw['median_ms']:>10.3f} {hnsw['p99_ms']:>8.3f} "
          f"{hnsw['rss_bytes_per_vector'] + hnsw['mapped_file_bytes_per_vector']:>10,.0f}")
    i8 = comp["int8"]
    print(f"  {'int8 scan + exact re-rank of %d' % args.shortlist:<44} {i8['recall']:>7.4f} {i8['median_ms']:>10.2f} "
          f"{i8['p99_ms']:>8.2f} {i8['ram_bytes_per_vector']:>10,}")
    for pq in comp.get("ivfpq") or []:
        for s in pq["sweep"]:
            name = f"IVF{pq['nlist']},PQ{pq['m']} nprobe={s['nprobe']} + re-rank {s['shortlist']}"
            print(f"  {name:<44} {s['recall']:>7.4f} {s['median_ms']:>10.2f} {s['p99_ms']:>8.2f} "
                  f"{pq['ram_bytes_per_vector']:>10,.0f}")
    print(f"  HNSW: build {hnsw['build_s']:.0f}s, file {hnsw['file_bytes_per_vector']:,.0f} B/vector on disk, "
          f"open {hnsw['open_s']:.2f}s; IVF-PQ builds "
          + ", ".join(f"PQ{pq['m']} {pq['build_s']:.0f}s" for pq in comp.get("ivfpq") or []))
    rows = projection(ps, hnsw, comp, args.archive, args.ram_gb)
    print(f"\n{args.archive:,}-series archive (bytes per series from the library above)")
    print(f"  {'layout':<44} {'RAM B/series':>13} {'disk B/series':>14} {'RAM GB':>8} {'disk GB':>9} "
          f"{'series per %g GB' % args.ram_gb:>18}")
    for name, rs, ds, rg, dg, fit in rows:
        print(f"  {name:<44} {rs:>13,.0f} {ds:>14,.0f} {rg:>8,.0f} {dg:>9,.0f} {fit:>18,}")
    print(f"\nload average at end {os.getloadavg()}")
    if args.json:
        args.json.write_text(json.dumps({"per_series": ps, "hnsw_1m": res, "compression": comp,
                                         "projection": rows}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
