"""``casebook embed``: compute embeddings of the current (or a named) model for every stored
series that lacks them. Resumable: run it again after an interruption."""
from __future__ import annotations

import argparse
import sys

from ._console import ProgressBar


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("embed", help="embed every stored series lacking embeddings for the model")
    p.add_argument("--model", help="model name or name@version (default: settings.model)")
    p.add_argument("--limit", type=int, help="embed at most this many series")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from casebook.inference.errors import InferenceError
    from casebook.viewer.core.services.embedding import embed_library

    bar = ProgressBar("embed", unit="series")
    try:
        rep = embed_library(model=args.model, progress=bar, limit=args.limit)
    except InferenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    print(f"{rep.model} on {rep.provider}: embedded {rep.done} series, {len(rep.failed)} failed, {rep.remaining} still missing")
    for sid, why in rep.failed[:20]:
        print(f"  series {sid}: {why}", file=sys.stderr)
    return 0 if not rep.failed else 1
