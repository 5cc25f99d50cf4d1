"""``casebook --self-test`` (also ``casebook self-test``): check that this installation works.

Opens the main window, builds a tiny library in a temporary folder, embeds, searches, renders a
slice and the 3D view, and prints one line per step (the steps: ``casebook.viewer.qt.self_test``).
Exit 0 when every step passed; 1 with ``casebook self-test: step NAME failed: why`` on stderr
otherwise; 2 when no window can be opened at all (no display). The user's library, settings and
window geometry are not touched. ``--window-only`` stops after the first step (the window and the
time from the process start to it): what ``installer/try_bundle.py`` repeats for its warm-start
median.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "self-test", help="check this installation: window, import, embed, search, 2D and 3D rendering",
        description="Open the main window, build a tiny phantom library in a temporary folder, import, "
                    "embed and index it, run Find similar, and check that a slice and the 3D view are "
                    "drawn. Prints what each step checked. Needs a display (xvfb-run -a on a server).")
    p.add_argument("--keep", type=Path, metavar="DIR",
                   help="work in DIR and keep it afterwards (the library, DICOM files) for a look")
    p.add_argument("--timeout", type=float, default=180.0, metavar="S",
                   help="give up on a step after S seconds (default 180)")
    p.add_argument("--window-only", action="store_true",
                   help="only open the main window, print the time from the process start to it, and exit "
                        "(for repeated start-up measurements: installer/try_bundle.py)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .gui import HEADLESS_HINT, display_problem

    problem = display_problem()
    if problem is not None:
        print(f"casebook self-test: {problem}; {HEADLESS_HINT}", file=sys.stderr)
        return 2
    from casebook.viewer.qt.self_test import STEPS, StepResult, run_self_test

    t0 = time.perf_counter()
    width = max(len(s) for s in STEPS)
    steps = STEPS[:1] if getattr(args, "window_only", False) else STEPS

    def show(r: StepResult) -> None:
        mark = "ok" if r.ok else "FAILED"
        print(f"{mark:>6}  {r.name:<{width}}  {r.detail}  [{r.seconds:.1f} s]", flush=True)

    print(f"casebook self-test ({len(steps)} step{'s' if len(steps) != 1 else ''})", flush=True)
    results = run_self_test(show, workdir=args.keep, keep=args.keep is not None, timeout_s=args.timeout,
                            steps=steps)
    failed = [r for r in results if not r.ok]
    if failed:
        not_run = steps[len(results):]
        if not_run:
            print(f"  not run: {', '.join(not_run)}", flush=True)
        print(f"casebook self-test: step {failed[0].name} failed: {failed[0].detail}", file=sys.stderr)
        return 1
    print(f"self-test passed: {len(results)} step{'s' if len(results) != 1 else ''} in {time.perf_counter() - t0:.1f} s",
          flush=True)
    return 0
