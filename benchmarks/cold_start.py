"""Start-up benchmark: the time from the process start to Casebook's first window, against a bare
Qt window (and optionally an older Casebook) started the same way, in one run.

* casebook: what ``casebook gui`` does (theme, icon, the main window with its four OpenGL views,
  every dock and menu, the library opened as ``run_gui`` opens it), on a real (empty) library, so
  that opening its case store costs what it costs.
* before (``--before DIR``): the same driver on another Casebook source tree, e.g. the commit
  before the start-up work: ``mkdir -p DIR/casebook && git archive 5e97063 | tar -x -C DIR/casebook``
  plus the compiled ``index/_hnswmap*.so`` copied in; it is put first on ``PYTHONPATH``.
* baseline: a bare ``QMainWindow`` from the same Python (PySide6 imported, ``QApplication`` made,
  the window shown): what no Python/Qt application starts faster than.

The figure is taken when the window's first Expose event arrives (/proc start time to then, and
the CPU time, user + sys, spent until then), the same way for all. Each is started alternately
``--repeat`` times after one discarded warm-up (files in the page cache, Python's bytecode cache
written); medians, the ratios, and the load average are printed. On a shared machine read the CPU
times: the wall times mostly measure the neighbours. The frozen bundle's cold start (its files
dropped from the page cache) is measured by ``installer/try_bundle.py``.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/cold_start.py [--repeat 5] [--before DIR] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

_PROBE = r"""
import os, sys, time
from pathlib import Path
from PySide6.QtCore import QEvent, QObject
shown = []
def since_start():
    f = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return time.clock_gettime(time.CLOCK_BOOTTIME) - int(f[19]) / os.sysconf("SC_CLK_TCK")
class Probe(QObject):
    def eventFilter(self, obj, ev):
        if ev.type() == QEvent.Type.Expose and obj.isExposed() and not shown:
            shown.append((since_start(), sum(os.times()[:2])))
        return False
"""
BASELINE = _PROBE + r"""
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1280, 800); w.show()
p = Probe(); w.windowHandle().installEventFilter(p)
while not shown:
    app.processEvents()
print(f"main window shown {shown[0][0]:.2f} s after the process started ({shown[0][1]:.2f} s CPU")
"""
CASEBOOK = _PROBE + r"""
from casebook.viewer.core.config import load_settings
from casebook.viewer.qt.app import ensure_app
from casebook.viewer.qt.icons import app_icon
from casebook.viewer.qt.main_window import MainWindow
from casebook.viewer.qt.theme import apply_theme
app = ensure_app()
settings = load_settings()
apply_theme(app, settings.theme)
app.setWindowIcon(app_icon())
win = MainWindow(settings)
win.show()
p = Probe(); win.windowHandle().installEventFilter(p)
getattr(win, "open_library_when_shown", win.refresh_library)()  # as run_gui does (before: refresh at once)
while not shown:
    app.processEvents()
print(f"main window shown {shown[0][0]:.2f} s after the process started ({shown[0][1]:.2f} s CPU")
"""
LINE = re.compile(r"main window shown ([0-9.]+) s after the process started \(([0-9.]+) s CPU")


def one(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    m = LINE.search(p.stdout)
    if p.returncode != 0 or m is None:
        raise SystemExit(f"cold_start: {' '.join(cmd[:4])} failed (exit {p.returncode}): {(p.stdout + p.stderr)[-600:]}")
    return float(m.group(1)), float(m.group(2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--before", type=Path, metavar="DIR", help="another Casebook tree (DIR/casebook) to time too")
    args = ap.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("cold_start: Linux only (/proc start times)", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="casebook-cold-start-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: .pyc cached
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"),
               CASEBOOK_LIBRARY=str(home / "library"), CASEBOOK_CONFIG=str(home / "settings.toml"))
    os.environ.update(CASEBOOK_LIBRARY=env["CASEBOOK_LIBRARY"], CASEBOOK_CONFIG=env["CASEBOOK_CONFIG"])
    from casebook.viewer.core.config import load_settings
    from casebook.viewer.core.services.library import open_store

    open_store(load_settings()).close()  # a real library: its case store is opened at start-up
    runs = {"casebook": ([sys.executable, "-c", CASEBOOK], env)}
    if args.before is not None:
        runs["before"] = ([sys.executable, "-c", CASEBOOK], {**env, "PYTHONPATH": str(args.before.resolve())})
    runs["baseline"] = ([sys.executable, "-c", BASELINE], env)
    for cmd, e in runs.values():
        one(cmd, e)  # warm-up: page cache, bytecode cache
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    loads = []
    for _ in range(args.repeat):
        loads.append(os.getloadavg())
        for name, (cmd, e) in runs.items():
            got[name].append(one(cmd, e))
    med = {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in got.items()}
    print(f"load average at the rounds: {', '.join('%.1f' % la[0] for la in loads)} (now {os.getloadavg()}); "
          f"{os.cpu_count()} cores")
    for name in runs:
        w, c = med[name]
        print(f"{name:9s} first window: median {w:.2f} s wall, {c:.2f} s CPU over {args.repeat} starts "
              f"(each: {', '.join(f'{a:.2f}/{b:.2f}' for a, b in got[name])} s wall/CPU)")
    rw, rc = med["casebook"][0] / med["baseline"][0], med["casebook"][1] / med["baseline"][1]
    print(f"Casebook / bare Qt window: {rw:.2f}x wall, {rc:.2f}x CPU; target 5 s: "
          f"{'within' if med['casebook'][0] <= 5.0 else 'OVER'} ({med['casebook'][0] / 5.0:.2f}x)")
    if "before" in med:
        print(f"before / now: {med['before'][0] / med['casebook'][0]:.2f}x wall, "
              f"{med['before'][1] / med['casebook'][1]:.2f}x CPU (> 1: now faster)")
    if args.json:
        args.json.write_text(json.dumps({"median": med, "runs": got, "loads": loads, "ratio_wall": rw,
                                         "ratio_cpu": rc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
