"""Does "Find similar" find the same *finding*? Box / slice / series queries around every phantom lesion.

Builds (or reuses) a demo library of synthetic phantoms with ``--seed/--patients/--size``, embeds
the finding regions, and for every lesion visible in a series asks, as a reader would ("exclude
same patient" on, top 10; a hit = a study with the same lesion kind):

* ``box``: a box drawn around the lesion on the slice through its centre -> region search;
* ``slice``: the slice through the centre -> its least typical findings, each matched (late interaction);
* ``series``: the whole series -> its 3 least typical findings (findings-aware series search);
* ``box (slices)``, ``slice (slices)``, ``series (slices)``: the previous slice-vector search of
  :class:`SearchService` on the same library (the issue-11 baseline), when it has embeddings.

Prints P@1/P@5/P@10 per lesion kind against chance (the share of other patients' series whose
study has the kind), P@5 capped by what the library can give (relevant series available), the
score spread (rank 1 minus rank 10), other-modality-family hits of box queries, latency, and the
region index size (bytes per series). Tune on one seed; report on seeds never looked at.

    .venv/bin/python benchmarks/lesion_retrieval.py --seed 20240601 --patients 24 --size 128
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np


def lesion_voxel(plan, sp, les) -> tuple[float, float, float]:
    """(k, j, i) of a lesion centre in a series' voxel grid (the generator's own geometry)."""
    from casebook.viewer.core.demo.phantom import series_geometry

    rdir, cdir, normal, origin = series_geometry(sp, plan.shift_mm)
    p = np.asarray(les.centre) + np.asarray(plan.shift_mm) - origin
    return float(p @ normal / sp.slice_mm), float(p @ cdir / sp.pixel_mm), float(p @ rdir / sp.pixel_mm)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=20240601)
    ap.add_argument("--patients", type=int, default=24)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=48)
    ap.add_argument("--library", type=Path, default=None, help="library folder (default /tmp/casebook-lesions-...)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--no-samples", action="store_true", help="phantoms only (no registry sample files)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the slice-vector (issue-11) queries")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    lib = args.library or Path(f"/tmp/casebook-lesions-s{args.seed}-p{args.patients}-n{args.size}-z{args.slices}")
    lib.mkdir(parents=True, exist_ok=True)
    os.environ["CASEBOOK_LIBRARY"] = str(lib)
    os.environ.setdefault("CASEBOOK_CONFIG", str(lib / "settings.toml"))
    from casebook.index.case_store import CaseStore
    from casebook.inference.regions import modality_family
    from casebook.viewer.core.config import load_settings
    from casebook.viewer.core.demo.build import build_demo
    from casebook.viewer.core.demo.phantom import PhantomOptions, plan_library
    from casebook.viewer.core.services.region_search import RegionSearchService
    from casebook.viewer.core.services.regions import embed_regions, register
    from casebook.viewer.core.services.search_types import SearchFilters

    settings = load_settings()
    options = PhantomOptions(patients=args.patients, seed=args.seed, size=args.size, slices=args.slices, big_slices=0)
    store = CaseStore.open(settings.database_path, create=True)
    t0 = time.perf_counter()
    rep = build_demo(lib, store, options=options, samples=not args.no_samples, embed=not args.no_baseline)
    t_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    er = embed_regions(store)
    t_regions = time.perf_counter() - t0
    print(f"library {lib}: {rep.studies} phantom studies, {rep.series_stored} series stored; "
          f"build {t_build:.0f} s; regions: {er.done} series ({er.regions} regions) in {t_regions:.0f} s, "
          f"{len(er.failed)} failed")

    manifest = json.loads((lib / "demo-dicom" / "phantom" / "manifest.json").read_text())
    plans = {(p.patient_id, p.timepoint): p for p in plan_library(options)}
    kinds_of_uid: dict[str, set[str]] = {}
    plan_of_uid: dict[str, tuple] = {}
    for st in manifest["studies"]:
        plan = plans[(st["patient_id"], st["timepoint"])]
        for n, se in enumerate(st["series"]):
            kinds_of_uid[se["series_uid"]] = set(st["lesion_kinds"])
            plan_of_uid[se["series_uid"]] = (plan, plan.series[n])
    series = {s.id: s for s in store.list_series()}
    kinds_of = {sid: kinds_of_uid.get(s.series_uid, set()) for sid, s in series.items()}
    patient_of = {sid: s.patient_key for sid, s in series.items()}
    family_of = {sid: modality_family(s.modality) for sid, s in series.items()}

    svc = RegionSearchService(store, settings.index_dir)
    old = None
    if not args.no_baseline:
        try:
            from casebook.viewer.core.services.search_open import open_store_search

            old = open_store_search(settings)
        except Exception as exc:  # noqa: BLE001 - the region figures stand without the baseline
            print(f"slice-vector baseline not run: {exc}")
    filters = SearchFilters(exclude_same_patient=True, exclude_same_study=True)
    res: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))  # query -> kind -> rows
    patients_with = defaultdict(set)
    for sid, s in series.items():
        for kd in kinds_of[sid]:
            patients_with[kd].add(patient_of[sid])
    other_family = 0
    box_hits_total = 0
    judged: list[tuple[float, float]] = []  # (calibrated probability, same kind?) of every box hit
    calibration = ""
    series_resp: dict = {}
    for sid, s in sorted(series.items()):
        if s.series_uid not in plan_of_uid:
            continue
        plan, sp = plan_of_uid[s.series_uid]
        for les in plan.lesions:
            k, j, i = lesion_voxel(plan, sp, les)
            if not (0 <= k < sp.slices and 0 <= j < sp.size and 0 <= i < sp.size):
                continue
            half = les.diameter_mm / 2.0 * 1.3 / sp.pixel_mm + 2
            kc = int(round(k))
            box = (kc, kc + 1, int(j - half), int(np.ceil(j + half)), int(i - half), int(np.ceil(i + half)))
            relevant = {o for o in series if les.kind in kinds_of[o] and patient_of[o] != patient_of[sid]}
            eligible = [o for o in series if patient_of[o] != patient_of[sid]]
            chance = len(relevant) / max(len(eligible), 1)

            def judge(name: str, ids: list, scores: list, ms: float) -> None:
                rel = [o in relevant for o in ids]
                row = {"p1": float(rel[0]) if rel else 0.0, "p5": sum(rel[:5]) / 5.0, "p10": sum(rel[:10]) / 10.0,
                       "p5cap": sum(rel[:5]) / max(min(5, len(relevant)), 1), "n": len(ids), "chance": chance,
                       "spread": (scores[0] - scores[-1]) if len(scores) > 1 else 0.0, "ms": ms,
                       "top": scores[0] if scores else float("nan")}
                res[name][les.kind].append(row)

            t = time.perf_counter()
            try:
                r = svc.search(svc.query_from_box(sid, box), filters=filters, k=args.k)
                ids = [h.series_id for h in r.hits]
                calibration = r.calibration
                judged += [(h.probability, float(h.series_id in relevant)) for h in r.hits if h.probability is not None]
                judge("box", ids, [h.score for h in r.hits], (time.perf_counter() - t) * 1e3)
                other_family += sum(family_of[o] != family_of[sid] for o in ids)
                box_hits_total += len(ids)
            except Exception as exc:  # noqa: BLE001 - counted as a miss, said once per query
                print(f"box query series {sid} {les.kind}: {exc}", file=sys.stderr)
                judge("box", [], [], 0.0)
            t = time.perf_counter()
            try:
                r = svc.search(svc.query_from_slice(sid, kc), filters=filters, k=args.k, primary_only=False)
                judge("slice", [h.series_id for h in r.hits], [h.score for h in r.hits], (time.perf_counter() - t) * 1e3)
            except Exception as exc:  # noqa: BLE001
                judge("slice", [], [], 0.0)
            t = time.perf_counter()
            try:
                if sid not in series_resp:
                    series_resp[sid] = svc.search(svc.query_from_series(sid), filters=filters, k=args.k)
                r = series_resp[sid]
                judge("series", [h.series_id for h in r.hits], [h.score for h in r.hits], (time.perf_counter() - t) * 1e3)
            except Exception as exc:  # noqa: BLE001
                print(f"series query {sid}: {exc}", file=sys.stderr)
                judge("series", [], [], 0.0)
            if old is not None:
                for name, make in (("box (slices)", lambda: old.query_from_roi(sid, box)),
                                   ("slice (slices)", lambda: old.query_from_slice(sid, kc)),
                                   ("series (slices)", lambda: old.query_from_series(sid))):
                    t = time.perf_counter()
                    try:
                        r = old.search(make(), filters=filters, k=args.k)
                        judge(name, [h.series_id for h in r.hits], [h.score for h in r.hits],
                              (time.perf_counter() - t) * 1e3)
                    except Exception as exc:  # noqa: BLE001
                        judge(name, [], [], 0.0)

    out: dict = {"seed": args.seed, "patients": args.patients, "size": args.size, "slices": args.slices, "queries": {}}
    print(f"\n{'query':16s} {'kind':24s} {'pts':>3s} {'n':>3s} {'P@1':>5s} {'P@5':>5s} {'P@10':>5s} {'P@5cap':>6s} "
          f"{'chance':>6s} {'spread':>6s} {'ms':>6s}")
    for name, per_kind in res.items():
        allrows = []
        for kd, rows in sorted(per_kind.items()):
            allrows += rows
            m = {key: float(np.mean([r[key] for r in rows])) for key in ("p1", "p5", "p10", "p5cap", "chance", "spread")}
            m["ms"] = float(np.median([r["ms"] for r in rows]))
            m["queries"], m["patients"] = len(rows), len(patients_with[kd])
            out["queries"].setdefault(name, {})[kd] = m
            print(f"{name:16s} {kd:24s} {m['patients']:3d} {len(rows):3d} {m['p1']:5.2f} {m['p5']:5.2f} {m['p10']:5.2f} "
                  f"{m['p5cap']:6.2f} {m['chance']:6.2f} {m['spread']:6.3f} {m['ms']:6.0f}")
        m = {key: float(np.mean([r[key] for r in allrows])) for key in ("p1", "p5", "p10", "p5cap", "chance", "spread")}
        m["ms"] = float(np.median([r["ms"] for r in allrows]))
        out["queries"].setdefault(name, {})["all"] = m
        print(f"{name:16s} {'ALL':24s} {'':3s} {len(allrows):3d} {m['p1']:5.2f} {m['p5']:5.2f} {m['p10']:5.2f} "
              f"{m['p5cap']:6.2f} {m['chance']:6.2f} {m['spread']:6.3f} {m['ms']:6.0f}")
    regions, desc = register(store)
    n_series, n_regions, nbytes = regions.stored_bytes(desc.id)
    fam = regions.families(desc.id)
    print(f"\nbox hits of another modality family: {other_family} of {box_hits_total}")
    print(f"confidence on the cards: {calibration}")
    if judged:
        from casebook.viewer.core.services.calibration import expected_calibration_error

        pr, ok = np.array(judged).T
        ece = expected_calibration_error(pr, ok)
        print(f"box hits with a probability: {len(pr)}; ECE against the lesion kind (boxes drawn by the benchmark, "
              f"not the fit's own queries): {ece:.3f}; mean probability {pr.mean():.2f}, observed {ok.mean():.2f}")
        for lo in np.arange(0.0, 1.0, 0.2):
            m = (pr >= lo) & (pr < lo + 0.2 + (1e-9 if lo >= 0.8 else 0))
            if m.any():
                print(f"  probability {lo:.1f}-{lo + 0.2:.1f}: {m.sum():4d} hits, observed {ok[m].mean():.2f}")
        out.update(box_ece=ece, box_probability_hits=int(len(pr)))
    print(f"region index: {n_regions} regions in {n_series} series ({fam}); {desc.dim}-d float16 = "
          f"{nbytes / max(n_series, 1):,.0f} B of vectors per series in the store "
          f"(+ {4 * desc.dim + 2 * 16 * 4 + 8:,} B per region in the HNSW file)")
    out.update(other_family_hits=other_family, box_hits=box_hits_total, regions=n_regions, series=n_series,
               vector_bytes_per_series=nbytes / max(n_series, 1), region_seconds=t_regions)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    svc.close()
    if old is not None:
        old.close()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
