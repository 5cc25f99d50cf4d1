"""``casebook check``: is the library whole? ``--repair`` rebuilds what can be rebuilt."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from ..core.config import load_settings
from ._console import PhaseProgress, print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check", help="check the library: database, series, embeddings, index, stored files (--repair fixes)",
        description="Check the library's integrity: the SQLite file (PRAGMA integrity_check), every series "
                    "complete, every embedding in its index exactly once with the same vector, and the "
                    "stored DICOM files still present and unchanged. --repair rebuilds the index from the "
                    "stored embeddings, computes missing embeddings, re-reads incomplete or changed series "
                    "and restores a damaged database from its latest backup (then re-ingests its folders); "
                    "then checks again. Exit 0 when everything is whole, 1 when problems remain.")
    p.add_argument("--repair", action="store_true", help="repair what can be rebuilt, then check again")
    p.add_argument("--no-files", action="store_true", help="skip the stat of every stored file (large archives)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run, cancellable=True)


def run(args: argparse.Namespace) -> int:
    from ..core.services.integrity import check_library, repair_library

    settings = load_settings()
    with PhaseProgress(enabled=not args.json, unit_for=lambda m: "files" if "file" in m else "items") as bar:
        if args.repair:
            rep = repair_library(settings, progress=bar, cancel=args.cancel)
        else:
            rep = check_library(settings, files=not args.no_files, progress=bar, cancel=args.cancel)
    if args.json:
        out = asdict(rep)
        out["ok"] = rep.ok
        out["files"] = {"checked": rep.files.checked, "missing": len(rep.files.missing),
                        "changed": len(rep.files.changed), "series_affected": rep.files.series_affected,
                        "examples": (rep.files.missing + rep.files.changed)[:20]}
        print(json.dumps(out, indent=1))
        return 0 if rep.ok else 1
    for line in rep.repaired:
        print(f"repaired: {line}")
    print_table(["check", "", "detail"],
                [[f.check, "ok" if f.ok else ("PROBLEM (--repair)" if f.repairable else "PROBLEM"), f.detail]
                 for f in rep.findings])
    if rep.files.missing:
        print(f"\nmissing files ({len(rep.files.missing)}):", file=sys.stderr)
        for p in rep.files.missing[:10]:
            print(f"  {p}", file=sys.stderr)
        if len(rep.files.missing) > 10:
            print(f"  ... and {len(rep.files.missing) - 10} more (--json lists 20)", file=sys.stderr)
    print(f"\n{rep.library}: {'whole' if rep.ok else 'problems found'} ({rep.seconds:.1f} s)")
    return 0 if rep.ok else 1
