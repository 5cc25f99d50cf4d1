"""Locks: many searches or one writer inside a process, one writer per model across processes.

hnswlib is not safe when ``add_items`` and ``knn_query`` run at the same time, but concurrent
queries are; a GUI and a CLI ingest may save the same library's index at once.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:  # POSIX advisory locks serialise index writes between processes (GUI + CLI ingest)
    import fcntl
except ImportError:  # pragma: no cover - Windows: one writer per library is assumed
    fcntl = None  # type: ignore[assignment]


class ReadWriteLock:
    """Many readers or one writer; a waiting writer blocks new readers so ingest cannot starve."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                while self._writer or self._readers:
                    self._cond.wait()
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


@contextmanager
def dir_lock(lock_path: Path) -> Iterator[None]:
    """Exclusive lock on one model's index files across processes (a GUI and a CLI ingest on one
    library): file writes, the sidecar commit and the removal of stale files happen as one step,
    so no sidecar ever names a file another process has just removed."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
