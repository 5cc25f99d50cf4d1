"""Vector search benchmark: HNSW (casebook.index.vector_index) against exact numpy search.

Embeddings of real encoders are not isotropic noise: they lie near a low-dimensional manifold,
in clusters of uneven size and shape. On isotropic 512-d noise every point is about equally far
from every other and HNSW recall collapses, which says nothing about real use. So the data here
is a mixture of anisotropic Gaussians in a 48-d latent space, pushed through a fixed random
non-linear map into 512-d, plus ambient noise, then L2-normalised (median top-1 cosine of a
query ~0.93, top-10 ~0.92, mean ~0.0: neighbours are close but not trivially so).

Everything is measured in the same run, on one core for queries (hnswlib num_threads=1, BLAS
threads 1): recall@10 against exact search, median / p99 latency per query, index build time
(all cores), index open time in a new process (files evicted from the OS cache, and cached),
memory per vector.
Searches are timed through ``VectorIndex`` as the app uses it after opening (the saved file,
memory-mapped), beside raw hnswlib holding its own in-memory copy of the same file.

    .venv/bin/python benchmarks/search.py --sizes 100000 1000000 --json out.json
    # keep the built indexes and reuse them on the next run (building 1M takes ~12 min on 2 cores)
    .venv/bin/python benchmarks/search.py --workdir /tmp/casebook-bench --keep --reuse
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one core for the exact baseline, like HNSW's queries

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import hnswlib  # noqa: E402
import numpy as np  # noqa: E402

from casebook.index.vector_index import ArraySource, IndexParams, VectorIndex  # noqa: E402


def clustered_embeddings(n: int, dim: int = 512, latent: int = 48, clusters: int = 512,
                         seed: int = 0, chunk: int = 50_000) -> np.ndarray:
    """``n`` unit vectors from a clustered, anisotropic, low-dimensional manifold in ``dim``-d.

    The generator (cluster centres, shapes, embedding map) is fixed by ``seed`` = 0; ``draw_seed``
    style variation comes from calling with different ``seed`` values for the sample noise only.
    """
    g = np.random.default_rng(0)  # the "world": same manifold for data and queries
    centers = g.normal(size=(clusters, latent)).astype(np.float32) * 2.0
    scales = (g.gamma(2.0, 0.25, size=(clusters, latent)) * np.linspace(1.0, 0.1, latent)).astype(np.float32)
    rot = np.linalg.qr(g.normal(size=(latent, latent)))[0].astype(np.float32)
    w1 = g.normal(size=(latent, 128)).astype(np.float32) / np.sqrt(latent)
    w2 = g.normal(size=(128, dim)).astype(np.float32) / np.sqrt(128)
    wl = g.normal(size=(latent, dim)).astype(np.float32) / np.sqrt(latent)
    weights = g.dirichlet(np.full(clusters, 0.7))
    rng = np.random.default_rng(seed + 1)  # the sample
    out = np.empty((n, dim), np.float32)
    assign = rng.choice(clusters, size=n, p=weights)
    for s in range(0, n, chunk):
        a = assign[s : s + chunk]
        z = centers[a] + (rng.normal(size=(len(a), latent)).astype(np.float32) * scales[a]) @ rot
        x = np.tanh(z @ w1) @ w2 + 0.5 * z @ wl + 0.35 * rng.normal(size=(len(a), dim)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out[s : s + len(a)] = x
    return out


def exact_topk(queries: np.ndarray, data: np.ndarray, k: int, block: int = 100_000) -> np.ndarray:
    """Ground truth by blocked brute force (labels = row numbers)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for s in range(0, len(data), block):
        sims = queries @ data[s : s + block].T
        cat_s = np.concatenate([best_s, sims], axis=1)
        cat_i = np.concatenate([best_i, np.broadcast_to(np.arange(s, s + sims.shape[1]), sims.shape)], axis=1)
        top = np.argpartition(-cat_s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cat_s, top, 1), np.take_along_axis(cat_i, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_i, order, 1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f[:k].tolist()) & set(t.tolist())) / k for f, t in zip(found, truth)]))


_OPEN_PROBE = r"""
import json, os, sys, time
from pathlib import Path
def rss(field="RssAnon:"):  # private memory; the mapped file's pages are shared page cache
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
def files(d):
    return [f for f in d.iterdir() if f.is_file()]
def evict(d):  # drop the index files from the OS cache (clean pages; no root needed)
    for f in files(d):
        fd = os.open(f, os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED); os.close(fd)
def warm(d):
    for f in files(d):
        with open(f, "rb") as fh:
            while fh.read(1 << 24):
                pass
import hnswlib, numpy
from casebook.index.vector_index import VectorIndex, file_crc32
d, dim = Path(sys.argv[1]), int(sys.argv[2])
q = numpy.random.default_rng(0).normal(size=(3000, dim)).astype("float32")
out = {}
# Cold: as after a reboot. Open, first query, and when queries are fast (median of the last 20
# under 2 ms) while the background prefetch warms the cache.
evict(d)
t0 = time.perf_counter(); vi = VectorIndex.open(d, "bench@1", dim, verify="sample"); out["cold_open_s"] = time.perf_counter() - t0
lat = []
for row in q:
    t1 = time.perf_counter(); vi.search(row, 10); lat.append(time.perf_counter() - t1)
    if len(lat) >= 20 and numpy.median(lat[-20:]) < 0.002:
        break
out["cold_first_query_s"], out["cold_fast_after_s"] = lat[0], time.perf_counter() - t0
vi.close(); del vi
# Warm: the file in the OS cache, as on a reading-room PC that opened the library before.
warm(d)
r0, f0 = rss(), rss("RssFile:"); t0 = time.perf_counter()
vi = VectorIndex.open(d, "bench@1", dim, verify="sample")
out["open_s"] = time.perf_counter() - t0
out["backend"] = vi.backend
t1 = time.perf_counter(); out["first_query_method"] = vi.search(q[0], 10).method; out["first_query_s"] = time.perf_counter() - t1
t1 = time.perf_counter()
for row in q[1:20]:
    vi.search(row, 10)
out["next_queries_s"] = (time.perf_counter() - t1) / 19
out["rss_delta"], out["file_rss_delta"] = rss() - r0, rss("RssFile:") - f0
path = next(d.glob("*.hnsw"))
vi.close(); del vi
VectorIndex.use_mapped = False  # the previous way: hnswlib's load_index reads the whole file
t0 = time.perf_counter(); vi = VectorIndex.open(d, "bench@1", dim, verify="sample"); out["open_full_load_s"] = time.perf_counter() - t0
out["full_load_backend"] = vi.backend
vi.close(); del vi
raw = hnswlib.Index(space="ip", dim=dim); t0 = time.perf_counter(); raw.load_index(str(path))
out["hnswlib_load_s"] = time.perf_counter() - t0; del raw
t0 = time.perf_counter(); file_crc32(path); out["full_crc_s"] = time.perf_counter() - t0
print(json.dumps(out))
"""


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def timed_queries(fn, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    out, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        out.append(fn(q))
        times.append(time.perf_counter() - t0)
    return np.array(out), times


def ms(times: list[float], pct: float) -> float:
    return float(np.percentile(times, pct) * 1e3)


def bench_size(n: int, args: argparse.Namespace, workdir: Path) -> dict:
    k = args.k
    log = lambda msg: print(f"[{n:>9,}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    t0 = time.perf_counter()
    data = clustered_embeddings(n, args.dim, seed=n)
    queries = clustered_embeddings(args.queries, args.dim, seed=n + 7)
    log(f"generated data in {time.perf_counter() - t0:.1f}s")
    t0 = time.perf_counter()
    truth = exact_topk(queries, data, k)
    log(f"exact ground truth for {len(queries)} queries in {time.perf_counter() - t0:.1f}s")

    # Exact numpy baseline, one query at a time on one core.
    n_exact = min(len(queries), args.exact_queries)
    def exact_one(q: np.ndarray) -> np.ndarray:
        sims = data @ q
        top = np.argpartition(-sims, k - 1)[:k]
        return top[np.argsort(-sims[top])]
    found, t_exact = timed_queries(exact_one, queries[:n_exact])
    res = {"n": n, "dim": args.dim, "queries": len(queries), "k": k,
           "exact": {"recall": recall(found, truth[:n_exact]), "median_ms": ms(t_exact, 50),
                     "p99_ms": ms(t_exact, 99), "bytes_per_vector": args.dim * 4}}
    log(f"exact numpy: median {res['exact']['median_ms']:.2f} ms")

    # Build through the real code path: VectorIndex.create + rebuild + ef tuning + save. With
    # --reuse an index left by an earlier run with the same data and parameters is kept.
    idx_dir = workdir / f"n{n}"
    info_path = idx_dir / "build-info.json"
    params = IndexParams(M=args.M, ef_construction=args.ef_construction, target_recall=args.target)
    labels = np.arange(n, dtype=np.int64)
    source = ArraySource(labels, data)
    key = {"n": n, "dim": args.dim, "M": args.M, "ef_construction": args.ef_construction, "target": args.target}
    info = json.loads(info_path.read_text()) if args.reuse and info_path.exists() else {}
    if info.get("key") == key:
        build_s, tune_s, ef = info["build_s"], info["tune_s"], info["ef"]
        log(f"reusing the index built in {build_s:.1f}s (ef={ef})")
    else:
        shutil.rmtree(idx_dir, ignore_errors=True)
        t0 = time.perf_counter()
        vi = VectorIndex.create(idx_dir, "bench@1", args.dim, params)
        vi.rebuild(source, tune=False)
        build_s = time.perf_counter() - t0
        log(f"built in {build_s:.1f}s")
        t0 = time.perf_counter()
        ef = vi.tune_ef(args.target, k=k, sample=200)
        tune_s = time.perf_counter() - t0
        vi.close()
        info_path.write_text(json.dumps({"key": key, "build_s": build_s, "tune_s": tune_s, "ef": ef}))
        log(f"tuned ef={ef} in {tune_s:.1f}s")
    file_size = sum(p.stat().st_size for p in idx_dir.glob("*.hnsw"))
    gc.collect()

    # Open in a fresh process (as the app does at start-up), with the files evicted from the OS
    # cache and with them cached: the mapped open and its first queries, the resident memory it
    # adds, the full hnswlib load it replaced, hnswlib's load_index alone, and a full CRC pass.
    probe = subprocess.run([sys.executable, "-c", _OPEN_PROBE, str(idx_dir), str(args.dim)],
                           capture_output=True, text=True, check=True)
    opened = json.loads(probe.stdout.strip().splitlines()[-1])
    log(f"open {opened['open_s']:.3f}s ({opened['backend']}), full hnswlib load {opened['open_full_load_s']:.2f}s")

    # Searches go through what the app uses after open (the mapped file), checked against the store.
    t0 = time.perf_counter()
    vi = VectorIndex.open(idx_dir, "bench@1", args.dim, source=source, verify="sample")
    open_checked_s = time.perf_counter() - t0
    assert vi.report.action == "loaded", vi.report
    backend = vi.backend
    sweep = []
    for e in sorted({16, 32, 64, ef, 128, 256}):
        vi.set_ef(e)
        found, t = timed_queries(lambda q: vi.search(q, k, mode="hnsw").labels[0], queries)
        sweep.append({"ef": e, "recall": recall(found, truth), "median_ms": ms(t, 50), "p99_ms": ms(t, 99)})
        log(f"ef={e}: recall {sweep[-1]['recall']:.4f} median {sweep[-1]['median_ms']:.3f} ms")
    vi.set_ef(ef)
    found_main, t_open = timed_queries(lambda q: vi.search(q, k).labels[0], queries)
    # Raw hnswlib (its own private copy of the graph) at the same ef, for comparison.
    raw = hnswlib.Index(space="ip", dim=args.dim)
    raw.load_index(str(next(idx_dir.glob("*.hnsw"))))
    raw.set_ef(ef)
    found_raw, t_raw = timed_queries(lambda q: raw.knn_query(q, k=k, num_threads=1)[0][0], queries)
    raw_res = {"recall": recall(found_raw, truth), "median_ms": ms(t_raw, 50), "p99_ms": ms(t_raw, 99)}
    del raw
    gc.collect()

    # Filtered search: 1% candidate set (SQLite pre-filter -> exact) and 10% predicate (HNSW).
    rng = np.random.default_rng(3)
    cand = np.sort(rng.choice(n, size=max(n // 100, k), replace=False))
    mask = np.zeros(n, bool)
    mask[cand] = True
    filt_truth = exact_topk(queries[:200], data[cand], k)
    found, t_c = timed_queries(lambda q: vi.search(q, k, candidates=cand).labels[0], queries[:200])
    found = np.searchsorted(cand, found)
    cand_res = {"fraction": len(cand) / n, "method": vi.search(queries[0], k, candidates=cand).method,
                "recall": recall(found, filt_truth), "median_ms": ms(t_c, 50), "p99_ms": ms(t_c, 99)}
    ten = np.sort(rng.choice(n, size=n // 10, replace=False))
    tset = frozenset(ten.tolist())
    ten_truth = exact_topk(queries[:200], data[ten], k)
    found, t_f = timed_queries(lambda q: vi.search(q, k, filter=tset.__contains__).labels[0], queries[:200])
    found = np.searchsorted(ten, found)
    filt_res = {"fraction": 0.1, "method": "hnsw-filtered", "recall": recall(found, ten_truth),
                "median_ms": ms(t_f, 50), "p99_ms": ms(t_f, 99)}
    mem_est = vi.memory_bytes()
    method = vi.search(queries[0], k).method
    vi.close()
    del vi
    gc.collect()

    # Writes into the opened index, as an ingest does, on a copy (the kept index stays as built):
    # one study's worth of new slices (add + save: the delta file and the sidecar), then a merge
    # of the delta into a new base file (forced here; saves do it once the delta outgrows 10%).
    copy_dir = workdir / f"n{n}-write"
    shutil.rmtree(copy_dir, ignore_errors=True)
    shutil.copytree(idx_dir, copy_dir)
    wi = VectorIndex.open(copy_dir, "bench@1", args.dim, verify="sample")
    study = clustered_embeddings(args.study_slices, args.dim, seed=n + 11)
    t0 = time.perf_counter()
    wi.add(np.arange(n, n + len(study)), study)
    wi.save()
    add_save_s = time.perf_counter() - t0
    delta_bytes = (copy_dir / wi._meta.delta_file).stat().st_size
    wi.params.delta_min_merge, wi.params.delta_fraction = 0, 0.0
    t0 = time.perf_counter()
    wi.add([n + len(study)], study[:1])
    wi.save()
    merge_s = time.perf_counter() - t0
    writes = {"study_slices": len(study), "add_save_s": add_save_s, "delta_bytes": delta_bytes, "merge_s": merge_s,
              "recall_after_merge": wi.measure_recall(k=k, sample=100, queries=queries[:100])}
    log(f"add {len(study)} + save {add_save_s:.3f}s (delta {delta_bytes / 1e6:.1f} MB), merge {merge_s:.1f}s")
    wi.close()
    del wi
    shutil.rmtree(copy_dir, ignore_errors=True)
    hnsw = {"M": args.M, "ef_construction": args.ef_construction, "ef": ef, "backend": backend,
            "recall": recall(found_main, truth), "median_ms": ms(t_open, 50), "p99_ms": ms(t_open, 99),
            "method": method, "build_s": build_s, "tune_s": tune_s,
            "open_s": opened["open_s"], "first_query_s": opened["first_query_s"],
            "first_query_method": opened["first_query_method"], "next_queries_s": opened["next_queries_s"],
            "open_full_load_s": opened["open_full_load_s"], "open_with_store_check_s": open_checked_s,
            "cold_open_s": opened["cold_open_s"], "cold_first_query_s": opened["cold_first_query_s"],
            "cold_fast_after_s": opened["cold_fast_after_s"],
            "hnswlib_load_s": opened["hnswlib_load_s"], "full_crc_s": opened["full_crc_s"],
            "file_bytes": file_size, "file_bytes_per_vector": file_size / n,
            "rss_bytes_per_vector": opened["rss_delta"] / n,
            "mapped_file_bytes_per_vector": opened["file_rss_delta"] / n,
            "estimated_bytes_per_vector": mem_est / n}
    res.update(hnsw=hnsw, raw_hnswlib=raw_res, sweep=sweep, candidates_1pct=cand_res, filter_10pct=filt_res,
               writes=writes)
    if not args.keep:
        shutil.rmtree(idx_dir, ignore_errors=True)
    return res


def print_report(results: list[dict]) -> None:
    print(f"\nrecall@{results[0]['k']} vs exact search; latency per query on one core\n")
    hdr = f"{'N':>9}  {'method':<32} {'recall':>7} {'median ms':>10} {'p99 ms':>8} {'build s':>8} {'open s':>7} {'B/vector':>9}"
    print(hdr)
    print("-" * len(hdr))
    for r in results:
        e, h, c, f = r["exact"], r["hnsw"], r["candidates_1pct"], r["filter_10pct"]
        print(f"{r['n']:>9,}  {'exact numpy':<32} {e['recall']:>7.4f} {e['median_ms']:>10.3f} {e['p99_ms']:>8.3f} "
              f"{'-':>8} {'-':>7} {e['bytes_per_vector']:>9,}")
        print(f"{r['n']:>9,}  {'HNSW M=%d ef=%d' % (h['M'], h['ef']):<32} {h['recall']:>7.4f} {h['median_ms']:>10.3f} "
              f"{h['p99_ms']:>8.3f} {h['build_s']:>8.1f} {h['open_s']:>7.3f} {h['rss_bytes_per_vector']:>9,.0f}")
        print(f"{r['n']:>9,}  {'1% candidates (' + c['method'] + ')':<32} {c['recall']:>7.4f} {c['median_ms']:>10.3f} {c['p99_ms']:>8.3f}")
        print(f"{r['n']:>9,}  {'10% filter (hnsw-filtered)':<32} {f['recall']:>7.4f} {f['median_ms']:>10.3f} {f['p99_ms']:>8.3f}")
        print(f"{'':>9}  speed-up HNSW vs exact: {e['median_ms'] / h['median_ms']:,.0f}x median; "
              f"file {h['file_bytes_per_vector']:,.0f} B/vector, private RAM {h['rss_bytes_per_vector']:,.0f} B/vector")
        print(f"{'':>9}  open {h['open_s']:.3f}s ({h['backend']}), first query {h['first_query_s'] * 1e3:.1f} ms "
              f"({h['first_query_method']}), next queries {h['next_queries_s'] * 1e3:.2f} ms each; "
              f"open + store consistency check {h['open_with_store_check_s']:.2f}s")
        print(f"{'':>9}  cold OS cache (files evicted first): open {h['cold_open_s']:.3f}s, first query "
              f"{h['cold_first_query_s'] * 1e3:.0f} ms, queries under 2 ms after {h['cold_fast_after_s']:.1f}s "
              f"(background prefetch)")
        print(f"{'':>9}  previous open (hnswlib full load) {h['open_full_load_s']:.2f}s: "
              f"{h['open_full_load_s'] / h['open_s']:.0f}x slower; hnswlib load_index alone {h['hnswlib_load_s']:.2f}s, "
              f"full CRC {h['full_crc_s']:.2f}s")
        print(f"{'':>9}  ef sweep: " + ", ".join(f"ef={s['ef']} {s['recall']:.4f}/{s['median_ms']:.3f}ms" for s in r["sweep"]))
        w = r["writes"]
        print(f"{'':>9}  ingest into the open index: add {w['study_slices']} vectors + save {w['add_save_s']:.3f}s "
              f"(delta file {w['delta_bytes'] / 1e6:.1f} MB; the base file is not rewritten); merging the delta "
              f"into a new base file {w['merge_s']:.1f}s (recall@{r['k']} vs exact after it {w['recall_after_merge']:.4f})")
        print(f"{'':>9}  raw hnswlib (in memory) at same ef: recall {r['raw_hnswlib']['recall']:.4f} "
              f"median {r['raw_hnswlib']['median_ms']:.3f} ms; Casebook ({h['backend']}) median {h['median_ms']:.3f} ms")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--exact-queries", type=int, default=100, help="queries timed for the exact baseline")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--M", type=int, default=IndexParams.M)
    ap.add_argument("--ef-construction", type=int, default=IndexParams.ef_construction)
    ap.add_argument("--target", type=float, default=0.98, help="recall@k target for ef tuning")
    ap.add_argument("--workdir", type=Path, help="where index files go (default: a temp dir)")
    ap.add_argument("--json", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--keep", action="store_true", help="keep the index files in --workdir")
    ap.add_argument("--study-slices", type=int, default=300, help="vectors added by the write test")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse an index an earlier --keep run left in --workdir for the same data and parameters")
    args = ap.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="casebook-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for n in args.sizes:
        results.append(bench_size(n, args, workdir))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
        gc.collect()
    print_report(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
