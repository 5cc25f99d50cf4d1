"""``casebook embed``: compute embeddings of the current (or a named) model for every stored
series that lacks them. Resumable: run it again after an interruption."""
from __future__ import annotations

import argparse
import sys

from ._console import progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed", help="embed every stored series lacking embeddings (and findings) for the model",
        description="Compute the encoder's series and per-slice (or per-slab) embeddings of every stored "
                    "series that has none for this model, or whose images changed since (content hash), and add "
                    "them to the model's vector index. Concurrent runs on one library share the work. Each "
                    "series is written in one transaction: Ctrl-C stops after the current series and "
                    "running the command again continues where it stopped. Series whose files are gone "
                    "or cannot be decoded are listed and skipped (exit code 1). The model is `model` in "
                    "settings (or CASEBOOK_MODEL); `casebook model list` shows the available ones.")
    p.add_argument("--model", help="model name or name@version (default: settings.model)")
    p.add_argument("--limit", type=int, help="embed at most this many series")
    p.add_argument("--no-regions", action="store_true",
                   help="skip the findings (regions) that box queries are matched against")
    p.set_defaults(func=run, cancellable=True)


def run(args: argparse.Namespace) -> int:
    from casebook.viewer.core.services.embedding import embed_library

    with progress_bar("embed", unit="series") as bar:
        rep = embed_library(model=args.model, progress=bar, cancel=args.cancel, limit=args.limit)
    print(f"{rep.model} on {rep.provider}: embedded {rep.done} series ({rep.reembedded} because their images "
          f"changed), {rep.unchanged} rewritten with the same pixels kept their vectors, "
          f"{rep.claimed_elsewhere} left to another embed run, {len(rep.failed)} failed, {rep.remaining} still to do")
    failed = list(rep.failed)
    if not args.no_regions:
        from casebook.viewer.core.config import load_settings
        from casebook.viewer.core.services.library import open_store
        from casebook.viewer.core.services.regions import embed_and_index_regions

        settings = load_settings()
        store = open_store(settings, create=False)
        try:
            with progress_bar("findings", unit="series") as bar:
                rr = embed_and_index_regions(store, settings.index_dir, progress=bar, cancel=args.cancel,
                                             limit=args.limit)
        finally:
            store.close()
        print(rr.text())
        failed += [(sid, f"findings: {why}") for sid, why in rr.failed]
    for sid, why in failed[:20]:
        print(f"  series {sid}: {why}", file=sys.stderr)
    return 0 if not failed else 1
