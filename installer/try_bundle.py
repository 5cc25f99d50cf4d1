"""Run a built bundle the way a reading-room PC would: copied away from the source tree, with no
project Python in sight, its files not in the page cache (a cold start), and ``--self-test``.

    python installer/try_bundle.py build/installer/dist/casebook [--json OUT] [--keep]

Needs a display (the build scripts wrap it in ``xvfb-run`` on a server). The bundle runs under
``env -i`` with only ``PATH=/usr/bin:/bin``, a throwaway ``HOME`` and the display variables: no
virtualenv on PATH, no PYTHONPATH, the current folder outside the repository. Prints every
self-test line, then the cold-start figure (process start to the first window, as the self-test
measures it) against the 5 s target. Exit status: the self-test's.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
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
        m = re.search(r"main window shown ([0-9.]+) s after the process started", text)
        first = float(m.group(1)) if m else None
        figures = {"self_test_rc": rc, "self_test_wall_s": round(wall, 2),
                   "first_window_s": first, "target_s": TARGET_S}
        if first is not None:
            verdict = "within" if first <= TARGET_S else "OVER"
            print(f"cold start to the first window: {first:.2f} s ({verdict} the {TARGET_S:.0f} s target, "
                  f"{first / TARGET_S:.2f}x); whole self-test {wall:.1f} s, exit {rc}")
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
