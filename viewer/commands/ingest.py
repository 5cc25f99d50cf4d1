"""``casebook ingest PATH...``: add DICOM files, folders and DICOMDIRs to the library."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from casebook.index.errors import CaseIndexError

from ..core.config import load_settings
from ..core.errors import CasebookError
from ..core.progress import CancelToken
from ..core.services import ingest as ingest_service
from ..core.services.library import open_store
from ._console import PhaseBars, print_table, sigint_cancels


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest", help="add DICOM files, folders or DICOMDIRs to the library",
        description="Read DICOM headers under PATH... (files, folders, DICOMDIRs), group them into series "
                    "and store them in the library. Files already stored and unchanged are skipped, so "
                    "running the same command again is safe and resumes an interrupted ingest. Ctrl-C "
                    "stops after the current series; nothing half-written is left behind.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="DICOM file, folder or DICOMDIR")
    p.add_argument("--workers", type=int, default=None,
                   help="parallel header readers (default: settings ingest_workers, 0 = one per CPU core)")
    p.add_argument("--rescan", action="store_true",
                   help="read every file again, even those the library says are unchanged")
    p.add_argument("--show-skipped", type=int, default=20, metavar="N",
                   help="list up to N skipped files with the reason (default 20; 0 lists none)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (no progress bar)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings()
        store = open_store(settings)
    except (CasebookError, CaseIndexError) as exc:
        print(f"casebook ingest: {exc}", file=sys.stderr)
        return 2
    workers = settings.ingest_workers if args.workers is None else max(0, args.workers)
    cancel = CancelToken()
    bars = PhaseBars(enabled=not args.json)
    try:
        with sigint_cancels(cancel, "stopping after the current series"):
            summary = ingest_service.ingest(args.paths, store, progress=bars, cancel=cancel, workers=workers,
                                            rescan=args.rescan)
    except (CasebookError, CaseIndexError) as exc:
        bars.close()
        print(f"casebook ingest: {exc}", file=sys.stderr)
        return 2
    finally:
        bars.close()
        store.close()
    if args.json:
        print(json.dumps(asdict(summary), indent=1, default=str))
    else:
        print_summary(summary, show_skipped=args.show_skipped)
    if summary.cancelled:
        return 130
    return 0


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
