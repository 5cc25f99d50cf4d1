"""``casebook teach``: teaching cases from the command line: add, ls, show, edit, export, import, scores.

For scripting and bulk work; the reading window's *Save as teaching case* and the Teaching panel
do the same through the same services.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from casebook.index.case_store.teaching_records import CERTAINTIES, KeyImage, TeachingCase, TeachingFilter
from casebook.index.errors import QueryError

from ..core.config import load_settings
from ..core.services.library import open_store
from ._console import PhaseProgress, print_table

TEXT_OPTIONS = ("title", "history", "findings", "diagnosis", "discussion", "author")


def _field_options(p: argparse.ArgumentParser) -> None:
    for name in TEXT_OPTIONS:
        p.add_argument(f"--{name}", metavar="TEXT", help=f"the case's {name}")
    p.add_argument("--differential", action="append", metavar="DIAGNOSIS",
                   help="a differential diagnosis (repeatable; replaces the list)")
    p.add_argument("--certainty", choices=[c for c in CERTAINTIES if c], help="diagnostic certainty")
    p.add_argument("--system", action="append", metavar="SYSTEM", help="organ system (repeatable; replaces the list)")
    p.add_argument("--difficulty", choices=["beginner", "intermediate", "advanced"])
    p.add_argument("--key-image", action="append", default=[], metavar="SERIES:SLICE[:CENTER:WIDTH]",
                   help="add a key image: a series id of the study, the slice in it, optionally the window")


def register(subparsers: argparse._SubParsersAction) -> None:
    top = subparsers.add_parser("teach", help="teaching cases: add, ls, show, edit, export, import, scores",
                                description="Teaching-file library: make cases from stored studies, find them, "
                                            "export them de-identified (DICOM PS3.15 Annex E basic profile) "
                                            "and import exports from other libraries.")
    sub = top.add_subparsers(dest="teach_command", metavar="ACTION", required=True)

    p = sub.add_parser("add", help="make a study a teaching case (fields pre-filled from its report)")
    p.add_argument("study", type=int, metavar="STUDY_ID")
    _field_options(p)
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="add a tag (repeatable)")
    p.add_argument("--collection", action="append", default=[], metavar="NAME", help="add to collection (repeatable)")
    p.set_defaults(func=run_add)

    p = sub.add_parser("ls", help="list teaching cases, with filters and full-text search")
    p.add_argument("--text", metavar="WORDS", help="words in the case fields (FTS5; word* for prefixes)")
    p.add_argument("--system", action="append", default=[], metavar="SYSTEM", help="organ system (any)")
    p.add_argument("--modality", action="append", default=[], metavar="MOD", help="modality (any)")
    p.add_argument("--tag", action="append", default=[], metavar="TAG", help="carries TAG (all)")
    p.add_argument("--certainty", choices=[c for c in CERTAINTIES if c])
    p.add_argument("--difficulty", choices=["beginner", "intermediate", "advanced"])
    p.add_argument("--author", metavar="TEXT", help="author contains TEXT")
    p.add_argument("--collection", metavar="NAME", help="in collection NAME (in its order)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run_ls)

    p = sub.add_parser("show", help="one case: fields, key images, completeness")
    p.add_argument("case", type=int, metavar="CASE_ID")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run_show)

    p = sub.add_parser("edit", help="change a case's fields, tags, collections, key images, masks")
    p.add_argument("case", type=int, metavar="CASE_ID")
    _field_options(p)
    p.add_argument("--add-tag", action="append", default=[], metavar="TAG")
    p.add_argument("--remove-tag", action="append", default=[], metavar="TAG")
    p.add_argument("--add-collection", action="append", default=[], metavar="NAME")
    p.add_argument("--remove-collection", action="append", default=[], metavar="NAME")
    p.add_argument("--remove-key-image", action="append", default=[], type=int, metavar="KEY_IMAGE_ID")
    p.add_argument("--mask", action="append", default=[], metavar="SERIES:ROW0,COL0,ROW1,COL1",
                   help="confirm a burned-in text mask for a series (blanked on every frame at export; "
                        "repeatable, several rectangles per series)")
    p.add_argument("--clear-mask", action="append", default=[], type=int, metavar="SERIES")
    p.add_argument("--exclude", action="append", default=[], type=int, metavar="SERIES",
                   help="leave this series out of exports")
    p.add_argument("--include", action="append", default=[], type=int, metavar="SERIES")
    p.add_argument("--delete", action="store_true", help="forget the case (the study and its images stay)")
    p.set_defaults(func=run_edit)

    p = sub.add_parser("export", help="export cases de-identified: DICOM folder, JSON case document, report, zip")
    p.add_argument("args", nargs="+", metavar="CASE_ID... OUT_DIR")
    p.add_argument("--collection", metavar="NAME", help="every case of collection NAME")
    p.add_argument("--all", action="store_true", help="every teaching case")
    p.add_argument("--no-patient-characteristics", action="store_true",
                   help="also remove age, sex, size and weight (default: kept, PS3.15 option 113108)")
    p.add_argument("--no-zip", action="store_true", help="do not write the zip")
    p.set_defaults(func=run_export, cancellable=True)

    p = sub.add_parser("import", help="import a teaching export (folder or zip) into this library")
    p.add_argument("path", type=Path, metavar="DIR|ZIP")
    p.add_argument("--no-embed", action="store_true", help="do not embed the new series for image search now")
    p.set_defaults(func=run_import, cancellable=True)

    p = sub.add_parser("scores", help="quiz scores per learner and collection")
    p.add_argument("--learner", metavar="NAME")
    p.add_argument("--collection", metavar="NAME")
    p.set_defaults(func=run_scores)


def _key_image(spec: str) -> KeyImage:
    parts = spec.split(":")
    try:
        if len(parts) == 2:
            return KeyImage(series_id=int(parts[0]), slice_index=int(parts[1]))
        if len(parts) == 4:
            return KeyImage(series_id=int(parts[0]), slice_index=int(parts[1]), window_center=float(parts[2]),
                            window_width=float(parts[3]))
    except ValueError:
        pass
    raise QueryError(f"--key-image {spec!r}: expected SERIES:SLICE or SERIES:SLICE:CENTER:WIDTH")


def _apply_fields(case: TeachingCase, args: argparse.Namespace) -> None:
    for name in TEXT_OPTIONS:
        v = getattr(args, name)
        if v is not None:
            setattr(case, name, v)
    if args.differential is not None:
        case.differential = list(args.differential)
    if args.system is not None:
        case.systems = list(args.system)
    if args.certainty is not None:
        case.certainty = args.certainty
    if args.difficulty is not None:
        case.difficulty = args.difficulty


def _series_by_id(store: Any, study_id: int, series_id: int) -> Any:
    se = store.get_series(series_id)
    if se.study_id != study_id:
        raise QueryError(f"series {series_id} is not a series of study {study_id}")
    return se


def run_add(args: argparse.Namespace) -> int:
    from ..core.services.teaching.authoring import draft_case

    store = open_store(load_settings(), create=False)
    try:
        case = draft_case(store, args.study)
        _apply_fields(case, args)
        case.tags = list(dict.fromkeys(case.tags + args.tag))
        case.collections = list(args.collection)
        case.key_images = [_key_image(k) for k in args.key_image]
        cid = store.create_teaching_case(case)
        got = store.get_teaching_case(cid)
    finally:
        store.close()
    print(f"teaching case {cid} (study {args.study}); missing: {', '.join(got.missing()) or 'nothing'}")
    return 0


def _row(c: TeachingCase) -> list[Any]:
    return [c.id, c.study_id, c.title, c.diagnosis, c.certainty, ",".join(c.systems), ",".join(c.modalities),
            ",".join(c.tags), c.difficulty, c.author, len(c.key_images), f"{100 * c.completeness():.0f}%"]


def _as_json(c: TeachingCase) -> dict[str, Any]:
    d = asdict(c)
    d["missing"] = c.missing()
    return d


def run_ls(args: argparse.Namespace) -> int:
    f = TeachingFilter(text=args.text, systems=tuple(args.system), modalities=tuple(args.modality),
                       tags=tuple(args.tag), certainty=args.certainty, difficulty=args.difficulty,
                       author=args.author, collection=args.collection)
    store = open_store(load_settings(), create=False)
    try:
        cases = store.list_teaching_cases(f)
    finally:
        store.close()
    if args.json:
        print(json.dumps([_as_json(c) for c in cases], indent=1, default=str))
        return 0
    if not cases:
        print("no teaching case matches" if f != TeachingFilter() else
              "no teaching cases yet: `casebook teach add STUDY_ID` or Save as teaching case in the viewer")
        return 0
    print_table(["case", "study", "title", "diagnosis", "certainty", "systems", "modality", "tags", "difficulty",
                 "author", "key images", "complete"], [_row(c) for c in cases])
    return 0


def run_show(args: argparse.Namespace) -> int:
    store = open_store(load_settings(), create=False)
    try:
        c = store.get_teaching_case(args.case)
    finally:
        store.close()
    if args.json:
        print(json.dumps(_as_json(c), indent=1, default=str))
        return 0
    print(f"Teaching case {c.id} (study {c.study_id}, {', '.join(c.modalities) or 'no images'}), "
          f"{100 * c.completeness():.0f}% complete; missing: {', '.join(c.missing()) or 'nothing'}")
    for name in ("title", "history", "findings", "diagnosis"):
        print(f"  {name}: {getattr(c, name)}")
    print(f"  differential: {'; '.join(c.differential)}")
    print(f"  discussion: {c.discussion}")
    print(f"  certainty: {c.certainty}   difficulty: {c.difficulty}   author: {c.author}")
    print(f"  systems: {', '.join(c.systems)}   tags: {', '.join(c.tags)}   collections: {', '.join(c.collections)}")
    for ki in c.key_images:
        print(f"  key image {ki.id}: series {ki.series_id} ({ki.modality}) slice {ki.slice_index}, "
              f"{ki.orientation}, W/L {ki.window_width:g}/{ki.window_center:g}, {len(ki.annotations)} annotation(s)"
              + (f": {ki.caption}" if ki.caption else ""))
    for uid, rects in c.masks.items():
        print(f"  mask on a series: {rects}")
    if c.excluded:
        print(f"  {len(c.excluded)} series excluded from exports")
    return 0


def _mask(spec: str) -> tuple[int, list[int]]:
    try:
        sid, rect = spec.split(":", 1)
        vals = [int(v) for v in rect.split(",")]
        if len(vals) == 4:
            return int(sid), vals
    except ValueError:
        pass
    raise QueryError(f"--mask {spec!r}: expected SERIES:ROW0,COL0,ROW1,COL1 (pixels, end-exclusive)")


def run_edit(args: argparse.Namespace) -> int:
    store = open_store(load_settings(), create=False)
    try:
        if args.delete:
            ok = store.delete_teaching_case(args.case)
            print(f"teaching case {args.case} deleted" if ok else f"no teaching case {args.case}")
            return 0 if ok else 1
        c = store.get_teaching_case(args.case)
        _apply_fields(c, args)
        c.tags = [t for t in dict.fromkeys(c.tags + args.add_tag) if t not in set(args.remove_tag)]
        c.collections = [x for x in dict.fromkeys(c.collections + args.add_collection)
                         if x not in set(args.remove_collection)]
        for spec in args.mask:
            sid, rect = _mask(spec)
            uid = _series_by_id(store, c.study_id, sid).series_uid
            c.masks.setdefault(uid, []).append(rect)
        for sid in args.clear_mask:
            c.masks.pop(_series_by_id(store, c.study_id, sid).series_uid, None)
        for sid in args.exclude:
            c.excluded.append(_series_by_id(store, c.study_id, sid).series_uid)
        for sid in args.include:
            uid = _series_by_id(store, c.study_id, sid).series_uid
            c.excluded = [u for u in c.excluded if u != uid]
        store.update_teaching_case(c)
        for kid in args.remove_key_image:
            if not store.remove_key_image(kid):
                raise QueryError(f"no key image {kid}")
        for spec in args.key_image:
            store.add_key_image(c.id, _key_image(spec))
        got = store.get_teaching_case(args.case)
    finally:
        store.close()
    print(f"teaching case {got.id} updated; missing: {', '.join(got.missing()) or 'nothing'}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from ..core.services.teaching.export import export_cases

    *ids, out = args.args
    if sum((bool(ids), bool(args.all), bool(args.collection))) != 1:
        raise QueryError("give case ids, --collection NAME or --all (one of them) before OUT_DIR")
    store = open_store(load_settings(), create=False)
    try:
        if args.all:
            case_ids = [c.id for c in store.list_teaching_cases()]
        elif args.collection:
            case_ids = [c.id for c in store.list_teaching_cases(TeachingFilter(collection=args.collection))]
            if not case_ids:
                raise QueryError(f"collection {args.collection!r} has no teaching case")
        else:
            try:
                case_ids = [int(i) for i in ids]
            except ValueError as exc:
                raise QueryError(f"case ids must be numbers ({exc}); usage: teach export CASE_ID... OUT_DIR") from None
        with PhaseProgress(unit_for=lambda m: "files") as bar:
            rep = export_cases(store, case_ids, Path(out), keep_characteristics=not args.no_patient_characteristics,
                               make_zip=not args.no_zip, progress=bar, cancel=args.cancel)
    finally:
        store.close()
    sys.stdout.write(rep.text())
    print(f"written to {rep.out_dir}" + (f" and {rep.zip_path}" if rep.zip_path else ""))
    return 0 if rep.complete else 1


def run_import(args: argparse.Namespace) -> int:
    from ..core.services.teaching.importer import import_export

    with PhaseProgress(unit_for=lambda m: "series" if "embed" in m else "files") as bar:
        rep = import_export(load_settings(), args.path, progress=bar, cancel=args.cancel, embed=not args.no_embed)
    sys.stdout.write(rep.text())
    return 0 if not rep.skipped and not rep.missing_key_images else 1


def run_scores(args: argparse.Namespace) -> int:
    store = open_store(load_settings(), create=False)
    try:
        scores = store.quiz_scores(args.learner, args.collection)
    finally:
        store.close()
    if not scores:
        print("no quiz answers yet")
        return 0
    print_table(["learner", "collection", "answered", "correct", "score", "last"],
                [[s.learner, s.collection, s.answered, s.correct, f"{s.percent:.0f}%", s.last] for s in scores])
    return 0
