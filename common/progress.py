"""Progress reporting and cancellation for long operations.

Every long operation takes ``progress(done, total, message)`` and a cancel token. The CLI renders
progress as a bar, the GUI as a progress dialog; the core never prints. A cancel token is anything
with ``is_set()`` (a ``threading.Event`` will do), checked between units of work; when it is set
the operation raises :class:`~casebook.common.errors.Cancelled`.
"""
from __future__ import annotations

import threading
from typing import Callable, Protocol

from .errors import Cancelled

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

    def raise_if_cancelled(self, what: str = "operation") -> None:
        if self.is_set():
            raise Cancelled(f"{what} cancelled")


def check_cancel(token: SupportsCancel | None, what: str = "operation") -> None:
    """Raise :class:`Cancelled` when ``token`` is set; ``None`` never cancels."""
    if token is not None and token.is_set():
        raise Cancelled(f"{what} cancelled")
