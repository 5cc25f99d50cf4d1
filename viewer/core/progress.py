"""Progress reporting and cancellation for long operations.

Every long operation takes ``progress(done, total, message)`` and a cancel token. The CLI renders
progress as a bar, the GUI as a progress dialog; the core never prints. The cancel token is a
``threading.Event`` so that ``casebook.index`` and ``casebook.inference`` (which cannot import
the viewer) accept it as a plain event and check ``is_set()``.
"""
from __future__ import annotations

import threading
from typing import Callable, Protocol

from .errors import OperationCancelled

ProgressCallback = Callable[[int, int, str], None]


class SupportsCancel(Protocol):
    def is_set(self) -> bool: ...


def no_progress(done: int, total: int, message: str) -> None:
    """Progress sink for callers that do not want reports."""


class CancelToken(threading.Event):
    """Set from any thread to ask a running operation to stop at its next check point."""

    def cancel(self) -> None:
        self.set()

    @property
    def cancelled(self) -> bool:
        return self.is_set()

    def raise_if_cancelled(self) -> None:
        if self.is_set():
            raise OperationCancelled("operation cancelled")


def check_cancel(token: SupportsCancel | None) -> None:
    """Raise :class:`OperationCancelled` when ``token`` is set; ``None`` never cancels."""
    if token is not None and token.is_set():
        raise OperationCancelled("operation cancelled")
