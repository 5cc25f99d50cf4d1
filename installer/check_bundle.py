"""Check a built Casebook bundle before it ships (run by the build scripts; Linux and macOS/Windows
where the tools exist).

    python installer/check_bundle.py build/installer/dist/casebook [--json OUT]

What is checked, and why:

* **baseline x86-64 everywhere.** A reading-room PC may be ten years old. No shared object of the
  bundle may declare that it needs more than baseline x86-64 (the ELF ``x86 ISA needed`` property
  that the loader enforces); in Casebook's own compiled modules (``casebook.index._hnswmap`` and
  hnswlib, both built here) AVX/AVX-512 instructions (``ymm``/``zmm`` registers) may only appear in
  functions compiled for a target picked at run time (``dot_avx2`` behind a CPU check). hnswlib
  compiled with ``-march=native`` (its default without ``HNSWLIB_NO_NATIVE=1``) fails this.
  Third-party wheels (numpy, onnxruntime, VTK, Qt) dispatch on the CPU themselves; their counts
  are reported, not judged.
* **PySide6-Essentials only**: no file of the PySide6 add-on distributions (Addons, Pdf,
  WebEngine) is in the bundle.
* **what the application needs at run time is there**: the shipped models, presets, icons, the
  alembic migration scripts as source (alembic reads them from disk), onnxruntime's core library;
  torch is not.
* the size, in total and per component (printed; the README states it).

Exit 0 when every check passed, 1 otherwise (each failure printed).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

OWN_MODULES = ("_hnswmap", "hnswlib")
# functions of our own modules that may use AVX: compiled with __attribute__((target)), called
# only after __builtin_cpu_supports said yes (index/_hnswmap.cpp)
GUARDED = re.compile(r"\bdot_avx2\b")
ADDON_DISTS = ("pyside6_addons", "pyside6_pdf", "pyside6_webengine")


def is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def shared_objects(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and is_elf(p))


def isa_needed(path: Path) -> str:
    """The ``x86 ISA needed`` property of an ELF file ('' when it declares none)."""
    out = subprocess.run(["readelf", "-n", "--wide", str(path)], capture_output=True, text=True).stdout
    m = re.search(r"x86 ISA needed:\s*(.+)", out)
    return m.group(1).strip() if m else ""


def wide_register_functions(path: Path) -> Counter:
    """Functions of ``path`` that use ymm/zmm registers, with how many such instructions."""
    proc = subprocess.Popen(["objdump", "-d", "--no-show-raw-insn", "-C", str(path)], stdout=subprocess.PIPE,
                            text=True, errors="replace")
    found: Counter = Counter()
    fn = "?"
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.endswith(">:\n") and "<" in line:
            fn = line[line.index("<") + 1:-3]
        elif "%ymm" in line or "%zmm" in line:
            found[(fn, "zmm" if "%zmm" in line else "ymm")] += 1
    proc.wait()
    return found


def addon_files(site_packages: list[Path]) -> set[str]:
    """Paths (relative to site-packages) that PySide6's add-on distributions installed."""
    out: set[str] = set()
    for sp in site_packages:
        for dist in ADDON_DISTS:
            for rec in sp.glob(f"{dist}-*.dist-info/RECORD"):
                for line in rec.read_text(errors="replace").splitlines():
                    path = line.split(",", 1)[0]
                    if path.startswith("PySide6/"):
                        out.add(path)
    return out


def size_of(path: Path) -> int:
    if path.is_symlink():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path, help="the one-folder bundle (dist/casebook)")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    root = args.bundle.resolve()
    internal = root / "_internal" if (root / "_internal").is_dir() else root
    problems: list[str] = []
    figures: dict[str, object] = {}

    def ok(msg: str) -> None:
        print(f"    ok  {msg}")

    def bad(msg: str) -> None:
        print(f"FAILED  {msg}")
        problems.append(msg)

    # -- size -------------------------------------------------------------------------------------
    total = size_of(root)
    files = sum(1 for p in root.rglob("*") if p.is_file())
    parts = sorted(((size_of(p), p.name) for p in internal.iterdir()), reverse=True)
    figures.update(size_bytes=total, files=files, components={n: s for s, n in parts[:12]})
    print(f"bundle {root}: {total / 1e6:.0f} MB in {files} files; largest parts: "
          + ", ".join(f"{n} {s / 1e6:.0f} MB" for s, n in parts[:8]))

    # -- content ----------------------------------------------------------------------------------
    pkg = internal / "casebook"
    need = ["resources/models/casebook-baseline.onnx", "resources/presets/window_presets.json",
            "resources/presets/volume_presets.json", "resources/icons/casebook.svg",
            "index/case_store/migrations/env.py", "index/case_store/migrations/script.py.mako",
            "index/case_store/migrations/versions/0001_initial.py"]
    missing = [n for n in need if not (pkg / n).is_file()]
    if missing:
        bad("missing from the bundle: " + ", ".join(f"casebook/{n}" for n in missing))
    else:
        models = sorted(p.name for p in (pkg / "resources/models").glob("*.onnx"))
        ok(f"models ({', '.join(models)}), presets, icons and migration scripts present")
    ort = list(internal.glob("onnxruntime/capi/*onnxruntime*"))
    if not ort:
        bad("onnxruntime's core library is missing")
    providers = sorted(p.name for p in internal.glob("onnxruntime/capi/*providers*"))
    figures["onnxruntime_providers"] = providers
    ok(f"onnxruntime provider libraries: {', '.join(providers) or 'CPU provider (built into the core library)'}")
    if (internal / "torch").exists():
        bad("torch is in the bundle (training is not shipped; 750 MB)")
    if (internal / "ray").exists():
        bad("ray is in the bundle (the optional extra for archive-scale ingest is not shipped)")
    hnswmap = list(pkg.glob("index/_hnswmap*"))
    if not hnswmap:
        bad("casebook.index._hnswmap is missing (indexes would open through hnswlib's slow full load)")

    # -- Qt: essentials only ----------------------------------------------------------------------
    import site

    addons = addon_files([Path(p) for p in site.getsitepackages()])
    if addons:
        shipped = sorted(a for a in addons if (internal / a).exists())
        if shipped:
            bad(f"{len(shipped)} files of PySide6 add-ons in the bundle, e.g. {', '.join(shipped[:4])}")
        else:
            ok(f"PySide6: Essentials only (none of the {len(addons)} add-on files shipped)")
    else:
        ok("PySide6: no add-on distribution installed in the build environment")

    # -- CPU baseline -----------------------------------------------------------------------------
    if sys.platform.startswith("linux") and shutil.which("readelf") and shutil.which("objdump"):
        sos = shared_objects(internal)
        above = [(p, isa) for p in sos if (isa := isa_needed(p)) and re.search(r"v[234]|AVX|SSE4|SSSE3", isa)]
        if above:
            bad("shared objects that need more than baseline x86-64: "
                + ", ".join(f"{p.relative_to(internal)} ({isa})" for p, isa in above[:5]))
        else:
            ok(f"{len(sos)} shared objects: none declares an x86 ISA level above baseline")
        own = [p for p in sos if p.name.split(".")[0] in OWN_MODULES]
        if len(own) < 2:
            bad(f"expected both of {OWN_MODULES} among the shared objects, found {[p.name for p in own]}")
        for p in own:
            wide = wide_register_functions(p)
            unguarded = {fn: n for (fn, reg), n in wide.items() if not GUARDED.search(fn) or reg == "zmm"}
            guarded = sorted({m.group(0) for (fn, _r) in wide if (m := GUARDED.search(fn))})
            if unguarded:
                bad(f"{p.name}: AVX/AVX-512 instructions outside run-time-dispatched code (built with "
                    f"-march=native? rebuild hnswlib with HNSWLIB_NO_NATIVE=1): "
                    + ", ".join(f"{fn} ({n})" for fn, n in list(unguarded.items())[:4]))
            else:
                ok(f"{p.name}: baseline x86-64 code" + (f"; AVX2 only in {', '.join(guarded)} (picked at run time)"
                                                        if guarded else ", no AVX instructions at all"))
        figures["shared_objects"] = len(sos)
    else:
        print("  skip  CPU baseline scan (needs Linux with readelf and objdump)")

    figures["problems"] = problems
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    if problems:
        print(f"bundle check: {len(problems)} problem(s)")
        return 1
    print("bundle check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
