"""Regenerate the README screenshots from the real application (run under Xvfb).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshots.py [--library DIR]

Opens the main window on a library (default: the configured one, e.g. the demo library made by
``casebook demo``), opens its longest CT series in the 2x2 MPR + 3D layout (docs/main-window.png),
runs *Find similar* on it and opens the best analogue side by side (docs/side-by-side.png). The
images are grabbed from the X server, which holds what OpenGL actually drew (``QWidget.grab``
does not for GL widgets).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtGui import QGuiApplication

from casebook.viewer.core.config import load_settings
from casebook.viewer.qt.app import ensure_app
from casebook.viewer.qt.icons import app_icon
from casebook.viewer.qt.theme import apply_theme

REPO = Path(__file__).resolve().parents[1]


def wait(app, cond, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            sys.exit(f"timed out waiting for {what}")
        loop = QEventLoop()
        QTimer.singleShot(50, loop.quit)
        loop.exec()


def settle(app, seconds: float = 0.8) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def grab(win, out: Path) -> None:
    screen = QGuiApplication.primaryScreen()
    g = win.frameGeometry()
    pm = screen.grabWindow(0, g.x(), g.y(), g.width(), g.height())
    if pm.isNull() or not pm.save(str(out)):
        sys.exit(f"could not grab the screen into {out}")
    print(f"wrote {out} ({pm.width()}x{pm.height()})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path, help="library folder (default: the configured one)")
    ap.add_argument("--series", type=int, help="series id to open (default: the longest CT)")
    ap.add_argument("--theme", default=None, choices=("dark", "light"))
    ap.add_argument("--out", type=Path, default=REPO / "docs")
    args = ap.parse_args(argv)
    settings = load_settings()
    if args.library:
        settings.library_dir = args.library
    app = ensure_app()
    apply_theme(app, args.theme or settings.theme)
    app.setWindowIcon(app_icon())
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.qt.main_window import MainWindow

    store = open_store(settings, create=False)
    try:
        series = store.list_series()
    finally:
        store.close()
    if args.series is None:
        cts = [s for s in series if s.modality == "CT"] or series
        if not cts:
            sys.exit(f"{settings.library_dir}: the library holds no series (run `casebook demo` first)")
        args.series = max(cts, key=lambda s: s.slice_count).id
    win = MainWindow(settings)
    win.move(0, 0)
    win.resize(1600, 980)
    win.show()
    win.refresh_library()
    win.open_stored(args.series)
    wait(app, lambda: win.state.volume is not None and win.current_series_id == args.series, 60, "the series")
    win.state.set_layout("2x2")
    ctl = win.similar_controller
    done: list[object] = []
    ctl.results_shown.connect(done.append)
    win.similar.buttons["series"].click()
    wait(app, lambda: bool(done), 60, "Find similar")
    settle(app, 2.0)
    args.out.mkdir(parents=True, exist_ok=True)
    grab(win, args.out / "main-window.png")
    resp = done[-1]
    if not getattr(resp, "hits", None):
        sys.exit(f"Find similar found nothing: {getattr(resp, 'reason', '')}")
    ctl.open_hit(resp.hits[0])
    wait(app, lambda: win.analogue_host.isVisible() and win.analogue.state.volume is not None, 60, "the analogue")
    settle(app, 2.0)
    grab(win, args.out / "side-by-side.png")
    win.close()
    for v in win.all_viewers():
        v.close_adapters()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
