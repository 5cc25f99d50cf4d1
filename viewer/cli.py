"""The ``casebook`` command.

Sub-commands live in ``casebook.viewer.commands``; each module there exposes
``register(subparsers)`` and is imported lazily so ``casebook --help`` stays fast and a broken
optional backend only breaks its own sub-command. ``casebook`` with no sub-command opens the
reading-room application.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

# Sub-command modules, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "ingest",
    "ls",
    "info",
    "audit",
    "search",
    "train_encoder",
    "model",
    "doctor",
    "embed",
    "demo",
    "gui",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="casebook",
        description="Casebook: DICOM viewer with offline similar-case search.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--library", metavar="DIR", help="library folder (overrides settings and CASEBOOK_LIBRARY)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"casebook.viewer.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # spawned decode workers in a frozen (PyInstaller) bundle
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    if args.library:
        import os

        os.environ["CASEBOOK_LIBRARY"] = args.library
    if args.command is None:
        if "gui" in COMMAND_MODULES:
            args = parser.parse_args([*(argv or sys.argv[1:]), "gui"])
        else:
            parser.print_help()
            return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
