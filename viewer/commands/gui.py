"""``casebook gui [PATH]``: the reading-room application (also what plain ``casebook`` opens)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="open the viewer (default when no command is given)")
    p.add_argument("--library", dest="gui_library", metavar="DIR", help="library folder for this session")
    p.add_argument("path", nargs="?", type=Path, help="a DICOM folder or file to open")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from casebook.viewer.qt.app import run_gui  # late: only the GUI pays for Qt and VTK

    if getattr(args, "gui_library", None):
        os.environ["CASEBOOK_LIBRARY"] = args.gui_library

    if args.path is not None and not args.path.exists():
        print(f"casebook gui: {args.path}: no such file or folder")
        return 2
    return run_gui(args.path)
