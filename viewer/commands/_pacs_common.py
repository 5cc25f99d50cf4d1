"""What ``casebook pacs`` and ``casebook web`` share: query options, tables, retrieve summaries."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any, Sequence

from ._console import PhaseProgress, print_table


def add_query_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node", help="node name from the nodes file (default: the first node of the kind)")
    p.add_argument("--patient-id", default="", help="exact patient ID")
    p.add_argument("--name", default="", help="patient name (substring; DICOM wildcards * ? allowed)")
    p.add_argument("--from", dest="date_from", default="", metavar="DATE", help="study date from (YYYY-MM-DD)")
    p.add_argument("--to", dest="date_to", default="", metavar="DATE", help="study date to (YYYY-MM-DD)")
    p.add_argument("--modality", default="", help="modality in study (CT, MR, ...)")
    p.add_argument("--accession", default="", help="accession number")
    p.add_argument("--description", default="", help="study description (substring)")
    p.add_argument("--study-uid", default="", help="one study by its Study Instance UID")
    p.add_argument("--series", action="store_true", help="list the series of the matching studies too")
    p.add_argument("--limit", type=int, default=200, help="at most this many studies (default 200)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def add_retrieve_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("study_uid", metavar="STUDY_UID", help="Study Instance UID (from `find` / `search`)")
    p.add_argument("--node", help="node name from the nodes file (default: the first node of the kind)")
    p.add_argument("--series", nargs="+", default=None, metavar="SERIES_UID", help="only these series")
    p.add_argument("--no-embed", action="store_true", help="store the images but do not embed and index them now")
    p.add_argument("--json", action="store_true", help="print the result as JSON (no progress bar)")


def query_from(args: argparse.Namespace) -> Any:
    from ..core.services.pacs import StudyQuery, parse_date_arg
    from ..core.errors import ConfigError

    try:
        d0, d1 = parse_date_arg(args.date_from), parse_date_arg(args.date_to)
    except ValueError as exc:
        raise ConfigError(f"--from/--to: {exc}") from None
    return StudyQuery(patient_id=args.patient_id, patient_name=args.name, date_from=d0, date_to=d1,
                      modality=args.modality, accession_number=args.accession, description=args.description,
                      study_uid=args.study_uid, limit=max(1, args.limit))


def print_studies(studies: Sequence[Any], series: dict[str, list[Any]], as_json: bool) -> None:
    if as_json:
        out = []
        for s in studies:
            d = asdict(s)
            d["study_date"] = s.study_date.isoformat() if s.study_date else None
            d["local"] = s.local
            d["series"] = [asdict(r) for r in series.get(s.study_uid, [])]
            out.append(d)
        print(json.dumps(out, indent=1))
        return
    rows = [[s.study_date.isoformat() if s.study_date else "", s.patient_id, s.patient_name,
             "/".join(s.modalities), s.description[:40], s.accession_number, s.series_count or "",
             s.images if s.images is not None else "", s.local, s.study_uid] for s in studies]
    print_table(["date", "patient ID", "name", "mod", "description", "accession", "series", "images", "local",
                 "study UID"], rows)
    for s in studies:
        if s.study_uid in series:
            print(f"\nseries of {s.study_uid}:")
            print_table(["#", "mod", "description", "images", "series UID"],
                        [[r.number if r.number is not None else "", r.modality, r.description[:40],
                          r.images if r.images is not None else "", r.series_uid] for r in series[s.study_uid]])
    print(f"\n{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}")


def run_retrieve(args: argparse.Namespace, method: str) -> int:
    from ..core.config import load_settings
    from ..core.services.pacs import retrieve_study

    settings = load_settings()
    def unit(message: str) -> str:
        return "images" if "retriev" in message else ("series" if "series" in message else "files")

    with PhaseProgress(enabled=not args.json, unit_for=unit) as bars:
        res = retrieve_study(settings, args.study_uid, node=args.node, method=method, series_uids=args.series,
                             embed=not args.no_embed, progress=bars, cancel=args.cancel)
    if args.json:
        d = asdict(res)
        d["complete"], d["problem"] = res.complete, res.problem
        print(json.dumps(d, indent=1))
    else:
        rate = res.transferred / res.elapsed_s if res.elapsed_s > 0 else 0.0
        print(f"{res.method} from {res.node}: {res.series} series, {res.expected} images listed; "
              f"{res.transferred} images transferred ({rate:,.1f}/s), {res.already_local} series already local, "
              f"{res.ingested_series} series added to the library")
        if res.import_headline:
            print(res.import_headline)
    if not res.complete:
        print(f"casebook {args.command}: PACS node {res.node!r}: {res.problem}", file=sys.stderr)
        return 1
    return 0
