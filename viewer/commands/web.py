"""``casebook web search|get|send``: DICOMweb (QIDO-RS, WADO-RS, STOW-RS) with a configured node."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._pacs_common import add_query_options, add_retrieve_options, print_studies, query_from, run_retrieve
from ._console import progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "web", help="DICOMweb: search (QIDO-RS), get (WADO-RS), send (STOW-RS)",
        description="Talk to the DICOMweb nodes of the nodes file (kind = \"dicomweb\"; basic or token "
                    "authentication, see the README's PACS section). `get` retrieves a study into the library "
                    "(ingested, embedded, indexed; finished by the next `get` if it stopped half-way); "
                    "`send` uploads files or folders, e.g. a de-identified teaching export.")
    sub = p.add_subparsers(dest="web_command", metavar="ACTION", required=True)
    add_query_options(sub.add_parser("search", help="QIDO-RS study (and series) search"))
    add_retrieve_options(sub.add_parser("get", help="WADO-RS a study into the library"))
    s = sub.add_parser("send", help="STOW-RS DICOM files or folders to a node")
    s.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    s.add_argument("--node", help="node name (default: the first DICOMweb node)")
    p.set_defaults(func=run, cancellable=True)


def run(args: argparse.Namespace) -> int:
    from ..core.config import load_settings
    from ..core.services import pacs
    from ..core.services.pacs import dicomweb

    settings = load_settings()
    cfg = pacs.load_config(settings)
    node = cfg.node(args.node, kind="dicomweb")
    if args.web_command == "search":
        studies = pacs.search(settings, query_from(args), node.name, cfg=cfg)
        series = {s.study_uid: dicomweb.search_series(cfg, node, s.study_uid) for s in studies} if args.series else {}
        print_studies(studies, series, args.json)
        return 0
    if args.web_command == "get":
        args.node = node.name
        return run_retrieve(args, "wado")
    files = _files(args.paths)
    with progress_bar(f"STOW-RS to {node.name}", "images") as bar:
        stored, problems = dicomweb.send(cfg, node, files, progress=bar, cancel=args.cancel)
    print(f"{stored} of {len(files)} files stored at {node.name}")
    for path, why in problems[:20]:
        print(f"  {path}: {why}", file=sys.stderr)
    return 1 if problems else 0


def _files(paths: list[Path]) -> list[Path]:
    from ..core.errors import ConfigError

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            raise ConfigError(f"{p}: no such file or folder")
    if not out:
        raise ConfigError(f"{', '.join(map(str, paths))}: no files to send")
    return out
