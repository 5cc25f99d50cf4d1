"""Regenerate the README screenshots from the real application (run under Xvfb).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshots.py [--library DIR]

Opens the main window on a library (default: the configured one, e.g. the demo library made by
``casebook demo``):

* ``docs/main-window.png``: its longest CT series in the 2x2 MPR + 3D layout with the lesion of
  the demo phantom measured (an ellipse ROI with its HU mean/SD and area, and its diameter), and
  *Find similar* run on a box drawn around it (on the whole series where the lesion is not known);
* ``docs/side-by-side.png``: the best analogue opened side by side (equal panes, linked by
  position and physical size);
* ``docs/colour-ultrasound.png``: a colour (power Doppler) ultrasound of the library in 1x1.

The images are grabbed from the X server, which holds what OpenGL actually drew (``QWidget.grab``
does not for GL widgets).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
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


def _demo_lesion(vol) -> tuple[np.ndarray, float] | None:
    """(LPS centre in mm, diameter in mm) of the first lesion of a demo phantom study, from the
    phantom's own plan (same seed and patients as ``casebook demo``'s defaults)."""
    from casebook.viewer.core.demo.phantom import PhantomOptions, plan_library

    for patients in (20, PhantomOptions().patients):
        for plan in plan_library(PhantomOptions(patients=patients)):
            if plan.patient_id == vol.patient_id and plan.lesions and plan.region != "brain":
                les = plan.lesions[0]
                # the scanner sees the patient ``shift_mm`` away from the baseline position
                centre = np.asarray(les.centre, dtype=np.float64) + np.asarray(plan.shift_mm, dtype=np.float64)
                return centre, float(les.diameter_mm)
    return None


def measure_lesion(win) -> tuple[int, float, float, float] | None:
    """Go to the lesion, draw an ellipse ROI on it and its diameter, as a reader would; (axial
    slice, row, column, diameter in pixels) of the lesion, or None where it is not known."""
    from casebook.viewer.core.viewstate import Measurement

    st = win.state
    found = _demo_lesion(st.volume)
    if found is None:
        return None
    centre, diameter = found
    g = st.geometry
    c = g.lps_to_canon(centre)
    if np.any(c < 0) or np.any(c > np.array(g.shape) - 1):
        return None
    st.set_crosshair_canon(np.round(c))
    st.set_active_view("axial")
    k, row, col = g.canon_to_image("axial", st.crosshair_canon)
    row_mm, col_mm = g.pixel_spacing("axial")
    r_rows, r_cols = diameter / 2.0 / row_mm * 0.7, diameter / 2.0 / col_mm * 0.7  # inside the lesion
    st.add_measurement(Measurement("ellipse", "axial", int(k), (row - r_rows, col - r_cols),
                                   (row + r_rows, col + r_cols)))
    st.add_measurement(Measurement("distance", "axial", int(k), (row + r_rows * 2.2, col - diameter / 2.0 / col_mm),
                                   (row + r_rows * 2.2, col + diameter / 2.0 / col_mm)))
    st.set_zoom("axial", 2.2)
    st.set_pan("axial", (-(col - g.image_shape("axial")[1] / 2.0) * col_mm * 0.6,
                         -(row - g.image_shape("axial")[0] / 2.0) * row_mm * 0.6))
    return int(k), float(row), float(col), diameter / col_mm


def colour_ultrasound(series) -> int | None:
    """The library's ultrasound with the most colour (Doppler) pixels, if it has a colour one."""
    from casebook.viewer.core.config import load_settings
    from casebook.viewer.core.services.library import load_stored_volume, open_store

    us = [s for s in series if s.modality == "US"]
    settings = _SETTINGS[0] if _SETTINGS else load_settings()
    store = open_store(settings, create=False)
    best, best_n = None, 0
    try:
        for s in us:
            try:
                vol = load_stored_volume(store, s.id)
            except Exception:  # noqa: BLE001 - an unreadable sample is simply not chosen
                continue
            if not vol.is_color:
                continue
            v = vol.voxels.astype(np.int16)
            chroma = int((np.abs(v[..., 0] - v[..., 1]) + np.abs(v[..., 1] - v[..., 2]) > 60).sum())
            if chroma > best_n:
                best, best_n = s.id, chroma
    finally:
        store.close()
    return best


_SETTINGS: list = []


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
    _SETTINGS.append(settings)
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
    measured = measure_lesion(win)
    settle(app, 1.0)
    ctl = win.similar_controller
    done: list[object] = []
    ctl.results_shown.connect(done.append)
    if measured is not None:  # a box drawn around the lesion, as the reader does, then Find similar
        from casebook.viewer.core.viewstate import Measurement

        k, row, col, diam_px = measured
        half = diam_px * 0.65 + 2
        box = Measurement("box", "axial", k, (row - half, col - half), (row + half, col + half))
        win.state.set_search_box(box)  # what the Draw-box gesture does on release: the box stays shown
        win.viewer.box_drawn.emit(box)
    else:
        win.similar.buttons["series"].click()
    wait(app, lambda: bool(done), 60, "Find similar")
    settle(app, 2.0)
    args.out.mkdir(parents=True, exist_ok=True)
    grab(win, args.out / "main-window.png")
    resp = done[-1]
    if not getattr(resp, "hits", None):
        sys.exit(f"Find similar found nothing: {getattr(resp, 'reason', '')}")
    win.state.reset_view()  # fit again: the lesion close-up is not what the comparison shows
    ctl.open_hit(resp.hits[0])
    wait(app, lambda: win.analogue_host.isVisible() and win.analogue.state.volume is not None, 60, "the analogue")
    settle(app, 2.0)
    grab(win, args.out / "side-by-side.png")
    win.close_analogue()
    us = colour_ultrasound(series)
    if us is None:
        print("no colour ultrasound in the library: docs/colour-ultrasound.png not written", file=sys.stderr)
    else:
        win.open_stored(us)
        wait(app, lambda: win.current_series_id == us and win.state.volume is not None
             and win.state.volume.is_color, 60, "the colour ultrasound")
        settle(app, 1.5)
        grab(win, args.out / "colour-ultrasound.png")
    if measured is None:
        print("main-window.png shows no measurement (the lesion of the series is not known)", file=sys.stderr)
    win.close()
    for v in win.all_viewers():
        v.close_adapters()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
