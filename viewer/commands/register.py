"""``casebook register CURRENT PRIOR``: register a prior series to the current one and print the result.

The transform is stored in the case store and reused (``--recompute`` computes it again); the
reader's nudge, if any, is kept and shown.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from casebook.index.case_store import CaseStore
from casebook.index.case_store.records import StudySummary

from ..core.config import load_settings
from ..core.services.library import open_store
from ..core.services.priors import load_for_compare, registration_for, registration_message
from ..core.services.registration import RegistrationOptions
from ._console import progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "register", help="register a prior series to a current one (SimpleITK, Mattes MI) and print metric and "
                         "transform",
        description="Register series PRIOR to series CURRENT (ids from `casebook ls` or `casebook priors`): rigid by "
                    "default, affine with --affine. The 4x4 matrix maps the current series' LPS millimetres to the "
                    "prior's. The result is stored in the case store and reused next time.")
    p.add_argument("current", type=int, help="series id of the current (fixed) series")
    p.add_argument("prior", type=int, help="series id of the prior (moving) series")
    p.add_argument("--affine", action="store_true", help="affine instead of rigid")
    p.add_argument("--deformable", action="store_true", help="add a B-spline for the subtraction view")
    p.add_argument("--recompute", action="store_true", help="compute again even when one is stored")
    p.add_argument("--threads", type=int, default=None, help="threads for SimpleITK (default: all cores)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=run, cancellable=True)


def resolve_study(store: CaseStore, text: str) -> StudySummary:
    """A study by id or by Study Instance UID (the CLI's STUDY argument)."""
    t = str(text).strip()
    if t.isdigit():
        return store.get_study(int(t))
    for st in store.list_studies():
        if st.study_uid == t:
            return st
    from casebook.index.errors import UnknownItemError

    raise UnknownItemError(f"no study with id or Study Instance UID {t!r} in the library")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    store = open_store(settings, create=False)
    opt = RegistrationOptions(kind="affine" if args.affine else "rigid", deformable=args.deformable,
                              threads=args.threads)
    try:
        cur = load_for_compare(store, args.current, "current", cancel=args.cancel)
        pri = load_for_compare(store, args.prior, "prior", cancel=args.cancel)
        with progress_bar("register", unit="iterations", enabled=not args.json) as bar:
            rec, reused = registration_for(store, args.current, args.prior, current=cur, prior=pri, options=opt,
                                           recompute=args.recompute, progress=bar, cancel=args.cancel)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"current": args.current, "prior": args.prior, "kind": rec.kind, "reused": reused,
                          "metric": rec.metric, "nmi": rec.quality, "overlap": rec.overlap,
                          "iterations": rec.iterations, "seconds": rec.seconds, "software": rec.software,
                          "matrix": rec.matrix.tolist(),
                          "nudge": None if rec.nudge is None else rec.nudge.tolist(),
                          "effective": rec.effective.tolist()}, indent=1))
        return 0
    print(registration_message(rec, reused))
    print(f"metric (Mattes MI): {rec.metric:.5f}   software: {rec.software}")
    print("transform, current LPS mm -> prior LPS mm:")
    for row in rec.matrix:
        print("  " + "  ".join(f"{x:10.5f}" for x in row))
    if rec.nudge is not None:
        print("reader's nudge (applied after):")
        for row in rec.nudge:
            print("  " + "  ".join(f"{x:10.5f}" for x in row))
    r = rec.effective[:3, :3]
    angle = float(np.degrees(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))) if rec.kind == "rigid" else None
    t = rec.effective[:3, 3]
    print(f"translation ({t[0]:.2f}, {t[1]:.2f}, {t[2]:.2f}) mm" + (f", rotation {angle:.2f}°" if angle is not None else ""))
    return 0
