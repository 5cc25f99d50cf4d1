"""``casebook priors STUDY``: the same patient's other studies, newest first, with the series to compare."""
from __future__ import annotations

import argparse
import json

from ..core.config import load_settings
from ..core.services.library import open_store
from ..core.services.priors import find_priors
from ._console import print_table
from .register import resolve_study


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "priors", help="list the same patient's other studies (priors and follow-ups) and the best series to compare",
        description="List the other studies of STUDY's patient in the library, newest first: date, interval, how the "
                    "patient was matched, and the series chosen for comparison (same modality and body part, closest "
                    "protocol) with the runners-up.")
    p.add_argument("study", help="study id (see `casebook ls --studies`) or Study Instance UID")
    p.add_argument("--series", type=int, metavar="ID", help="compare against this series of STUDY (default: its largest)")
    p.add_argument("--name-birth", action="store_true", default=None,
                   help="also match another Patient ID with the same name and birth date "
                        "(default: the priors_name_birth_fallback setting)")
    p.add_argument("--all-series", action="store_true", help="list every series of each study, ranked")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings, create=False)
    try:
        study = resolve_study(store, args.study)
        fallback = settings.priors_name_birth_fallback if args.name_birth is None else True
        entries = find_priors(store, study.id, current_series_id=args.series, name_birth_fallback=fallback)
    finally:
        store.close()
    if args.json:
        print(json.dumps([{
            "study_id": e.study.id, "study_date": str(e.study.study_date or ""), "relation": e.relation,
            "interval_days": e.interval_days, "match": e.match, "description": e.study.description,
            "modalities": e.study.modalities,
            "series": [{"series_id": m.series.id, "modality": m.series.modality, "body_part": m.series.body_part,
                        "description": m.series.description, "slices": m.series.slice_count, "score": m.score,
                        "reasons": m.reasons} for m in e.series]} for e in entries], indent=1))
        return 0
    print(f"study {study.id} of {study.study_date or 'unknown date'} ({study.description or 'no description'}): "
          f"{len(entries)} other stud{'y' if len(entries) == 1 else 'ies'} of the patient")
    if not entries:
        return 0
    rows = []
    for e in entries:
        shown = e.series if args.all_series else e.series[:1]
        for n, m in enumerate(shown or [None]):
            head = [e.study.id, e.study.study_date or "?", e.interval_text(), e.match,
                    e.study.description] if n == 0 else ["", "", "", "", ""]
            if m is None:
                rows.append(head + ["-", "no series", "", ""])
            else:
                rows.append(head + [m.series.id, f"{m.series.modality} {m.series.description}".strip(),
                                    m.series.slice_count, ", ".join(m.reasons) or f"score {m.score:g}"])
    print_table(["study", "date", "interval", "matched on", "description", "series", "best match", "slices", "why"],
                rows)
    return 0
