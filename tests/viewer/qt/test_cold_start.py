"""The first window comes before the heavy parts: building and showing the main window loads no
case store, PACS, registration, encoder or index library, and the library is read right after the
first paint (the cold-start target of issue 14: ≤ 5 s to the first window on a 2-core PC)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.gui

# what the first window must not wait for: each costs a tenth of a second to half a second of
# imports (more from a cold disk), and none of them draws anything in an empty window
HEAVY = ("sqlalchemy", "alembic", "pydicom", "SimpleITK", "onnxruntime", "hnswlib", "pynetdicom",
         "dicomweb_client", "gdcm", "requests", "casebook.index.case_store.store",
         "casebook.viewer.core.services.pacs", "casebook.viewer.core.services.registration")

SCRIPT = r"""
import json, sys, time
from PySide6.QtWidgets import QApplication
from casebook.viewer.core.config import load_settings
from casebook.viewer.qt.main_window import MainWindow
app = QApplication(sys.argv[:1])
win = MainWindow(load_settings(), with_3d=True)
win.resize(1280, 800)
win.show()
t = time.monotonic() + 60
while win.first_exposed is None and time.monotonic() < t:
    app.processEvents()
print(json.dumps({"exposed": win.first_exposed is not None, "heavy": [m for m in HEAVY if m in sys.modules],
                  "analogue_made": win._analogue is not None}))
"""


def test_showing_the_window_loads_none_of_the_heavy_libraries(tmp_path):
    env = {**os.environ, "CASEBOOK_LIBRARY": str(tmp_path / "library"), "CASEBOOK_CONFIG": str(tmp_path / "s.toml"),
           "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    p = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + SCRIPT], env=env, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert got["exposed"], "the window never reached the screen"
    assert got["heavy"] == [], f"imported before the first window: {got['heavy']}"
    assert not got["analogue_made"]  # the hidden analogue pane's GL views wait for their first use


def test_library_opens_right_after_the_first_paint(qtbot, settings):
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.qt.main_window import MainWindow

    open_store(settings).close()  # a real (empty) library: the deferred step opens its case store
    win = MainWindow(settings, with_3d=False)
    qtbot.addWidget(win)
    win.show()
    win.open_library_when_shown()
    assert not win.library_opened  # not before the window is on the screen
    assert win.status_label.text() == "Opening the library…"
    qtbot.waitUntil(lambda: win.first_exposed is not None, timeout=30000)
    qtbot.waitUntil(lambda: win.library_opened, timeout=30000)
    assert win.status_label.text() == ""
    assert "Opening" not in win.browser.status.text()
    # once shown, asking again reads the library at once
    win.library_opened = False
    win.open_library_when_shown()
    assert win.library_opened
    # the analogue pane's viewer is made when first used, on the state that existed before
    state = win.analogue_state
    assert win.all_viewers() == [win.viewer]
    assert win.analogue.state is state and win.all_viewers() == [win.viewer, win.analogue]
    win.close()
    for v in win.all_viewers():
        v.close_adapters()


def test_self_test_window_only_reports_the_start_and_stops(tmp_path):
    """What installer/try_bundle.py repeats for its warm-start median: one step, the figure, exit 0."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path)}
    p = subprocess.run([sys.executable, "-m", "casebook.viewer.cli", "self-test", "--window-only"], env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "casebook self-test (1 step)"
    [window] = [line for line in lines if line.split()[:2] == ["ok", "window"]]
    assert "s after the process started" in window and "s CPU" in window
    assert not any(line.split()[:2] == ["ok", "library"] for line in lines)
    assert lines[-1].startswith("self-test passed: 1 step in")
