"""``casebook info``: where the library is and what it holds."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from ..core.config import config_file, load_settings
from ..core.services.library import library_files, open_store, require_library
from ._console import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="library location, size, counts, schema version, models, index files",
                              description="Show where the library lives and what it holds.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.2f} MiB"


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    db = settings.database_path
    if not db.exists():
        if args.json:
            print(json.dumps({"library": str(settings.library_dir), "database": str(db), "exists": False}))
        else:
            print(f"library: {settings.library_dir}")
            print(f"settings: {config_file()}")
        require_library(settings)  # refused like every command that reads the library (exit 2)
    store = open_store(settings, create=False)
    try:
        st = store.stats()
    finally:
        store.close()
    files = library_files(settings)
    from ..core.services.integrity import check_files

    fc = check_files(db)
    if args.json:
        out = asdict(st)
        out["stored_files_missing"] = len(fc.missing)
        out["stored_files_changed"] = len(fc.changed)
        out["models"] = [{**asdict(m), "key": m.key, "embeddings": n} for m, n in st.models]
        out["library"] = str(settings.library_dir)
        out["files"] = [{"what": w, "path": str(p), "bytes": b} for w, p, b in files]
        print(json.dumps(out, indent=1, default=str))
        return 0
    rows = [
        ["library", settings.library_dir],
        ["case store", f"{st.path} ({_mib(st.file_bytes + st.wal_bytes)})"],
        ["settings file", config_file()],
        ["schema version", st.schema_version + (" (current)" if st.schema_version == st.head_version
                                                 else f" (this Casebook: {st.head_version})")],
        ["patients / studies / series", f"{st.patients:,} / {st.studies:,} / {st.series:,}"],
        ["images / files", f"{st.instances:,} / {st.files:,}"],
        ["files skipped (remembered)", f"{st.problem_files:,}"],
        ["stored files missing / changed", f"{len(fc.missing):,} / {len(fc.changed):,}"
         + (f" ({fc.series_affected:,} series affected: run `casebook check`)" if fc.missing or fc.changed else "")],
        ["reports", f"{st.reports:,}"],
        ["tags / collections / teaching cases", f"{st.tags:,} / {st.collections:,} / {st.teaching_cases:,}"],
        ["deleted series (hidden)", f"{st.deleted_series:,}"],
    ]
    print_table(["library", "value"], rows)
    if st.series_by_modality:
        print()
        print_table(["modality", "series", "images"],
                    [[m, n, st.images_by_modality.get(m, 0)] for m, n in st.series_by_modality.items()])
    print()
    if st.models:
        print_table(["model", "dim", "input", "embeddings", "sha256", "registered"],
                    [[m.key, m.dim, m.input_kind, n, m.sha256[:12], m.created] for m, n in st.models])
    else:
        print("models: none yet (run `casebook embed`)")
    index_files = [(w, p, b) for w, p, b in files if w != "case store"]
    if index_files:
        print()
        print_table(["file", "path", "size"], [[w, p, _mib(b)] for w, p, b in index_files])
    return 0
