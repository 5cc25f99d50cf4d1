"""Start-up benchmark: the time from the process start to Casebook's first window, against a bare
Qt window started the same way, in one run.

* Casebook: ``python -m casebook.viewer.cli self-test --window-only`` (the main window with its
  four OpenGL views, the hidden analogue viewer, every dock and menu; the library opens right after
  the first paint). The figure is the self-test's own: /proc start time to the window's first
  expose, and the CPU time (user + sys) spent until then.
* baseline: a bare ``QMainWindow`` from the same Python (PySide6 imported, ``QApplication`` made,
  the window shown and exposed): what no Python/Qt application can start faster than.

The two are started alternately ``--repeat`` times after one discarded warm-up each (files in the
page cache, Python's bytecode cache written); medians, the ratio Casebook / baseline, and the load
average are printed. On a shared machine read the CPU times: the wall times mostly measure the
neighbours. The cold start of the frozen bundle (its files dropped from the page cache) is
measured by ``installer/try_bundle.py``.

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/cold_start.py [--repeat 5] [--json out.json]
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

BASELINE = r"""
import os, sys, time
from pathlib import Path
from PySide6.QtWidgets import QApplication, QMainWindow
app = QApplication(sys.argv[:1])
w = QMainWindow(); w.resize(1280, 800); w.show()
while w.windowHandle() is None or not w.windowHandle().isExposed():
    app.processEvents()
app.processEvents()
f = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
since = time.clock_gettime(time.CLOCK_BOOTTIME) - int(f[19]) / os.sysconf("SC_CLK_TCK")
print(f"main window shown {since:.2f} s after the process started ({sum(os.times()[:2]):.2f} s CPU")
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
    args = ap.parse_args(argv)
    if not sys.platform.startswith("linux"):
        print("cold_start: Linux only (/proc start times)", file=sys.stderr)
        return 2
    home = Path(tempfile.mkdtemp(prefix="casebook-cold-start-"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}  # as installed: .pyc cached
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "config"), XDG_DATA_HOME=str(home / "data"))
    runs = {"casebook": [sys.executable, "-m", "casebook.viewer.cli", "self-test", "--window-only"],
            "baseline": [sys.executable, "-c", BASELINE]}
    for cmd in runs.values():
        one(cmd, env)  # warm-up: page cache, bytecode cache
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in runs}
    loads = []
    for _ in range(args.repeat):
        loads.append(os.getloadavg())
        for name, cmd in runs.items():
            got[name].append(one(cmd, env))
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
    if args.json:
        args.json.write_text(json.dumps({"median": med, "runs": got, "loads": loads, "ratio_wall": rw,
                                         "ratio_cpu": rc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
