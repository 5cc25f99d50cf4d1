"""``casebook audit``: how well similar-case search works on this archive, measured here."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ..core.config import load_settings
from ..core.services import search as search_service
from ._console import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "audit", help="retrieval audit: index size, HNSW recall vs exact, latency, diagnosis P@k",
        description="Measure the local archive's search: index size, recall of the HNSW index "
                    "against exact search on a sample of stored vectors, latency percentiles, and "
                    "where diagnoses exist, P@k of diagnosis agreement.")
    p.add_argument("--model", help="model key (default: the settings' model, else every index)")
    p.add_argument("-k", type=int, default=10, help="results per query (default 10)")
    p.add_argument("--sample", type=int, default=200, help="queries sampled (default 200)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    reports = search_service.audit_library(settings, model=args.model, k=args.k, sample=args.sample)
    if not reports:
        print(f"casebook audit: no vector index in {settings.index_dir} (run `casebook embed` first)",
              file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps([asdict(r) for r in reports], indent=1, default=str))
        return 0
    for r in reports:
        rows = [
            ["model", r.model_key],
            ["vectors (live / deleted)", f"{r.vectors:,} / {r.deleted:,} ({r.dim}-d"
             + (f"; {r.delta:,} added since the base file, in its delta)" if r.delta else ")")],
            ["index on disk / private memory", f"{r.index_bytes / 2**20:,.1f} MiB / {r.memory_bytes / 2**20:,.1f} MiB"
             f" ({'file searched in place' if r.backend == 'mapped' else 'graph in memory'})"],
            ["HNSW M / ef_construction / ef", f"{r.M} / {r.ef_construction} / {r.ef}"],
            [f"recall@{r.k} HNSW vs exact", "-" if r.recall_at_k is None else f"{r.recall_at_k:.4f} ({r.sample} queries)"],
        ]
        for name, ms in (("HNSW latency ms", r.hnsw_ms), ("exact latency ms", r.exact_ms)):
            if ms:
                rows.append([name, " ".join(f"{k} {v:.2f}" for k, v in ms.items())])
        if r.precision_at_k is not None:
            rows.append([f"diagnosis P@{r.k} / P@1", f"{r.precision_at_k:.3f} / {r.precision_at_1:.3f} "
                         f"({r.diagnosis_queries} queries; chance {r.chance_precision or 0:.3f})"])
        print_table(["audit", "value"], rows)
        for note in r.notes:
            print(f"note: {note}")
        print()
    return 0
