"""``casebook model``: list the available encoders, register your own (``model add FILE.onnx``)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._console import print_table


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "model", help="list encoders or register your own ONNX encoder",
        description="`casebook model list` shows the built-in encoders and those registered in the library "
                    "(* marks the one in use: `model` in settings or CASEBOOK_MODEL). `casebook model add "
                    "FILE.onnx` checks the file's Casebook model card against its graph, runs a test "
                    "inference, and copies it into <library>/models/. Write the card with "
                    "casebook.inference.export (see the README's Encoders section).")
    sub = p.add_subparsers(dest="model_command", metavar="ACTION")
    a = sub.add_parser("add", help="validate an ONNX encoder with a Casebook model card and copy it into the library",
                       description="Validate FILE.onnx (card, graph, a test inference) and copy it into the "
                                   "library's models folder as <name>-<version>.onnx.")
    a.add_argument("file", type=Path)
    a.add_argument("--replace", action="store_true",
                   help="overwrite a different file with the same name and version (refused once the library "
                        "holds embeddings made by the old file: give the new one a new version)")
    sub.add_parser("list", help="list built-in and registered encoders")
    p.set_defaults(func=run)


def _check_replace(settings, file: Path) -> None:  # noqa: ANN001
    """``--replace`` must not orphan stored embeddings: they are filed under name@version and the
    old file's hash, and would no longer match the model that replaces it."""
    from casebook.index.errors import UnknownItemError
    from casebook.inference.card import read_card
    from casebook.inference.errors import ModelSpecError
    from casebook.inference.runtime import file_sha256

    if not settings.database_path.exists():
        return
    from ..core.services.library import open_store

    card = read_card(file)
    store = open_store(settings, create=False)
    try:
        try:
            rec = store.get_model(card.ident)
        except UnknownItemError:
            return
        if rec.sha256 != file_sha256(file):
            raise ModelSpecError(
                f"{file}: the library already holds embeddings of {card.ident} made by another file "
                f"(sha256 {rec.sha256[:12]}…); they would not match this one. Give the new model a new card "
                "version (e.g. write_card with version=\"2\") and add that")
    finally:
        store.close()


def run(args: argparse.Namespace) -> int:
    from casebook.inference.registry import add_model, list_models
    from casebook.viewer.core.config import load_settings

    settings = load_settings()
    if getattr(args, "model_command", None) == "add":
        if args.replace:
            _check_replace(settings, args.file)
        info = add_model(args.file, settings.models_dir, replace=args.replace)
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
    return 0 if not problems else 1
