"""``casebook model``: list the available encoders, register your own (``model add FILE.onnx``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._console import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("model", help="list encoders or register your own ONNX encoder")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    a = sub.add_parser("add", help="validate an ONNX encoder with a Casebook model card and copy it into the library")
    a.add_argument("file", type=Path)
    a.add_argument("--replace", action="store_true", help="overwrite a different file with the same name and version")
    sub.add_parser("list", help="list built-in and registered encoders")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from casebook.inference.errors import InferenceError
    from casebook.inference.registry import add_model, list_models
    from casebook.viewer.core.config import load_settings

    settings = load_settings()
    if getattr(args, "model_command", None) == "add":
        try:
            info = add_model(args.file, settings.models_dir, replace=args.replace)
        except InferenceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        c = info.card
        print(f"registered {c.ident} ({c.input_kind} {'x'.join(map(str, c.input_size))}, {c.embedding_size}-d) at {info.path}")
        print(f"use it with: CASEBOOK_MODEL={c.name} or model = \"{c.name}\" in settings.toml")
        return 0
    problems: list[str] = []
    models = list_models(settings.models_dir, problems)
    rows = [[("* " if m.card.name == settings.model else "  ") + m.card.name, m.card.version, m.card.input_kind,
             "x".join(map(str, m.card.input_size)), m.card.embedding_size, "built-in" if m.builtin else "library",
             m.card.licence, m.sha256[:12]] for m in models]
    print_table(["model", "version", "input", "size", "dim", "source", "licence", "sha256"], rows)
    for p in problems:
        print(f"invalid: {p}", file=sys.stderr)
    return 0
