"""Terminal output shared by sub-commands: progress and tables, drawn by ``rich``.

``rich`` is the ecosystem's convention for both (live multi-task progress, aligned tables), so
nothing here draws a bar or pads a column by hand. What this module adds is policy:

- progress goes to stderr, results to stdout, so ``casebook ls --json | jq`` stays clean;
- on a terminal the bars update live; on a pipe or a CI log rich draws nothing while the work
  runs and prints the finished bars once at the end (a few lines, not one per update);
- tables on a pipe are never wrapped or cut to 80 columns (paths stay whole for ``grep``) and
  carry no colour codes;
- one progress display per operation, with one task per phase ("finding files", "reading
  headers", "storing series"), each with its own count, rate and time left.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Callable, Iterator, Sequence, TextIO

from rich import box
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.table import Table

# Width a table may take on a pipe: wide enough that rows are never folded; rich only pads a
# table to its own natural width, so short tables stay short.
_PIPE_WIDTH = 4000


class _Console(Console):
    """rich's console, except that a closed pipe (``casebook ls | head``) raises BrokenPipeError
    for the CLI wrapper to end quietly with exit 0; rich itself would exit 1."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        raise BrokenPipeError


def console(stream: TextIO | None = None, *, stderr: bool = False) -> Console:
    """A rich console on ``stream`` (default: the current stdout/stderr, looked up at call time so
    redirections and test capture are honoured)."""
    file = stream or (sys.stderr if stderr else sys.stdout)
    is_tty = bool(getattr(file, "isatty", lambda: False)())
    return _Console(file=file, width=None if is_tty else _PIPE_WIDTH, highlight=False, soft_wrap=not is_tty,
                   emoji=False, markup=False)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], stream: TextIO | None = None,
                *, title: str | None = None) -> None:
    """Print an aligned table: header, a rule, one line per row (cells are plain text, no markup)."""
    out = console(stream)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=title, title_justify="left",
                  header_style="bold" if out.is_terminal else "")
    for h in headers:
        table.add_column(str(h), overflow="fold")
    for r in rows:
        table.add_row(*("" if c is None else str(c) for c in r))
    out.print(table)


class PhaseProgress:
    """``progress(done, total, message)`` drawn as one rich display with a task per phase.

    A long operation announces its phase through ``message``; each new phase gets its own task, so
    counts, rates and time left restart with it while the finished phases stay listed.
    ``unit_for(message)`` names a phase's unit, ``phase_of(message)`` folds per-item messages
    ("series 12") into one phase name. Use as a context manager (or call :meth:`close`).
    """

    def __init__(self, enabled: bool = True, *, unit_for: Callable[[str], str] | None = None,
                 phase_of: Callable[[str], str] | None = None, stream: TextIO | None = None) -> None:
        self.enabled = enabled
        self.unit_for = unit_for or (lambda message: "files")
        self.phase_of = phase_of or (lambda message: message)
        self._stream = stream
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self.phase: str | None = None
        self._lock = threading.Lock()

    def _start(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(bar_width=30), MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                console=console(self._stream, stderr=True), transient=False, redirect_stdout=False,
                redirect_stderr=False)
            self._progress.start()
        return self._progress

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        with self._lock:
            phase = self.phase_of(message) or "working"
            prog = self._start()
            if phase != self.phase or self._task is None:
                if self._task is not None:
                    self._finish_task(prog, self._task)
                self.phase = phase
                self._task = prog.add_task(phase, total=None, unit=self.unit_for(phase), rate="")
            task = prog.tasks[self._task]
            speed = task.speed
            rate = f"{speed:,.1f}/s" if speed else ""
            prog.update(self._task, completed=done, total=total if total > 0 else None, rate=rate)

    @staticmethod
    def _finish_task(prog: Progress, task_id: TaskID) -> None:
        task = prog.tasks[task_id]
        if task.total is None:  # an open-ended phase (counting files): show what it reached
            prog.update(task_id, total=task.completed)
        prog.stop_task(task_id)

    def close(self) -> None:
        with self._lock:
            if self._progress is not None:
                if self._task is not None:
                    self._finish_task(self._progress, self._task)
                self._progress.stop()
                self._progress = None
                self._task = None

    def __enter__(self) -> "PhaseProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress_bar(label: str, unit: str = "files", *, enabled: bool = True,
                 stream: TextIO | None = None) -> PhaseProgress:
    """A one-task display: every message is the same phase, named ``label``."""
    return PhaseProgress(enabled, unit_for=lambda m: unit, phase_of=lambda m: label, stream=stream)


@contextlib.contextmanager
def sigint_cancels(token: threading.Event, message: str = "stopping") -> Iterator[threading.Event]:
    """While inside, the first Ctrl-C sets ``token`` (the operation stops cleanly at its next
    check point), a second one aborts at once. Outside the main thread signals cannot be caught,
    so the token is yielded untouched."""
    if threading.current_thread() is not threading.main_thread():
        yield token
        return

    def on_sigint(signum: int, frame: object) -> None:
        if token.is_set():
            raise KeyboardInterrupt
        token.set()
        print(f"\n{message} (Ctrl-C again to abort now)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield token
    finally:
        signal.signal(signal.SIGINT, previous)
