"""``casebook reports``: import reports (HL7 v2 ORU, DICOM SR / Encapsulated PDF, CSV/JSON
exports), list them (unmatched ones too), show a study's report and its history, link one by
hand, and edit the diagnosis vocabulary."""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

from ._console import print_table, progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    from casebook.viewer.core.services.reports.tabular import FIELDS

    p = subparsers.add_parser("reports", help="import and list reports; edit the diagnosis vocabulary",
                              description="Reports from the RIS, linked to the library's studies by Accession "
                                          "Number, then Study Instance UID, then patient ID + study date + "
                                          "modality (a weaker link, shown as such).")
    sub = p.add_subparsers(dest="reports_command", metavar="ACTION", required=True)
    columns = "\n".join(f"  {k:<15} {', '.join(v)}" for k, v in FIELDS.items())
    imp = sub.add_parser(
        "import", help="import report files and folders",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read HL7 v2 ORU^R01 files (one or more messages each), DICOM SR (Basic, Enhanced, "
                    "Comprehensive) and Encapsulated PDF files, and CSV/JSON exports; folders are walked. "
                    "Each report is stored in one transaction: a bad file, message or row is listed with the "
                    "reason (exit code 1) and the rest is imported. Importing the same reports again changes "
                    "nothing; a corrected or newer version replaces the current one, which is kept as "
                    "history. Reports whose study is not in the library yet are kept and linked when it is "
                    "ingested.",
        epilog="CSV/JSON columns (matched case-insensitively; --map FIELD=COLUMN for others):\n" + columns)
    imp.add_argument("paths", nargs="+", metavar="PATH")
    imp.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                     help="CSV/JSON: read FIELD from COLUMN (repeatable)")
    imp.add_argument("--mapping", type=Path, metavar="FILE", help="CSV/JSON: a TOML or JSON file of field = \"column\"")
    imp.add_argument("--encoding", metavar="ENC",
                     help="character set of files that do not name theirs (default UTF-8; HL7 MSH-18 wins)")
    imp.add_argument("--json", action="store_true", help="print the outcome as JSON")
    imp.set_defaults(func=run_import, cancellable=True)

    ls = sub.add_parser("list", help="list imported reports (current versions)")
    ls.add_argument("--unmatched", action="store_true", help="only reports waiting for their study")
    ls.add_argument("--weak", action="store_true", help="only reports linked by patient + date + modality")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)

    show = sub.add_parser("show", help="a study's report, its sections, diagnosis and versions")
    show.add_argument("study", metavar="STUDY", help="study id, Study Instance UID or accession number")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run_show)

    link = sub.add_parser("link", help="link an unmatched report (id from `reports list`) to a study")
    link.add_argument("report", type=int, metavar="REPORT")
    link.add_argument("study", metavar="STUDY")
    link.set_defaults(func=run_link)

    voc = sub.add_parser("vocabulary", help="list or edit the diagnosis vocabulary",
                         description="Findings and the phrases that name them: \"lung nodule\" and "
                                     "\"nodule, RUL\" count as \"pulmonary nodule\" for --diagnosis filters, "
                                     "training labels and calibration. Every report is mapped again after an edit.")
    vsub = voc.add_subparsers(dest="vocab_command", metavar="ACTION")
    vsub.add_parser("list", help="every term with its phrases")
    add = vsub.add_parser("add", help="add a term, or phrases to a term")
    add.add_argument("term")
    add.add_argument("--synonym", action="append", default=[], metavar="PHRASE")
    add.add_argument("--code", default="", metavar="SYSTEM:CODE", help="a code that names the term (e.g. SCT:…)")
    rm = vsub.add_parser("remove", help="remove a term and its phrases")
    rm.add_argument("term")
    rs = vsub.add_parser("remove-synonym", help="remove one phrase")
    rs.add_argument("phrase")
    mp = vsub.add_parser("map", help="show which term a text maps to")
    mp.add_argument("text")
    voc.set_defaults(func=run_vocabulary)


def _store():
    from casebook.viewer.core.config import load_settings
    from casebook.viewer.core.services.library import open_store

    return open_store(load_settings(), create=False)


def run_import(args: argparse.Namespace) -> int:
    from casebook.viewer.core.services.reports import import_reports, load_mapping

    mapping = load_mapping(args.mapping, args.map)
    store = _store()
    try:
        with progress_bar("reports", unit="files") as bar:
            rep = import_reports(store, args.paths, mapping=mapping, encoding=args.encoding, progress=bar,
                                 cancel=args.cancel)
        counts = store.report_document_counts()
    finally:
        store.close()
    if args.json:
        print(json.dumps({k: v for k, v in asdict(rep).items() if k != "outcomes"} | {"library": counts},
                         indent=1, default=str))
    else:
        print(f"{rep.files} files: {rep.new} new reports, {rep.amended} amended, {rep.older} older versions kept "
              f"as history, {rep.duplicate} already imported; linked {rep.linked} (+{rep.weak} by patient + date + "
              f"modality only), {rep.unmatched} waiting for their study; {rep.linked_later} earlier report(s) "
              f"linked now")
        print(f"library: {counts['linked']} reports linked, {counts['weak']} weakly linked, {counts['unmatched']} "
              f"unmatched, {counts['history']} older versions")
        for place, why in rep.errors:
            print(f"  {why if why.startswith(place) else place + ': ' + why}", file=sys.stderr)
    return 1 if rep.errors else 0


def run_list(args: argparse.Namespace) -> int:
    store = _store()
    try:
        docs = store.report_documents(unmatched=args.unmatched, current_only=True)
    finally:
        store.close()
    if args.weak:
        docs = [d for d in docs if d.link_method == "patient_date_modality"]
    if args.json:
        print(json.dumps([asdict(d) | {"link_strength": d.link_strength} for d in docs], indent=1, default=str))
        return 0
    if not docs:
        print("no reports" + (" waiting for their study" if args.unmatched else ""))
        return 0
    link_text = {"accession": "accession", "study_uid": "study UID", "patient_date_modality": "patient+date (weak)",
                 "manual": "by hand", "": "UNMATCHED"}
    # the issuer of the report's patient ID, when any report names one: a report waits for a study
    # of its own hospital (an accession or MRN another issuer also uses is not its study)
    issuers = any(d.patient_issuer for d in docs)
    print_table(["report", "source", "status", "accession", *(["issuer"] if issuers else []), "date", "modality",
                 "study", "linked by", "diagnosis"],
                [(d.id, d.source_kind, d.status, d.accession_number, *([d.patient_issuer] if issuers else []),
                  d.study_date or "", d.modality, d.study_id or "", link_text.get(d.link_method, d.link_method),
                  d.diagnosis[:50]) for d in docs])
    return 0


def run_show(args: argparse.Namespace) -> int:
    from casebook.viewer.core.services.reports.study_edit import resolve_study

    store = _store()
    try:
        st = resolve_study(store, args.study)
        rep = store.get_report(st.id)
        labels = store.study_labels(st.id)
        versions = store.report_documents(study_id=st.id)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"study": st.id, "report": asdict(rep) if rep else None, "labels": asdict(labels),
                          "versions": [asdict(v) for v in versions]}, indent=1, default=str))
        return 0
    print(f"study {st.id}  {st.study_date or ''}  {', '.join(st.modalities)}  {st.description}")
    if rep is None:
        print("no report")
    else:
        for title, text in (("History", rep.history), ("Technique", rep.technique), ("Findings", rep.findings),
                            ("Impression", rep.impression)):
            if text:
                print(f"\n{title}:\n{text}")
        src = f" ({rep.diagnosis_source}" + (f", {rep.diagnosis_code}" if rep.diagnosis_code else "") + ")"
        print(f"\nDiagnosis: {rep.diagnosis or '-'}{src if rep.diagnosis else ''}"
              + (f"  → finding: {rep.finding}" if rep.finding else ""))
        if rep.note:
            print(f"Note: {rep.note}")
    if versions:
        print()
        print_table(["version", "source", "status", "report time", "current", "linked by", "file"],
                    [(v.id, v.source_kind, v.status, v.observed or "", "yes" if v.is_current else
                      f"replaced by {v.superseded_by}", v.link_method, Path(v.source_path).name) for v in versions])
    return 0


def run_link(args: argparse.Namespace) -> int:
    from casebook.viewer.core.services.reports.study_edit import resolve_study

    store = _store()
    try:
        st = resolve_study(store, args.study)
        store.link_report(args.report, st.id)
    finally:
        store.close()
    print(f"report {args.report} linked to study {st.id}")
    return 0


def run_vocabulary(args: argparse.Namespace) -> int:
    store = _store()
    try:
        cmd = args.vocab_command or "list"
        if cmd == "add":
            e = store.add_vocabulary_term(args.term, args.synonym, code=args.code)
            print(f"{e.name}: {', '.join(e.synonyms)}")
        elif cmd == "remove":
            store.remove_vocabulary_term(args.term)
            print(f"removed {args.term}")
        elif cmd == "remove-synonym":
            store.remove_synonym(args.phrase)
            print(f"removed {args.phrase}")
        elif cmd == "map":
            print(store.map_finding(args.text) or "(no term)")
        else:
            print_table(["term", "code", "phrases"],
                        [(e.name, e.code, ", ".join(e.synonyms)) for e in store.vocabulary()])
    finally:
        store.close()
    return 0
