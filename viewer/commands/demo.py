"""``casebook demo``: build (or refresh) a ready demo library to try Casebook on.

Synthetic phantom patients (CT chest/abdomen and MR brain, lesions with ground-truth reports,
follow-ups that grow, shrink or stay stable) plus the real sample DICOM files shipped by
pydicom, pydicom-data and deid-data, ingested into the library and annotated.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..core.config import load_settings
from ._console import PhaseProgress, print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="build a ready demo library (synthetic phantoms + public sample DICOM files)",
        description="Write synthetic phantom patients (labelled SYNTHETIC PHANTOM) and the sample DICOM "
                    "files shipped by pydicom/pydicom-data/deid-data into <library>/demo-dicom/, ingest "
                    "them, store ground-truth reports, tags and teaching fields, and embed them when an "
                    "encoder is available. Running it again changes nothing; --force rebuilds.")
    p.add_argument("--patients", type=int, default=20, help="phantom patients (default 20)")
    p.add_argument("--size", type=int, default=256, help="pixels per image side (default 256)")
    p.add_argument("--slices", type=int, default=48, help="slices per axial CT series (default 48)")
    p.add_argument("--big-slices", type=int, default=300,
                   help="slices of the one long CT series (viewer benchmark; default 300, 0 = none)")
    p.add_argument("--seed", type=int, default=20240601, help="phantom seed (same seed, same files)")
    p.add_argument("--no-samples", action="store_true", help="phantoms only, no registry sample files")
    p.add_argument("--no-embed", action="store_true", help="do not compute embeddings")
    p.add_argument("--force", action="store_true", help="regenerate the phantom files and re-read everything")
    p.add_argument("--open", action="store_true", help="open the library afterwards (GUI, else a listing)")
    p.set_defaults(func=run, cancellable=True)


def _demo_phase(message: str) -> str:
    # The embedding service names each series ("series 12"): keep one bar for all of them.
    return "embed series" if message.startswith("series ") else message


def _demo_unit(message: str) -> str:
    if "phantom" in message:
        return "slices"
    if "index" in message:
        return "vectors"
    return "series" if message.startswith(("embed", "finding")) else "files"


def run(args: argparse.Namespace) -> int:
    from ..core.demo.build import build_demo
    from ..core.demo.phantom import PhantomOptions
    from ..core.services.library import open_store


    if args.patients < 1 or args.size < 64 or args.slices < 8:
        print("casebook demo: need --patients >= 1, --size >= 64, --slices >= 8", file=sys.stderr)
        return 2
    settings = load_settings()
    settings.library_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    opts = PhantomOptions(patients=args.patients, seed=args.seed, size=args.size, slices=args.slices,
                          big_slices=max(0, args.big_slices))
    try:
        with PhaseProgress(unit_for=_demo_unit, phase_of=_demo_phase) as bars:
            rep = build_demo(settings.library_dir, store, options=opts, force=args.force,
                             samples=not args.no_samples, progress=bars, cancel=args.cancel, embed=not args.no_embed)
        sources = ", ".join(rep.sample_sources) if rep.sample_sources else (
            "none installed" if not args.no_samples else "--no-samples")
        stats = [["phantom studies", rep.studies, "generated now" if rep.generated else "already there"],
                 [f"sample files ({sources})", rep.sample_files, ""],
                 ["series stored or updated now", rep.series_stored, ""],
                 ["files skipped by ingest", rep.files_skipped, "non-image samples, duplicates, bad files"],
                 ["studies annotated", rep.annotated, "reports, diagnoses, tags, teaching"],
                 ["embeddings", "", rep.embedding]]
        print_table(["demo library", "count", "note"], stats)
        for p in rep.problems[:10]:
            print(f"  problem: {p}", file=sys.stderr)
        print(f"\nlibrary: {settings.library_dir}\nDICOM files: {rep.dicom_dir}")
        if args.open:
            from .gui import display_problem

            problem = display_problem()
            if problem is None:
                store.close()
                from .. import cli

                return cli.main(["--library", str(settings.library_dir), "gui"])
            print(f"{problem}: listing the library instead of opening the window")
            _overview(store)
    finally:
        store.close()
    return 0


def _overview(store: Any) -> None:
    rows = [[s.id, s.study_date or "", s.patient_id, ",".join(s.modalities), (s.description or "")[:40],
             s.series_count, s.image_count, (s.diagnosis or "")[:50]]
            for s in store.list_studies(limit=200)]
    print()
    print_table(["id", "date", "patient", "mod", "description", "series", "images", "diagnosis"], rows)
