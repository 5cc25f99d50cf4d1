"""Run a built bundle the way a reading-room PC would: copied away from the source tree, with no
project Python in sight, its files not in the page cache (a cold start), and ``--self-test``.

    python installer/try_bundle.py build/installer/dist/casebook [--json OUT] [--keep]

Needs a display (the build scripts wrap it in ``xvfb-run`` on a server). The bundle runs under
``env -i`` with only ``PATH=/usr/bin:/bin``, a throwaway ``HOME`` and the display variables: no
virtualenv on PATH, no PYTHONPATH, the current folder outside the repository. Prints every
self-test line, then the cold-start figure (process start to the first window, as the self-test
measures it) against the 5 s target. Exit status: the self-test's.

Two figures, both printed and written to ``--json``: the *cold* start (the first run, the bundle's
files just dropped from the page cache, as after an install or a reboot) and the *warm* start (the
median of ``--warm`` further starts, ``casebook self-test --window-only``, with the files cached, as
on every later start). Each comes with the CPU time (user + sys) the process spent up to its first
window and the load average at the time: on a shared machine the CPU time depends far less on the
other processes than the wall time does.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 5.0
PASSTHROUGH = ("DISPLAY", "XAUTHORITY", "WAYLAND_DISPLAY", "XDG_RUNTIME_DIR", "QT_QPA_PLATFORM")


def evict(root: Path) -> int:
    """Drop the bundle's files from the page cache (no root needed: POSIX_FADV_DONTNEED on clean
    pages), so the first start reads them from disk like the first start after an install."""
    n = 0
    if not hasattr(os, "posix_fadvise"):
        return 0
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fdatasync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            except OSError:
                pass
            finally:
                os.close(fd)
    return n


WINDOW_LINE = re.compile(r"main window shown ([0-9.]+) s after the process started \(([0-9.]+) s CPU")


def window_figures(text: str) -> tuple[float | None, float | None]:
    """(seconds to the first window, CPU seconds to it) from the self-test's ``window`` line."""
    m = WINDOW_LINE.search(text)
    return (float(m.group(1)), float(m.group(2))) if m else (None, None)


def load_text() -> str:
    return "load average %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else "load unknown"


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a fresh user session: system PATH only, a new home, the display."""
    if sys.platform == "win32":
        root = os.environ.get("SYSTEMROOT", r"C:\Windows")
        env = {"SYSTEMROOT": root, "WINDIR": root, "PATH": f"{root}\\System32;{root}",
               "USERPROFILE": str(home), "APPDATA": str(home / "AppData" / "Roaming"),
               "LOCALAPPDATA": str(home / "AppData" / "Local"), "TEMP": str(home / "Temp"),
               "TMP": str(home / "Temp")}
        for key in ("APPDATA", "LOCALAPPDATA", "TEMP"):
            Path(env[key]).mkdir(parents=True, exist_ok=True)
        return env
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    env.update({k: os.environ[k] for k in PASSTHROUGH if os.environ.get(k)})
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--keep", action="store_true", help="keep the copied bundle")
    ap.add_argument("--warm", type=int, default=3, metavar="N",
                    help="warm starts after the cold one, their median reported (default 3; 0: none)")
    args = ap.parse_args(argv)
    src = args.bundle.resolve()
    # the folder (Linux, Windows) or the macOS .app, whose program is Contents/MacOS/casebook
    exe = "casebook.exe" if sys.platform == "win32" else "Contents/MacOS/casebook" if src.suffix == ".app" else "casebook"
    if not (src / exe).is_file():
        print(f"try_bundle: {src / exe}: no such file (build the bundle first)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="casebook-bundle-try-"))
    try:
        dest = work / src.name
        t = time.perf_counter()
        shutil.copytree(src, dest, symlinks=True)
        print(f"bundle copied to {dest} ({time.perf_counter() - t:.1f} s)")
        home = work / "home"
        home.mkdir()
        n = evict(dest)
        print(f"{n} files of the copy dropped from the page cache (cold start)")
        env = clean_env(home)
        load_cold = load_text()
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(dest / exe), "--self-test"], cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            print("  | " + line, end="", flush=True)
        rc = proc.wait()
        wall = time.perf_counter() - t0
        text = "\n".join(lines)
        if rc == 0 and "frozen bundle" not in text:
            print("try_bundle: the self-test did not run from the frozen bundle", file=sys.stderr)
            rc = 1
        first, first_cpu = window_figures(text)
        warm: list[tuple[float, float]] = []
        warm_loads: list[str] = []
        for _ in range(max(args.warm, 0) if first is not None else 0):
            warm_loads.append(load_text())
            p = subprocess.run([str(dest / exe), "self-test", "--window-only"], cwd=work, env=env,
                               capture_output=True, text=True, timeout=300)
            w, c = window_figures(p.stdout)
            if p.returncode != 0 or w is None or c is None:
                print(f"try_bundle: a warm start failed (exit {p.returncode}): {(p.stdout + p.stderr)[-400:]}",
                      file=sys.stderr)
                break
            warm.append((w, c))
        figures = {"self_test_rc": rc, "self_test_wall_s": round(wall, 2), "first_window_s": first,
                   "first_window_cpu_s": first_cpu, "first_window_load": load_cold,
                   "warm_first_window_s": [w for w, _ in warm], "warm_first_window_cpu_s": [c for _, c in warm],
                   "warm_loads": warm_loads, "target_s": TARGET_S, "cores": os.cpu_count()}
        if first is not None:
            verdict = "within" if first <= TARGET_S else "OVER"
            print(f"cold start to the first window (first start, files not cached): {first:.2f} s wall, "
                  f"{first_cpu:.2f} s CPU ({verdict} the {TARGET_S:.0f} s target, {first / TARGET_S:.2f}x); "
                  f"{load_cold} on {os.cpu_count()} cores; whole self-test {wall:.1f} s, exit {rc}")
            if warm:
                mw = statistics.median(w for w, _ in warm)
                mc = statistics.median(c for _, c in warm)
                figures.update(warm_median_s=mw, warm_median_cpu_s=mc)
                verdict = "within" if mw <= TARGET_S else "OVER"
                print(f"warm start to the first window (median of {len(warm)}, files cached): {mw:.2f} s wall, "
                      f"{mc:.2f} s CPU ({verdict} the target); each: "
                      + ", ".join(f"{w:.2f} s ({c:.2f} s CPU)" for w, c in warm) + f"; {warm_loads[-1]}")
        else:
            print(f"cold start: not measured (no window line from the self-test); exit {rc}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return rc
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")


if __name__ == "__main__":
    sys.exit(main())
