"""Synchronous events of the view model, with an explicit switch for what a broken subscriber does.

In production one adapter that raises must not blank the other viewports: the error is logged at
ERROR with its traceback and the remaining subscribers still run. Under tests the same error is a
bug in the code the test drove, so strict mode re-raises it to the caller (the gesture, the
setter), where pytest and pytest-qt see it. Strict mode is on when ``set_strict(True)`` was called
or the environment has ``CASEBOOK_STRICT_EVENTS=1``.
"""
from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from typing import Any, Callable, Iterator

log = logging.getLogger(__name__)

_STRICT: bool | None = None  # None: follow CASEBOOK_STRICT_EVENTS


def set_strict(strict: bool | None) -> None:
    """Re-raise subscriber errors (``True``), log and continue (``False``), or follow the env (``None``)."""
    global _STRICT
    _STRICT = strict


def is_strict() -> bool:
    """Whether a raising subscriber propagates to the code that emitted the event."""
    if _STRICT is not None:
        return _STRICT
    return os.environ.get("CASEBOOK_STRICT_EVENTS", "").strip().lower() in ("1", "true", "yes", "on")


class EventEmitter:
    """A list of callbacks called synchronously with keyword arguments.

    Synchronous on purpose: a render adapter sees the new state before the gesture returns, and
    tests need no event loop.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._callbacks: list[Callable[..., Any]] = []
        self._blocked = 0

    def connect(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        if callback not in self._callbacks:
            self._callbacks.append(callback)
        return callback

    def disconnect(self, callback: Callable[..., Any] | None = None) -> None:
        if callback is None:
            self._callbacks.clear()
        elif callback in self._callbacks:
            self._callbacks.remove(callback)

    @property
    def callbacks(self) -> tuple[Callable[..., Any], ...]:
        return tuple(self._callbacks)

    def emit(self, **kwargs: Any) -> None:
        """Call every subscriber; a raising one is logged (and re-raised in strict mode)."""
        if self._blocked:
            return
        strict = is_strict()
        for cb in list(self._callbacks):
            try:
                cb(**kwargs)
            except Exception:
                if strict:
                    raise
                # one broken subscriber must not break the other views of the reading session
                log.exception("error in %s event handler %s", self.name, getattr(cb, "__qualname__", type(cb).__name__))

    @contextmanager
    def blocked(self) -> Iterator[None]:
        self._blocked += 1
        try:
            yield
        finally:
            self._blocked -= 1


class Events:
    """Named emitters: ``state.events.slice.connect(cb)``."""

    def __init__(self, *names: str) -> None:
        self._names = names
        for n in names:
            setattr(self, n, EventEmitter(n))

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def __iter__(self) -> Iterator[EventEmitter]:
        return (getattr(self, n) for n in self._names)


__all__ = ["EventEmitter", "Events", "is_strict", "set_strict"]
