"""``casebook doctor``: what this machine can run and whether the library is healthy.

For hospital IT: library versions, ONNX providers available and the one actually used by the
current model, GPUs seen by the driver, and the state of the library folder and models.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import importlib.metadata as md
import platform
import shutil
import sqlite3
import subprocess

from ._console import print_table

PACKAGES = ("numpy", "pydicom", "SimpleITK", "onnxruntime-gpu", "onnxruntime", "onnx", "hnswlib", "SQLAlchemy",
            "alembic", "PySide6", "vtk", "pylibjpeg", "python-gdcm", "torch")


# What onnxruntime-gpu's CUDA provider loads (CUDA 12 builds), and the pip package of each.
CUDA_LIBRARIES: tuple[tuple[str, str], ...] = (
    ("libcudart.so.12", "nvidia-cuda-runtime-cu12"),
    ("libcublas.so.12", "nvidia-cublas-cu12"),
    ("libcublasLt.so.12", "nvidia-cublas-cu12"),
    ("libcufft.so.11", "nvidia-cufft-cu12"),
    ("libcurand.so.10", "nvidia-curand-cu12"),
    ("libcudnn.so.9", "nvidia-cudnn-cu12"),
)
CUDA_DOCS = "https://onnxruntime.ai/docs/execution-providers/CUDA-ExecutionProvider.html#requirements"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "doctor", help="check versions, ONNX providers, GPU and library health",
        description="For hospital IT: installed versions, the settings file and library state (SQLite "
                    "integrity check), ONNX providers available and the one the current model really "
                    "uses, the GPU and which CUDA/cuDNN libraries onnxruntime-gpu cannot load (with the "
                    "pip packages that provide them), and the registered models. Exit code 1 when a "
                    "problem is found.")
    p.set_defaults(func=run)


def missing_cuda_libraries() -> list[tuple[str, str]]:
    """(library, pip package) of each CUDA/cuDNN library the CUDA provider needs that cannot be loaded.

    onnxruntime-gpu ships without them; they come from the NVIDIA driver's CUDA toolkit or from
    NVIDIA's pip wheels, which onnxruntime finds when they are installed in the same environment.
    """
    import ctypes

    try:  # onnxruntime >= 1.21 can load the NVIDIA pip wheels' libraries itself
        import onnxruntime as ort

        if hasattr(ort, "preload_dlls"):
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                ort.preload_dlls(directory="")
    except Exception:  # noqa: BLE001 - a failed preload is what the loop below reports
        pass
    missing = []
    for lib, pkg in CUDA_LIBRARIES:
        try:
            ctypes.CDLL(lib)
        except OSError:
            missing.append((lib, pkg))
    return missing


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
    providers = available_providers()
    print(f"ONNX providers available: {', '.join(providers)}")
    print(f"GPU: {_gpus()}; CPU threads: {cpu_threads()}; device setting: {settings.device}")
    if "CUDAExecutionProvider" in providers:
        missing = missing_cuda_libraries()
        if missing:
            pkgs = " ".join(dict.fromkeys(pkg for _, pkg in missing))
            print(f"CUDA libraries onnxruntime-gpu cannot load: {', '.join(lib for lib, _ in missing)}; encoders "
                  f"run on the CPU. To use the GPU: an NVIDIA driver, then `pip install {pkgs}` in this "
                  f"environment (or the CUDA 12 toolkit and cuDNN 9), see {CUDA_DOCS}")
            if settings.device == "cuda":
                problems += 1
        else:
            print("CUDA libraries: all found (CUDA runtime, cuBLAS, cuFFT, cuRAND, cuDNN)")
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
