"""``casebook study``: show, label (diagnosis, tags, note) or delete one study of the library."""
from __future__ import annotations

import argparse
import sys

from ._console import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("study", help="set a study's diagnosis, tags and note; show or delete it",
                              description="STUDY is a study id (`casebook ls`), a Study Instance UID or an "
                                          "accession number. Every label records who set it and when.")
    sub = p.add_subparsers(dest="study_command", metavar="ACTION", required=True)
    st = sub.add_parser("set", help="set the diagnosis, add/remove tags, set the note",
                        description="Set what is given; --diagnosis \"\" or --note \"\" clears it. A diagnosis "
                                    "set here (source: reader) is never replaced by a later report import.")
    st.add_argument("study", metavar="STUDY")
    st.add_argument("--diagnosis", metavar="TEXT")
    st.add_argument("--tag", action="append", default=[], metavar="TAG", help="add a tag (repeatable)")
    st.add_argument("--untag", action="append", default=[], metavar="TAG", help="remove a tag (repeatable)")
    st.add_argument("--note", metavar="TEXT")
    st.add_argument("--source", choices=("reader", "feedback"), default="reader",
                    help="who sets these labels (default reader; feedback: a reviewer's correction)")
    st.set_defaults(func=run_set)
    sh = sub.add_parser("show", help="the study's labels with who set each and when, and their history")
    sh.add_argument("study", metavar="STUDY")
    sh.set_defaults(func=run_show)
    de = sub.add_parser("delete", help="remove studies from the library (store, embeddings, index)",
                        description="Remove each study and everything stored about it: series, images, reports, "
                                    "labels, embeddings (and their vectors in every index). The DICOM files stay "
                                    "on disk unless --delete-files; a later `casebook ingest` of the same folder "
                                    "does not bring them back (`--rescan` does). Asks for confirmation unless "
                                    "--yes.")
    de.add_argument("studies", nargs="+", metavar="STUDY")
    de.add_argument("--delete-files", action="store_true", help="also delete the study's DICOM files from disk")
    de.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    de.set_defaults(func=run_delete)


def _open():
    from casebook.viewer.core.config import load_settings
    from casebook.viewer.core.services.library import open_store

    settings = load_settings()
    return settings, open_store(settings, create=False)


def run_set(args: argparse.Namespace) -> int:
    from casebook.viewer.core.services.reports.study_edit import apply_labels, resolve_study

    if args.diagnosis is None and args.note is None and not args.tag and not args.untag:
        from casebook.viewer.core.errors import CasebookError

        raise CasebookError("nothing to set: give --diagnosis, --tag, --untag or --note")
    _, store = _open()
    try:
        st = resolve_study(store, args.study)
        ch = apply_labels(store, st.id, diagnosis=args.diagnosis, add_tags=args.tag, remove_tags=args.untag,
                          note=args.note, source=args.source)
        labels = store.study_labels(st.id)
    finally:
        store.close()
    print(f"study {st.id}: " + (", ".join(ch.changed) + " set" if ch.changed else "nothing changed"))
    if labels.diagnosis:
        print(f"diagnosis: {labels.diagnosis}" + (f" → finding: {labels.finding}" if labels.finding else ""))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from casebook.viewer.core.services.reports.study_edit import resolve_study

    _, store = _open()
    try:
        st = resolve_study(store, args.study)
        labels = store.study_labels(st.id)
        history = store.label_history(st.id)
    finally:
        store.close()
    print(f"study {st.id}  {st.study_date or ''}  {', '.join(st.modalities)}  {st.description}  "
          f"({st.series_count} series)")

    def by(key: str) -> str:
        ev = labels.provenance.get(key)
        return f"{ev.source} ({ev.actor or '-'}, {ev.created:%Y-%m-%d %H:%M})" if ev else ""

    rows = [("diagnosis", labels.diagnosis + (f" → {labels.finding}" if labels.finding else ""), by("diagnosis")),
            ("note", labels.note, by("note"))]
    rows += [("tag", t, by(f"tag:{t}")) for t in labels.tags]
    print_table(["label", "value", "set by"], rows)
    if history:
        print_table(["when", "label", "change", "source", "by"],
                    [(f"{e.created:%Y-%m-%d %H:%M:%S}", e.kind, f"{e.action} {e.value!r}", e.source, e.actor)
                     for e in history], title="history")
    return 0


def run_delete(args: argparse.Namespace) -> int:
    from casebook.viewer.core.errors import CasebookError
    from casebook.viewer.core.services.reports.study_edit import remove_study, resolve_study

    settings, store = _open()
    try:
        studies = [resolve_study(store, k) for k in args.studies]
        if not args.yes:
            for s in studies:
                print(f"study {s.id}: {s.study_date or ''} {', '.join(s.modalities)} {s.description} — "
                      f"{s.series_count} series, {s.image_count} images", file=sys.stderr)
            what = "and DELETE their files from disk" if args.delete_files else "(the files stay on disk)"
            if not sys.stdin.isatty():
                raise CasebookError(f"not deleting {len(studies)} studies without confirmation: run with --yes")
            answer = input(f"Remove {len(studies)} studies from the library {what}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing deleted")
                return 0
        problems = 0
        for s in studies:
            r = remove_study(store, s.id, settings.index_dir, delete_files=args.delete_files)
            print(f"study {s.id} removed: {len(r.removed.series_ids)} series, {len(r.removed.files)} files "
                  + (f"({r.files_deleted} deleted from disk)" if args.delete_files else "(left on disk)"))
            for f, why in r.file_errors:
                problems += 1
                print(f"  cannot delete {f}: {why}", file=sys.stderr)
    finally:
        store.close()
    return 1 if problems else 0
