"""Background work on a QThreadPool: loading series, importing folders, searching.

Workers report through Qt signals (queued to the UI thread), take a CancelToken, and never touch
widgets. The work itself is headless (``casebook.viewer.core.services``); a worker only runs it
and forwards progress, previews, results, cancellation and errors. Any :class:`CasebookError`
(DICOM, index, query, inference) is a message for the reader; :class:`Cancelled` is not an
error; anything else is a bug, logged with its trace.
"""
from __future__ import annotations

import threading
import logging
import traceback
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from casebook.common.errors import Cancelled, CasebookError
from casebook.common.progress import CancelToken

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
        self.done = threading.Event()  # set just before ``finished``: a late listener can still tell
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
            log.info("background task stopped: %s", type(exc).__name__)  # the message may name files
            self.signals.failed.emit(str(exc))
        except Exception as exc:  # noqa: BLE001 - report anything to the reader, log the trace
            log.error("background task failed: %s\n%s", exc, traceback.format_exc())
            self.signals.failed.emit(f"{type(exc).__name__}: {exc}")
        else:
            self.signals.result.emit(out)
        finally:
            self.done.set()
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
    """Open the main stack of ``path`` (or the one named ``stack_key``), middle slice first."""
    from casebook.viewer.core.services.loading import folder_stack, load_with_preview

    stack = folder_stack(path, stack_key=stack_key, cancel=cancel)
    return load_with_preview(stack, on_preview=preview_emitter(signals), progress=progress, cancel=cancel), stack


def preview_emitter(signals: WorkerSignals):
    """``on_preview`` for :func:`~casebook.viewer.core.services.loading.load_with_preview`: the
    one-slice volume goes to the UI thread as ``(volume, stack)``."""
    return lambda vol, stack: signals.preview.emit((vol, stack))
