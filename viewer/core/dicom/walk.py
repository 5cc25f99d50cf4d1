"""The one directory walker of DICOM input: every file under a folder, in a stable order.

Hidden folders and files (".git", AppleDouble "._x", ".DS_Store") and desktop junk are skipped;
the order is sorted per folder so that scans, imports and their messages are reproducible.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

#: File names that are never DICOM (compared case-insensitively).
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini"})


def walk_files(folder: str | Path, *, skip_names: frozenset[str] = frozenset(),
               onerror: Callable[[OSError], None] | None = None) -> Iterator[Path]:
    """Yield the files under ``folder`` (sorted per folder); ``skip_names`` (case-insensitive)
    are left out too, e.g. "dicomdir" when the files are found by walking anyway."""
    skip = JUNK_NAMES | {n.lower() for n in skip_names}
    for root, dirs, names in os.walk(folder, onerror=onerror):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.lower() in skip:
                continue
            yield Path(root) / name
