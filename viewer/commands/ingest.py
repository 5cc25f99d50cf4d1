"""``casebook ingest PATH...``: add DICOM files, folders and DICOMDIRs to the library."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ..core.config import load_settings
from ..core.services import ingest as ingest_service
from ..core.services.library import open_store
from ._console import PhaseProgress, print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest", help="add DICOM files, folders or DICOMDIRs to the library",
        description="Read DICOM headers under PATH... (files, folders, DICOMDIRs), group them into series "
                    "and store them in the library. Files already stored and unchanged are skipped, so "
                    "running the same command again is safe and resumes an interrupted ingest. Ctrl-C "
                    "stops after the current series; nothing half-written is left behind.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="DICOM file, folder or DICOMDIR (one or more)")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel header readers (default: settings ingest_workers, 0 = one per CPU core)")
    p.add_argument("--rescan", action="store_true",
                   help="read every file again, even those the library says are unchanged")
    p.add_argument("--show-skipped", type=int, default=20, metavar="N",
                   help="list up to N skipped files with the reason (default 20; 0 lists none)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    scale = p.add_argument_group(
        "archive scale", "Read headers, decode and embed on a Ray cluster (pip install 'casebook[ray]'); this "
        "process stays the only writer to the library. Workers read the files and the model from the same "
        "paths (one machine, or a shared file system).")
    scale.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="ingest on Ray, then embed and find regions of what is new there: a local Ray "
                            "when ADDRESS is omitted, else the cluster at ADDRESS (auto, host:port, ray://host:port; "
                            "an existing file or folder after --ray is taken as a PATH, --ray=ADDRESS is never)")
    scale.add_argument("--ray-workers", type=int, default=0, metavar="N",
                       help="processes of the local Ray (default: one per CPU core)")
    scale.add_argument("--embed", action="store_true",
                       help="without --ray: also embed, find regions and index what is new, in this process")
    scale.add_argument("--no-regions", action="store_true",
                       help="with --ray or --embed: skip the findings (regions) box queries match against")
    p.set_defaults(func=run, cancellable=True)


def run(args: argparse.Namespace) -> int:
    if args.ray and Path(args.ray).expanduser().exists() and not args.ray.startswith("ray://"):
        args.paths, args.ray = [args.ray, *args.paths], ""  # `ingest --ray /archive`: a path, not an address
    if not args.paths:
        print("casebook ingest: error: give at least one PATH (file, folder or DICOMDIR)", file=sys.stderr)
        return 2
    settings = load_settings()
    gone = ingest_service.missing_paths(args.paths)
    if len(gone) == len(args.paths):  # nothing to read: refuse before a library is created
        ingest_service.missing_paths(args.paths, raise_error=True)
    workers = settings.ingest_workers if args.workers is None else max(0, args.workers)
    if args.ray is not None:  # refused before a library is created when Ray is not installed
        from ..core.services.distributed import RayCluster

        RayCluster.check_installed()
    store = open_store(settings)
    index = None
    try:
        with PhaseProgress(enabled=not args.json, unit_for=_unit) as bars:
            if args.ray is not None:
                from ..core.services.distributed import ingest_on_ray

                rep = ingest_on_ray(args.paths, store, settings, address=args.ray or None, workers=args.ray_workers,
                                    regions=not args.no_regions, rescan=args.rescan, progress=bars,
                                    cancel=args.cancel)
                summary, index = rep.ingest, rep.index
            else:
                summary = ingest_service.ingest(args.paths, store, progress=bars, cancel=args.cancel,
                                                workers=workers, rescan=args.rescan)
                if args.embed and not summary.cancelled:
                    from casebook.common.errors import Cancelled

                    from ..core.services.import_pipeline import embed_and_index

                    try:
                        index = embed_and_index(store, settings, progress=bars, cancel=args.cancel,
                                                regions=not args.no_regions)
                    except Cancelled:
                        summary.cancelled = True
    finally:
        store.close()
    if args.json:
        out = asdict(summary)
        if index is not None:
            out["index"] = {"text": index.text(), "embedded": index.embedded, "failed": index.failed,
                            "remaining": index.remaining, "vectors": index.vectors, "problem": index.problem,
                            "regions": asdict(index.regions) if index.regions is not None else None}
        print(json.dumps(out, indent=1, default=str))
    else:
        print_summary(summary, show_skipped=args.show_skipped)
        if index is not None:
            print(f"search index: {index.text()}")
    if summary.cancelled:
        return 130
    if gone:
        print(f"casebook ingest: {', '.join(gone)}: no such file or folder (the other paths were ingested)",
              file=sys.stderr)
        return 1
    return 0


def _unit(message: str) -> str:
    from ..core.services.import_pipeline import PHASE_EMBED, PHASE_REGIONS

    return "series" if message in (PHASE_EMBED, PHASE_REGIONS) else "files"


def print_summary(summary: ingest_service.IngestSummary, *, show_skipped: int = 20, limit: int = 40) -> None:
    if summary.series:
        rows = [[s.series_id, s.status, s.study_date, s.modality, _cut(s.description, 40), s.images,
                 _cut(s.split_reason, 48)]
                for s in summary.series[:limit]]
        print_table(["id", "series", "study date", "modality", "description", "images", "split"], rows)
        if len(summary.series) > limit:
            print(f"... and {len(summary.series) - limit} more series")
        print()
    rate = summary.files_seen / summary.elapsed_s if summary.elapsed_s > 0 else 0.0
    counts = [
        ["series stored (new)", summary.series_stored],
        ["series updated (new images)", summary.series_updated],
        ["series already stored", summary.series_unchanged],
        ["images stored", summary.images_stored],
        ["files stored", summary.files_stored],
        ["files unchanged (already in library)", summary.files_unchanged],
        ["files duplicate (same image elsewhere)", summary.files_duplicate],
        ["files moved (same image, old file gone)", summary.files_relocated],
        ["files skipped", summary.files_skipped],
        ["files seen", summary.files_seen],
        ["time", f"{summary.elapsed_s:,.1f} s ({rate:,.0f} files/s)"],
    ]
    print_table(["ingest", "count"], counts)
    if summary.skipped:
        print()
        print_table(["skipped because", "files"], summary.skip_reasons())
        if show_skipped > 0:
            print()
            print_table(["skipped file", "reason"],
                        [[s.path, s.reason] for s in summary.skipped[:show_skipped]])
            if len(summary.skipped) > show_skipped:
                print(f"... and {len(summary.skipped) - show_skipped} more (--show-skipped N lists more)")
    print()
    print(f"library: {summary.library}")
    if summary.cancelled:
        print("ingest was stopped: what is listed above is stored; run the same command again to resume")


def _cut(s: str, n: int) -> str:
    s = (s or "").replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"
