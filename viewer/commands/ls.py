"""``casebook ls``: list the studies (or series) in the library, with filters."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import date

from casebook.index.case_store import CaseFilter

from ..core.config import load_settings
from ..core.services.library import open_store
from ._console import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("ls", help="list studies or series in the library, with filters",
                              description="List the library's studies (newest first) or, with --series, "
                                          "their series. Filters combine (AND).")
    p.add_argument("--series", action="store_true", help="list series instead of studies")
    p.add_argument("--study", type=int, metavar="ID", help="only this study (implies --series)")
    p.add_argument("--patient", metavar="TEXT", help="patient ID or name contains TEXT")
    p.add_argument("--modality", action="append", default=[], metavar="MOD", help="e.g. CT, MR (repeatable)")
    p.add_argument("--body-part", action="append", default=[], metavar="PART", help="e.g. HEAD (repeatable)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="carries TAG (repeatable: all)")
    p.add_argument("--collection", action="append", default=[], metavar="NAME", help="in collection NAME")
    p.add_argument("--text", metavar="WORDS", help="words in the report/diagnosis or description")
    p.add_argument("--diagnosis", metavar="WORDS", help="words in the diagnosis")
    p.add_argument("--from", dest="date_from", type=date.fromisoformat, metavar="YYYY-MM-DD", help="study date on/after")
    p.add_argument("--to", dest="date_to", type=date.fromisoformat, metavar="YYYY-MM-DD", help="study date on/before")
    p.add_argument("--teaching", action="store_true", help="teaching cases only")
    p.add_argument("--deleted", action="store_true", help="include deleted (hidden) cases")
    p.add_argument("--limit", type=int, default=200, help="at most N rows (default 200; 0 = all)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    f = CaseFilter(patient=args.patient, modalities=tuple(args.modality), body_parts=tuple(args.body_part),
                   tags=tuple(args.tag), collections=tuple(args.collection), text=args.text,
                   diagnosis=args.diagnosis, date_from=args.date_from, date_to=args.date_to,
                   teaching_only=args.teaching, include_deleted=args.deleted,
                   study_ids=(args.study,) if args.study else ())
    limit = args.limit or None
    store = open_store(settings, create=False)
    try:
        if args.series or args.study:
            items: list = store.list_series(f, limit=limit)
        else:
            items = store.list_studies(f, limit=limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps([asdict(i) for i in items], indent=1, default=str))
        return 0
    if not items:
        print("nothing matches" if any([args.patient, args.modality, args.body_part, args.tag, args.collection,
                                        args.text, args.diagnosis, args.date_from, args.date_to, args.teaching,
                                        args.study]) else "the library is empty: run `casebook ingest PATH`")
        return 0
    if args.series or args.study:
        rows = [[s.id, s.study_id, s.study_date or "", s.modality, s.body_part, s.series_number if s.series_number
                 is not None else "", _cut(s.description, 40), s.slice_count, f"{s.columns}x{s.rows}",
                 f"{s.slice_spacing:.2f}" if s.slice_spacing else "", s.split_reason + (" (deleted)" if s.deleted else "")]
                for s in items]
        print_table(["id", "study", "date", "mod", "body part", "#", "description", "images", "size",
                     "step mm", "note"], rows)
    else:
        rows = [[s.id, s.study_date or "", s.patient_id, _cut(s.patient_name, 24), _sex_age(s.sex, s.age_years),
                 "/".join(s.modalities), s.series_count, s.image_count, _cut(s.description, 32),
                 ",".join(s.tags), _cut(s.diagnosis, 32), _flags(s)] for s in items]
        print_table(["id", "date", "patient", "name", "sex/age", "mod", "series", "images", "description",
                     "tags", "diagnosis", "flags"], rows)
    if limit is not None and len(items) == limit:
        print(f"(first {limit} rows; --limit 0 lists all)")
    return 0


def _cut(s: str, n: int) -> str:
    s = (s or "").replace("\n", " ")
    return s if len(s) <= n else s[: n - 1] + "…"


def _sex_age(sex: str, age: float | None) -> str:
    return f"{sex or '?'}/{age:.0f}" if age is not None else (sex or "")


def _flags(s) -> str:  # type: ignore[no-untyped-def]
    out = []
    if s.is_teaching:
        out.append("teaching")
    if s.prior_count:
        out.append(f"{s.prior_count} prior")
    if s.follow_up_count:
        out.append(f"{s.follow_up_count} follow-up")
    if s.deleted:
        out.append("deleted")
    return " ".join(out)
