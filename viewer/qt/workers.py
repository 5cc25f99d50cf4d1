"""Background work on a QThreadPool: loading series, importing folders, searching.

Workers report through Qt signals (queued to the UI thread), take a CancelToken, and never touch
widgets. Loading shows the middle slice first: the reader sees the study while the rest arrives.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from casebook.viewer.core.errors import CasebookError, Cancelled
from casebook.viewer.core.progress import CancelToken

log = logging.getLogger(__name__)


class WorkerSignals(QObject):
    progress = Signal(int, int, str)
    preview = Signal(object)      # a first Volume (one slice) while the rest loads
    result = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    finished = Signal()


class FunctionWorker(QRunnable):
    """Runs ``fn(progress=..., cancel=..., signals=...)`` off the UI thread."""

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.signals = WorkerSignals()
        self.cancel_token = CancelToken()
        self.setAutoDelete(False)  # the owner keeps it until finished: signals stay valid

    def cancel(self) -> None:
        self.cancel_token.cancel()

    def run(self) -> None:  # noqa: D401 - Qt API
        try:
            out = self.fn(*self.args, progress=self._progress, cancel=self.cancel_token,
                          signals=self.signals, **self.kwargs)
        except Cancelled:
            self.signals.cancelled.emit()
        except CasebookError as exc:
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - report anything to the reader, log the trace
            log.error("background task failed: %s\n%s", exc, traceback.format_exc())
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.result.emit(out)
        finally:
            self.signals.finished.emit()

    def _progress(self, done: int, total: int, message: str = "") -> None:
        self.signals.progress.emit(int(done), int(total), str(message))


_ACTIVE: set[FunctionWorker] = set()


def start(worker: FunctionWorker, pool: QThreadPool | None = None) -> FunctionWorker:
    """Start ``worker`` on the global pool, keeping it referenced until it finishes."""
    _ACTIVE.add(worker)
    worker.signals.finished.connect(lambda w=worker: _ACTIVE.discard(w))
    (pool or QThreadPool.globalInstance()).start(worker)
    return worker


def load_series_task(path: Path, *, progress, cancel, signals, stack_key: str | None = None):
    """Scan ``path``, show its middle slice as soon as decoded, then load the whole stack."""
    from casebook.viewer.core.dicom import load_volume, scan

    t0 = time.perf_counter()
    res = scan([path], cancel=cancel)
    stacks = [s for s in res.stacks if s.is_image and not s.is_localizer] or [s for s in res.stacks if s.is_image]
    if stack_key:
        stacks = [s for s in stacks if s.key == stack_key] or stacks
    if not stacks:
        reasons = "; ".join(f"{p.path.name}: {p.reason}" for p in res.problems[:3])
        raise CasebookError(f"{path}: no displayable image series found" + (f" ({reasons})" if reasons else ""))
    stack = max(stacks, key=lambda s: len(s.instances))
    if len(stack.instances) > 8:
        mid = dataclasses.replace(stack, instances=[stack.instances[len(stack.instances) // 2]])
        try:
            signals.preview.emit((load_volume(mid, cancel=cancel), stack))
        except CasebookError as exc:  # the preview is a courtesy; the full load reports errors
            log.info("preview slice failed: %s", exc)
    vol = load_volume(stack, progress=progress, cancel=cancel)
    log.info("loaded %d slices in %.2fs", vol.shape[0], time.perf_counter() - t0)
    return vol, stack
