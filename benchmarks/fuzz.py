"""Long-run fuzzing of the DICOM scan, load and ingest over mutated real files (issue 15).

    CASEBOOK_SHARED=/work/shared .venv/bin/python benchmarks/fuzz.py --variants 10000

Each variant is one real shared file mutated by one family of ``benchmarks/dicom_mutations.py``
(seeded: ``--seed`` and the variant's number give the same bytes again). Variants run in
long-lived child processes, one variant at a time each, through the public API a new user
would call (``scan``, then ``load_volume`` for every stack, and every ``--ingest-every``-th
variant also ``ingest`` into a library of the child's own). The child resets its peak resident
set (``/proc/self/clear_refs``) before each variant and reports the peak after it, so every
variant gets its own memory figure. Outcomes:

* ``loaded``: at least one stack decoded into a volume (bad slices listed are fine);
* ``error``: the project's own error (a ``CasebookError`` or a scan ``FileProblem``) naming the file;
* ``non_image``: the scan classed the file as a non-image object;
* ``bug``: any other exception reached the caller (a raw third-party or Python error);
* ``death``: the child process died (a native abort, a segfault, killed for memory);
* ``hung``: no answer within ``--kill-after`` seconds.

Targets (printed as PASS/FAIL at the end): no bug, death or hang; every variant under
``--max-rss-mb`` resident and ``--max-seconds`` wall time. ``--json`` writes every variant's row.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import select
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import dicom_mutations as dm  # noqa: E402


def _peak_rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


_STORE = None


def _store(store_dir: Path):  # noqa: ANN202 - one store per child, opened once (as a GUI session does)
    global _STORE
    if _STORE is None:
        from casebook.index.case_store.store import CaseStore

        _STORE = CaseStore.open(store_dir / "casebook.sqlite", create=True)
    return _STORE


def run_variant(path: Path, store_dir: Path | None) -> tuple[str, str]:
    """Scan, load (and optionally ingest) one file; (outcome, detail)."""
    from casebook.common.errors import CasebookError
    from casebook.viewer.core.dicom.load import load_volume
    from casebook.viewer.core.dicom.scan import scan

    try:
        res = scan([path], workers=1)
        loaded = 0
        errors: list[str] = [p.reason for p in res.problems]
        for stack in res.stacks:
            if not getattr(stack, "is_image", True):
                continue
            try:
                vol = load_volume(stack, workers=2)
                loaded += 1
                del vol
            except CasebookError as exc:
                errors.append(str(exc))
        if store_dir is not None:
            from casebook.viewer.core.services.ingest import ingest

            ingest([path], _store(store_dir), workers=1, rescan=True)
        if loaded:
            return "loaded", ""
        if errors:
            return "error", errors[0][:300]
        return "non_image", ""
    except CasebookError as exc:
        return "error", str(exc)[:300]
    except BaseException as exc:  # noqa: BLE001 - exactly what the fuzzing looks for
        import traceback

        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        return "bug", f"{type(exc).__name__} at {where}: {str(exc)[:200]}"


def child_main(corpus_json: str, work: str, ingest_every: int) -> None:
    """Child loop: one JSON task per stdin line, one JSON result per stdout line."""
    files = [Path(p) for p in json.loads(corpus_json)]
    cache: dict[int, bytes] = {}
    workdir = Path(work)
    store_dir = workdir / "library"
    store_dir.mkdir(parents=True, exist_ok=True)
    if ingest_every:
        _store(store_dir)  # created and migrated before the first variant's clock starts
    out = sys.stdout
    sys.stdout = sys.stderr  # nothing but results on the pipe
    from casebook.viewer.core.dicom.scan import scan  # noqa: F401 - imports paid before the clock starts

    out.write('{"ready": true}\n')
    out.flush()
    for line in sys.stdin:
        task = json.loads(line)
        i, family, seed = task["file"], task["family"], task["seed"]
        if i not in cache:
            cache[i] = dm.read_bytes(files[i])
        data = dm.mutate(cache[i], family, seed)
        target = workdir / f"v{task['n'] % 2}.dcm"
        target.write_bytes(data)
        _reset_peak()
        t0 = time.monotonic()
        outcome, detail = run_variant(target, store_dir if ingest_every and task["n"] % ingest_every == 0 else None)
        row = {**task, "outcome": outcome, "detail": detail, "seconds": round(time.monotonic() - t0, 3),
               "rss_mb": round(_peak_rss_kb() / 1024, 1), "bytes": len(data)}
        out.write(json.dumps(row) + "\n")
        out.flush()


class Child:
    def __init__(self, corpus: list[Path], work: Path, ingest_every: int, as_limit_mb: int) -> None:
        self.work = work
        env = dict(os.environ, CASEBOOK_DECODE_PROCESSES=os.environ.get("CASEBOOK_DECODE_PROCESSES", "2"))
        limit = as_limit_mb << 20

        def limits() -> None:  # a runaway variant must not take the shared machine down with it
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps([str(p) for p in corpus]), str(work), str(ingest_every)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
            bufsize=1, preexec_fn=limits)
        self.task: dict | None = None
        self.started = 0.0
        ready, _, _ = select.select([self.proc.stdout], [], [], 600)  # start-up is not a variant's time
        if ready:
            self.proc.stdout.readline()  # type: ignore[union-attr]

    def send(self, task: dict) -> None:
        self.task = task
        self.started = time.monotonic()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(task) + "\n")
        self.proc.stdin.flush()

    def kill(self) -> int:
        self.proc.kill()
        return self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", type=int, default=10000)
    ap.add_argument("--files", type=int, default=30, help="real shared files to mutate")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--workers", type=int, default=2, help="child processes running variants")
    ap.add_argument("--ingest-every", type=int, default=10, help="ingest every n-th variant too (0: never)")
    ap.add_argument("--max-rss-mb", type=float, default=1024.0)
    ap.add_argument("--max-seconds", type=float, default=10.0)
    ap.add_argument("--kill-after", type=float, default=60.0)
    ap.add_argument("--as-limit-mb", type=int, default=6144, help="address-space cap of each child (safety net)")
    ap.add_argument("--json", type=Path, default=None, help="write every variant's row here")
    ap.add_argument("--rows", type=Path, default=None,
                    help="append each variant's row to this JSON-lines file as it finishes (a stopped run keeps them)")
    ap.add_argument("--summarize", type=Path, default=None, help="only print the summary of a --rows file")
    args = ap.parse_args(argv)
    if args.summarize:
        rows = [json.loads(line) for line in args.summarize.read_text().splitlines() if line.strip()]
        shared = Path(os.environ.get("CASEBOOK_SHARED", HERE.parent.parent / "shared")) / "data"
        files = dm.corpus(shared, args.files) or [Path(f"file {i}") for i in range(1 + max(r["file"] for r in rows))]
        return _summary(rows, files, sorted(dm.FAMILIES), args, 0.0, args.workers)

    shared = Path(os.environ.get("CASEBOOK_SHARED", HERE.parent.parent / "shared")) / "data"
    files = dm.corpus(shared, args.files)
    if not files:
        print(f"no shared data under {shared} (set CASEBOOK_SHARED)", file=sys.stderr)
        return 2
    families = sorted(dm.FAMILIES)
    tasks = [{"n": n, "file": n % len(files), "family": families[(n // len(files)) % len(families)],
              "seed": args.seed * 1_000_003 + n} for n in range(args.variants)]
    rows: list[dict] = []
    sink = open(args.rows, "a") if args.rows else None
    t0 = time.monotonic()
    import signal

    stop = {"now": False}
    signal.signal(signal.SIGTERM, lambda *a: stop.__setitem__("now", True))
    with tempfile.TemporaryDirectory(prefix="casebook-fuzz-") as tmp:
        children = [Child(files, Path(tmp) / f"c{i}", args.ingest_every, args.as_limit_mb)
                    for i in range(args.workers)]
        todo = list(reversed(tasks))
        if args.rows and args.rows.exists():  # resume: skip what a stopped run already did
            done_n = {json.loads(line)["n"] for line in args.rows.read_text().splitlines() if line.strip()}
            todo = [t for t in todo if t["n"] not in done_n]
        for c in children:
            if todo:
                c.send(todo.pop())
        while any(c.task is not None for c in children):
            busy = [c for c in children if c.task is not None]
            ready, _, _ = select.select([c.proc.stdout for c in busy], [], [], 1.0)
            now = time.monotonic()
            for i, c in enumerate(children):
                if c.task is None:
                    continue
                line = None
                if c.proc.stdout in ready:
                    line = c.proc.stdout.readline()  # type: ignore[union-attr]
                    if not line:  # the child died with this variant
                        rc = c.proc.wait()
                        rows.append({**c.task, "outcome": "death", "detail": f"exit status {rc}",
                                     "seconds": round(now - c.started, 3), "rss_mb": None})
                elif now - c.started > args.kill_after:
                    c.kill()
                    rows.append({**c.task, "outcome": "hung", "detail": f"killed after {args.kill_after:g} s",
                                 "seconds": round(now - c.started, 3), "rss_mb": None})
                else:
                    continue
                if line:
                    rows.append(json.loads(line))
                if sink is not None:
                    sink.write(json.dumps(rows[-1]) + "\n")
                    sink.flush()
                else:
                    children[i] = c = Child(files, c.work, args.ingest_every, args.as_limit_mb)
                c.task = None
                if todo and not stop["now"]:
                    c.send(todo.pop())
                done = len(rows)
                if done % 500 == 0:
                    print(f"  {done}/{len(tasks)} variants, {time.monotonic() - t0:.0f} s", file=sys.stderr)
        for c in children:
            if c.proc.stdin:
                c.proc.stdin.close()
            c.proc.wait(timeout=30)
    elapsed = time.monotonic() - t0
    if args.json:
        args.json.write_text(json.dumps({"files": [str(f) for f in files], "rows": rows}, indent=0))
    if sink is not None:
        sink.close()
        rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    return _summary(rows, files, families, args, elapsed, args.workers)


def _summary(rows: list[dict], files: list[Path], families: list[str], args: argparse.Namespace, elapsed: float,
             workers: int) -> int:
    outcomes = Counter(r["outcome"] for r in rows)
    rss = [r["rss_mb"] for r in rows if r.get("rss_mb") is not None]
    secs = [r["seconds"] for r in rows]
    over_rss = [r for r in rows if (r.get("rss_mb") or 0) > args.max_rss_mb]
    over_time = [r for r in rows if r["seconds"] > args.max_seconds]
    print(f"fuzz: {len(rows)} variants of {len(files)} real files, {len(families)} mutation families, "
          f"{workers} children" + (f", {elapsed:.0f} s ({len(rows) / max(elapsed, 1e-9):.1f} variants/s)"
                                   if elapsed else ""))
    for k in ("loaded", "error", "non_image", "bug", "death", "hung"):
        print(f"  {k:<10} {outcomes.get(k, 0):>6}")
    if rss:
        print(f"  peak RSS per variant: max {max(rss):.0f} MB, median {sorted(rss)[len(rss) // 2]:.0f} MB "
              f"(limit {args.max_rss_mb:.0f} MB, {len(over_rss)} over)")
    print(f"  wall time per variant: max {max(secs):.2f} s, median {sorted(secs)[len(secs) // 2]:.3f} s "
          f"(limit {args.max_seconds:g} s, {len(over_time)} over)")
    by_family = Counter((r["family"], r["outcome"]) for r in rows)
    for fam in families:
        parts = ", ".join(f"{o} {by_family[(fam, o)]}" for o in ("loaded", "error", "non_image", "bug", "death", "hung")
                          if by_family[(fam, o)])
        print(f"  {fam:<22} {parts}")
    failures = [r for r in rows if r["outcome"] in ("bug", "death", "hung")] + over_rss + over_time
    for r in failures[:20]:
        print(f"  FAIL {r['outcome']}: {files[r['file']].name} {r['family']} seed {r['seed']}: "
              f"{r.get('detail', '')} ({r['seconds']} s, {r.get('rss_mb')} MB)")
    ok = not failures
    print("PASS" if ok else f"FAIL ({len(failures)} variants out of bounds)")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        sys.exit(main())
