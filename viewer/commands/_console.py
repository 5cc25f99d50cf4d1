"""Terminal rendering shared by sub-commands: a progress bar and plain tables."""
from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
import time
from typing import Iterator, Sequence, TextIO


class ProgressBar:
    """Renders ``progress(done, total, message)`` calls as one self-updating line on a TTY.

    On a non-TTY (CI logs, pipes) it prints at most one line every few seconds so logs stay short.
    """

    def __init__(self, label: str, stream: TextIO | None = None, unit: str = "files") -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.unit = unit
        self.start = time.monotonic()
        self._last = 0.0
        self._tty = self.stream.isatty()
        self._dirty = False

    def __call__(self, done: int, total: int, message: str = "") -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not finished and now - self._last < (0.1 if self._tty else 5.0):
            return
        self._last = now
        elapsed = max(now - self.start, 1e-6)
        rate = done / elapsed
        width = shutil.get_terminal_size((100, 20)).columns
        if total > 0:
            frac = min(done / total, 1.0)
            eta = (total - done) / rate if rate > 0 else 0.0
            head = f"{self.label} {done}/{total} {self.unit} {rate:,.1f}/s eta {eta:,.0f}s "
            barw = max(10, min(40, width - len(head) - 12))
            bar = "#" * int(frac * barw) + "-" * (barw - int(frac * barw))
            line = f"{head}[{bar}] {frac * 100:3.0f}%"
        else:
            line = f"{self.label} {done} {self.unit} {rate:,.1f}/s"
        if message:
            line += f" {message}"
        line = line[: width - 1]
        if self._tty:
            self.stream.write("\r" + line.ljust(width - 1))
            self._dirty = True
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty and self._dirty:
            self.stream.write("\n")
            self.stream.flush()
            self._dirty = False


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]], stream: TextIO | None = None) -> None:
    """Print an aligned plain-text table (no colours: logs and pipes stay readable)."""
    stream = stream or sys.stdout
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
        if n == 0:
            stream.write("  ".join("-" * w for w in widths) + "\n")


class PhaseBars:
    """A fresh :class:`ProgressBar` for each phase a long operation announces through its message,
    so counts, rates and ETA restart with each phase (finding files, reading headers, storing...).

    ``unit_for(message)`` names the unit of a phase; ``phase_of(message)`` folds per-item messages
    (e.g. "series 12") into one phase name.
    """

    def __init__(self, enabled: bool = True, *, unit_for=None, phase_of=None) -> None:
        self.enabled = enabled
        self.unit_for = unit_for or (lambda message: "files")
        self.phase_of = phase_of or (lambda message: message)
        self.phase: str | None = None
        self.bar: ProgressBar | None = None

    def __call__(self, done: int, total: int, message: str = "") -> None:
        if not self.enabled:
            return
        message = self.phase_of(message)
        if message != self.phase:
            self.close()
            self.phase = message
            self.bar = ProgressBar(message or "working", unit=self.unit_for(message))
        if self.bar is not None and (total or done):
            self.bar(done, total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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
