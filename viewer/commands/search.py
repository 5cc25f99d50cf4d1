"""``casebook search``: similar past cases for a series, an ROI, a slice, a folder or a text."""
from __future__ import annotations

import argparse
import sys
from datetime import date

from ..core.config import load_settings
from ..core.services import search as search_service
from ..core.services.library import require_library
from ._console import print_table, progress_bar


def _date(s: str) -> date:
    try:
        return date.fromisoformat(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{s!r} is not a date (YYYY-MM-DD)") from exc


def _box(s: str) -> tuple[int, int, int, int, int, int]:
    try:
        vals = tuple(int(v) for v in s.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{s!r}: ROI box is six integers k0,k1,j0,j1,i0,i1") from exc
    if len(vals) != 6:
        raise argparse.ArgumentTypeError(f"{s!r}: ROI box is six integers k0,k1,j0,j1,i0,i1")
    return vals  # type: ignore[return-value]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "search", help="find similar past cases",
        description="Find the most similar cases in the library for a stored series (all of it, one "
                    "slice, or an ROI box), a DICOM folder not in the library, a text over reports "
                    "and diagnoses, or text and image together (fused by rank). Series ids are the "
                    "`id` column of `casebook ls --series`.")
    q = p.add_argument_group("query")
    q.add_argument("--series", help="stored series: id, SeriesInstanceUID or stack key")
    q.add_argument("--slice", type=int, help="only this slice of --series")
    q.add_argument("--roi", type=_box, help="box in voxels of --series: k0,k1,j0,j1,i0,i1; matched against the "
                   "archive's findings of the same modality family (needs `casebook embed`'s regions)")
    q.add_argument("--findings", action="store_true",
                   help="with --series (and --slice): rank cases by the series' findings (its least typical "
                        "regions, matched one by one), not by whole-slice likeness")
    q.add_argument("--folder", help="a DICOM folder that is not in the library")
    q.add_argument("--text", help="words to find in reports and diagnoses")
    f = p.add_argument_group("filters")
    f.add_argument("--modality", action="append", default=[], help="e.g. CT (repeatable)")
    f.add_argument("--body-part", action="append", default=[], help="e.g. CHEST (repeatable)")
    f.add_argument("--sex", choices=["M", "F", "O"])
    f.add_argument("--age-min", type=float)
    f.add_argument("--age-max", type=float)
    f.add_argument("--date-from", type=_date)
    f.add_argument("--date-to", type=_date)
    f.add_argument("--tag", action="append", default=[], help="case must carry the tag (repeatable)")
    f.add_argument("--collection", action="append", default=[], help="case in the collection (repeatable)")
    f.add_argument("--diagnosis", help="words that must occur in the diagnosis")
    f.add_argument("--include-same-patient", action="store_true", help="also show the patient's own cases")
    f.add_argument("--include-same-study", action="store_true", help="also show series of the same study")
    f.add_argument("--any-anatomy", action="store_true",
                   help="box and --findings searches: also match series of another anatomy (head, chest, ...)")
    p.add_argument("-k", type=int, help="number of results (default from settings)")
    p.add_argument("--model", help="encoder model (default from settings)")
    p.add_argument("--more-like", action="append", default=[], metavar="SERIES",
                   help="relevance feedback: re-rank towards this result (repeatable)")
    p.add_argument("--not-like", action="append", default=[], metavar="SERIES",
                   help="relevance feedback: re-rank away from this result (repeatable)")
    p.set_defaults(func=run, cancellable=True)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if not (args.series or args.folder or args.text):
        print("casebook search: give --series, --folder or --text", file=sys.stderr)
        return 2
    if (args.slice is not None or args.roi) and not args.series:
        print("casebook search: --slice and --roi need --series", file=sys.stderr)
        return 2
    if args.findings and (not args.series or args.roi or args.text):
        print("casebook search: --findings goes with --series (and --slice), without --roi or --text", file=sys.stderr)
        return 2
    if args.roi and args.text:
        print("casebook search: --roi is ranked by the finding in the box; filter words with --diagnosis "
              "instead of --text", file=sys.stderr)
        return 2
    filters = search_service.SearchFilters(
        modalities=tuple(args.modality), body_parts=tuple(args.body_part), sex=args.sex,
        age_min=args.age_min, age_max=args.age_max, date_from=args.date_from, date_to=args.date_to,
        tags=tuple(args.tag), collections=tuple(args.collection), diagnosis=args.diagnosis,
        exclude_same_patient=settings.search.exclude_same_patient and not args.include_same_patient,
        exclude_same_study=settings.search.exclude_same_study and not args.include_same_study,
        same_anatomy=settings.search.same_anatomy and not args.any_anatomy)
    require_library(settings)
    with progress_bar("index", unit="vectors") as bar:
        service = search_service.open_store_search(settings, args.model, progress=bar, cancel=args.cancel)
    try:
        cat = service.catalog
        query = None
        resp = None
        if args.series:
            sid = cat.find_series(args.series)
            if args.roi:
                resp = service.search_box(sid, args.roi, filters=filters, k=args.k)
            elif args.findings:
                resp = service.search_findings(sid, args.slice, filters=filters, k=args.k)
            elif args.slice is not None:
                query = service.query_from_slice(sid, args.slice)
            else:
                query = service.query_from_series(sid)
        elif args.folder:
            query = service.query_from_folder(args.folder)
        if resp is None:
            resp = service.search(query, text=args.text, filters=filters, k=args.k)
        if args.more_like or args.not_like:
            resp = service.feedback(resp, [cat.find_series(s) for s in args.more_like],
                                    [cat.find_series(s) for s in args.not_like])
    finally:
        service.close()
    what = resp.query.description if resp.query else (resp.region_query.description if resp.region_query else "")
    if resp.text:
        what = f"{what} + text {resp.text!r}" if what else f"text {resp.text!r}"
    print(f"{len(resp.hits)} similar cases for {what} ({filters.describe()}; {resp.method or '-'}, "
          f"{resp.elapsed_ms:.0f} ms)")
    said = getattr(resp.region_query, "searched_for", "")
    if said:
        print(f"searched for {said}")
    if not resp.hits:
        print(f"no results: {resp.reason}")
        return 0
    headers, rows = search_service.hits_table(resp)
    print_table(headers, rows)
    if resp.calibration:
        print(f"confidence: {resp.calibration}")
    if resp.reason:
        print(f"fewer than {resp.k}: {resp.reason}")
    return 0
