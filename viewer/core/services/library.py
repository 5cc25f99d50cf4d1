"""The library: where the case store lives, opening it, and loading a stored series back.

The GUI, the encoder job and the CLI all go through here so they agree on the location
(``settings.database_path``, overridable with ``casebook --library`` / ``CASEBOOK_LIBRARY``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from casebook.index.case_store import CaseStore
from casebook.index.errors import UnknownItemError

from ..config import Settings, load_settings
from ..dicom.load import load_volume
from ..dicom.scan import scan as scan_files
from ..dicom.stack import SeriesStack, main_stack
from ..dicom.volume import Volume
from ..errors import CasebookError
from ..lru import LRUCache
from ..progress import ProgressCallback, SupportsCancel

log = logging.getLogger(__name__)


class SeriesFilesMissing(CasebookError):
    """The files of a stored series are no longer where they were ingested from."""


class LibraryMissing(CasebookError):
    """No case store at the library location: commands that only read refuse rather than create
    an empty library somewhere the user did not mean."""


def require_library(settings: Settings) -> None:
    """Raise :class:`LibraryMissing` (naming the place) when the library has no case store yet."""
    if not settings.database_path.exists():
        raise LibraryMissing(f"no library at {settings.library_dir} (no {settings.database_path.name}): "
                             "create one with `casebook ingest PATH` or `casebook demo`, or choose another "
                             "with --library DIR")


def open_store(settings: Settings | None = None, *, create: bool = True) -> CaseStore:
    """The library's case store (created and migrated as needed; with ``create=False`` a missing
    one is :class:`LibraryMissing`)."""
    settings = settings or load_settings()
    if not create:
        require_library(settings)
    return CaseStore.open(settings.database_path, create=create)


def stack_for_series(store: CaseStore, series_id: int, *, progress: ProgressCallback | None = None,
                     cancel: SupportsCancel | None = None, cache: StackCache | None = None) -> SeriesStack:
    """Re-read the headers of a stored series' files and return its stack, ready for ``load_volume``.

    Headers are read again rather than rebuilt from the database so that the loader always sees
    exactly what is on disk now. With ``cache``, a stack read before is reused while every one of
    its files has the same size and modification time (a stat per file instead of a header read:
    the result cards of a search need a dozen stacks within a second).
    """
    info = store.get_series(series_id)
    files = sorted({f.path for f in store.series_files(series_id)})
    if cache is None:
        return stack_from_files(series_id, info.key, info.series_uid, files, progress=progress, cancel=cancel)
    key, sig = (str(getattr(store, "path", id(store))), int(series_id)), _stat_signature(files)
    kept = cache.get(key)
    if kept is not None and kept[0] == sig:
        return kept[1]
    stack = stack_from_files(series_id, info.key, info.series_uid, files, progress=progress, cancel=cancel)
    cache.put(key, (sig, stack))
    return stack


#: (store, series id) -> (the stat of its files when read, the stack); see :func:`stack_for_series`.
StackCache = LRUCache[tuple[str, int], tuple[tuple[tuple[str, int, int], ...], SeriesStack]]


def _stat_signature(files: list[str]) -> tuple[tuple[str, int, int], ...]:
    out = []
    for f in files:
        try:
            st = os.stat(f)
            out.append((f, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((f, -1, -1))  # missing now: a file coming back changes the signature
    return tuple(out)


def stack_from_files(series_id: int, key: str, series_uid: str, files: list[str], *,
                     progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None) -> SeriesStack:
    """The stack ``key`` of a stored series from its files' headers as they are now, without the
    store: what a worker of a distributed ingest loads (:mod:`.distributed`)."""
    present = [f for f in files if os.path.exists(f)]
    if not present:
        raise SeriesFilesMissing(f"series {series_id}: none of its {len(files)} files is where it was ingested "
                                 f"from (first: {files[0] if files else '?'})")
    result = scan_files(present, progress=progress, cancel=cancel)
    gone = len(files) - len(present)
    if gone:  # shown with the volume (status bar, geometry report) and by `casebook check`
        first = next(f for f in files if f not in set(present))
        log.warning("series %d: %d of its %d stored files are missing from disk", series_id, gone, len(files))
    for stack in result.stacks:
        if stack.key == key:
            if gone:
                stack.extra["missing_files"] = (f"{gone} of {len(files)} stored files missing from disk "
                                                f"(first: {first}; see `casebook check`)")
            return stack
    same = [s for s in result.stacks if s.series_uid == series_uid]
    if not same:
        reasons = "; ".join(f"{p.path}: {p.reason}" for p in result.problems[:3])
        raise SeriesFilesMissing(f"series {series_id}: its files no longer hold the series ({reasons})")
    return main_stack(same) or same[0]  # the one rule for "the main stack" (dicom.stack)


def load_stored_volume(store: CaseStore, series_id: int, *, progress: ProgressCallback | None = None,
                       cancel: SupportsCancel | None = None, stacks: StackCache | None = None) -> Volume:
    """Decode a stored series into a Volume (``stacks``: see :func:`stack_for_series`)."""
    stack = stack_for_series(store, series_id, cancel=cancel, cache=stacks)
    return load_volume(stack, progress=progress, cancel=cancel)


def library_files(settings: Settings) -> list[tuple[str, Path, int]]:
    """(what, path, bytes) of everything the library folder holds, for ``casebook info``."""
    out: list[tuple[str, Path, int]] = []
    db = settings.database_path
    for suffix, what in (("", "case store"), ("-wal", "write-ahead log"), ("-shm", "shared memory")):
        p = Path(str(db) + suffix)
        if p.exists():
            out.append((what, p, p.stat().st_size))
    for folder, what in ((settings.index_dir, "vector index"), (settings.models_dir, "model")):
        if folder.is_dir():
            for p in sorted(folder.iterdir()):
                if p.is_file():
                    out.append((what, p, p.stat().st_size))
    if settings.library_dir.is_dir():
        for p in sorted(settings.library_dir.glob(db.name + ".schema-*.bak")):
            out.append(("backup before migration", p, p.stat().st_size))
    return out


__all__ = ["LibraryMissing", "require_library", "open_store", "stack_for_series", "stack_from_files", "load_stored_volume", "library_files", "SeriesFilesMissing",
           "UnknownItemError"]
