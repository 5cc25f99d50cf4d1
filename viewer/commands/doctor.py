"""``casebook doctor``: what this machine can run and whether the library is healthy.

For hospital IT: library versions, ONNX providers available and the one actually used by the
current model, GPUs seen by the driver, and the state of the library folder and models.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import shutil
import sqlite3
import subprocess

from ._console import print_table

PACKAGES = ("numpy", "pydicom", "SimpleITK", "onnxruntime-gpu", "onnxruntime", "onnx", "hnswlib", "SQLAlchemy",
            "alembic", "PySide6", "vtk", "pylibjpeg", "python-gdcm", "torch")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("doctor", help="check versions, ONNX providers, GPU and library health")
    p.set_defaults(func=run)


def _gpus() -> str:
    exe = shutil.which("nvidia-smi")
    if exe:
        try:
            out = subprocess.run([exe, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                return "; ".join(line.strip() for line in out.stdout.splitlines())
        except (OSError, subprocess.TimeoutExpired):
            pass
    from casebook.inference.runtime import cuda_device_count

    n = cuda_device_count()
    return f"{n} CUDA device(s)" if n else "none"


def run(args: argparse.Namespace) -> int:
    from casebook.inference.errors import InferenceError
    from casebook.inference.registry import find_model, list_models
    from casebook.inference.runtime import Encoder, available_providers, cpu_threads
    from casebook.viewer.core.config import config_file, load_settings

    problems = 0
    settings = load_settings()
    print(f"Casebook {md.version('casebook') if _has('casebook') else '?'} on Python {platform.python_version()} ({platform.platform()})")
    print_table(["package", "version"], [[p, md.version(p)] for p in PACKAGES if _has(p)])
    print()
    rows = [["settings file", str(config_file()), "present" if config_file().exists() else "defaults"],
            ["library", str(settings.library_dir), "present" if settings.library_dir.is_dir() else "not created yet"]]
    db = settings.database_path
    if db.exists():
        try:
            con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            ok = con.execute("PRAGMA quick_check").fetchone()[0]
            con.close()
        except sqlite3.Error as exc:
            ok = f"ERROR {exc}"
        if ok != "ok":
            problems += 1
        rows.append(["case store", str(db), ok])
    else:
        rows.append(["case store", str(db), "not created yet"])
    rows.append(["vector index", str(settings.index_dir), "present" if settings.index_dir.is_dir() else "not built yet"])
    print_table(["item", "path", "state"], rows)
    print()
    print(f"ONNX providers available: {', '.join(available_providers())}")
    print(f"GPU: {_gpus()}; CPU threads: {cpu_threads()}; device setting: {settings.device}")
    from casebook.index.vector_index import search_backend

    print(f"vector search: {search_backend()}")
    bad: list[str] = []
    models = list_models(settings.models_dir, bad)
    print(f"models: {', '.join(m.card.ident for m in models) or 'none'}")
    for b in bad:
        print(f"  invalid model: {b}")
        problems += 1
    try:
        enc = Encoder(find_model(settings.model, settings.models_dir).path, device=settings.device)
        d = enc.describe()
        print(f"current model {d['model']}: provider used {d['provider']} ({d['reason']})")
    except InferenceError as exc:
        print(f"current model {settings.model}: ERROR {exc}")
        problems += 1
    print("OK" if problems == 0 else f"{problems} problem(s) found")
    return 0 if problems == 0 else 1


def _has(pkg: str) -> bool:
    try:
        md.version(pkg)
        return True
    except md.PackageNotFoundError:
        return False
