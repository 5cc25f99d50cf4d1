"""Background warm-up of a just-mapped index file, stopped cleanly at interpreter shutdown.

A cold mapped index costs a random disk read per visited node; reading the file ahead once in a
thread makes the first searches fast. The threads are not daemons, so they are stopped before
the interpreter joins threads (a daemon inside C++ without the GIL could abort finalization).
"""
from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)


def warm_in_background(graph: "object", path: Path) -> None:
    """Warm a just-mapped index in a background thread (``MappedHnsw.warm``, without the GIL).

    Searching pages that are not yet cached costs a random disk read per visited node (over a
    second for the first query on a cold million-vector index), and pages cached but not yet
    mapped cost a page fault each (a few ms per query at a million vectors). Touching every page
    once, in file order, reads ahead at disk speed and maps them while the first searches already
    run. Skipped for files larger than half the RAM, which the cache could not hold anyway.
    """
    try:
        size = path.stat().st_size
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):  # pragma: no cover - no sysconf (Windows)
        size, ram = 0, 0
    if ram and size > ram // 2:
        return

    def run() -> None:
        try:
            advise = getattr(os, "posix_fadvise", None)
            if advise is not None:  # queue the whole file for read-ahead first: faster than faults alone
                try:
                    fd = os.open(path, os.O_RDONLY)
                    try:
                        advise(fd, 0, 0, os.POSIX_FADV_WILLNEED)  # releases the GIL while it submits
                    finally:
                        os.close(fd)
                except OSError as exc:  # pragma: no cover - the file went away meanwhile
                    log.debug("%s: read-ahead failed: %s", path, exc)
            if not _STOPPING.is_set():
                graph.warm()
        finally:
            with _WARMING_LOCK:
                _WARMING.discard(graph)

    # Not a daemon: a daemon thread inside warm() (GIL released) could wake up during interpreter
    # finalization and abort the process. Instead warming is stopped before threads are joined.
    with _WARMING_LOCK:
        if _STOPPING.is_set():
            return
        _WARMING.add(graph)
    threading.Thread(target=run, name=f"warm-{path.name}").start()


_STOPPING = threading.Event()
_WARMING: set = set()  # graphs being warmed (stopped at interpreter shutdown)
_WARMING_LOCK = threading.Lock()


def _stop_warming() -> None:
    _STOPPING.set()
    with _WARMING_LOCK:
        graphs = list(_WARMING)
    for graph in graphs:
        graph.stop_warm()


try:  # runs at interpreter shutdown *before* non-daemon threads are joined (concurrent.futures uses it)
    threading._register_atexit(_stop_warming)  # type: ignore[attr-defined]
except (AttributeError, RuntimeError):  # pragma: no cover - other Pythons: plain atexit (after joins)
    import atexit

    atexit.register(_stop_warming)
