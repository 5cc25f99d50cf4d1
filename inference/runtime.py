"""The Encoder: one ONNX model under onnxruntime, on CUDA when it really works, else on the CPU.

onnxruntime-gpu lists ``CUDAExecutionProvider`` as available even on a machine without an
NVIDIA driver, and asking for it there prints a page of errors before falling back. So CUDA is
only requested when the driver reports a device, ORT's own logging is kept to errors during
session creation, and the provider actually used is read back from the session, logged once,
and exposed (``casebook doctor`` shows it).
"""
from __future__ import annotations

import functools

import ctypes
import hashlib
import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .card import ModelCard, read_card
from .errors import InferenceError, ModelSpecError
from .metrics import l2_normalise

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass(frozen=True)
class ModelProvenance:
    """What the store records next to every embedding: which model made it."""

    name: str
    version: str
    sha256: str

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}#{self.sha256[:12]}"


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cpu_threads() -> int:
    """Cores this process may use (respects affinity masks and cgroup-pinned CI runners)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return max(1, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def cuda_device_count() -> int:
    """NVIDIA devices the driver reports (0 without a driver); never raises."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        try:
            if lib.cuInit(0) != 0:
                return 0
            n = ctypes.c_int(0)
            if lib.cuDeviceGetCount(ctypes.byref(n)) != 0:
                return 0
            return int(n.value)
        except AttributeError:
            return 0
    return 0


def available_providers() -> list[str]:
    """The providers onnxruntime offers here. CUDA and TensorRT only when their provider library
    is actually beside onnxruntime: the CPU installer bundle ships onnxruntime-gpu without them
    (270 MB), and asking for CUDA there would print load errors on every PC with an NVIDIA driver."""
    import onnxruntime as ort

    found = list(ort.get_available_providers())
    capi = Path(ort.__file__).resolve().parent / "capi"
    for name, lib in ((CUDA, "cuda"), ("TensorrtExecutionProvider", "tensorrt")):
        if name in found and capi.is_dir() and not any(capi.glob(f"*onnxruntime_providers_{lib}*")):
            found.remove(name)
    return found


def choose_providers(device: str = "auto") -> tuple[list[str], str]:
    """Providers to ask for, and why (``device``: auto | cpu | cuda)."""
    if device not in ("auto", "cpu", "cuda"):
        raise InferenceError(f"device must be auto, cpu or cuda, not {device!r}")
    if device == "cpu":
        return [CPU], "CPU requested"
    has_ep = CUDA in available_providers()
    ndev = cuda_device_count() if has_ep else 0
    if has_ep and ndev > 0:
        return [CUDA, CPU], f"CUDA provider and {ndev} GPU(s) found"
    why = "onnxruntime has no CUDA provider" if not has_ep else "no NVIDIA GPU/driver found"
    if device == "cuda":
        log.warning("CUDA requested but %s; using the CPU", why)
    return [CPU], why


@functools.lru_cache(maxsize=1)
def max_ir_version() -> int:
    """The newest ONNX IR version the installed onnxruntime loads, probed once with a one-node graph.

    The ``onnx`` package may be newer than onnxruntime (onnx 1.23 saves IR 14, onnxruntime 1.31 reads
    up to 13): files Casebook writes use this version, so they always open.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    for ir in range(onnx.IR_VERSION, 6, -1):
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=ir)
        try:
            ort.InferenceSession(model.SerializeToString(), providers=[CPU])
            return ir
        except Exception:  # onnxruntime raises its own exception types
            continue
    return 7


def _load_problem(path: Path, exc: Exception) -> str:
    """onnxruntime's load error, with the fix when the file is just of a newer IR version."""
    text = " ".join(str(exc).split())
    try:
        import onnx

        ir = onnx.load(str(path), load_external_data=False).ir_version
    except Exception:
        return text
    top = max_ir_version()
    if ir > top:
        return (f"the file is ONNX IR version {ir}, this onnxruntime reads up to IR {top}; re-save it with "
                f"casebook.inference.export.write_card (it writes IR {top}) ({text})")
    return text


class Encoder:
    """Runs one encoder model; ``encode`` takes a model-ready batch and returns unit vectors."""

    def __init__(self, path: str | Path, device: str = "auto", threads: int = 0, batch_size: int = 0) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise ModelSpecError(f"{self.path}: model file not found")
        self.card: ModelCard = read_card(self.path)
        self.sha256 = file_sha256(self.path)
        providers, self.provider_reason = choose_providers(device)
        model_file = self.path
        fp16 = self.path.with_name(self.path.stem + ".fp16.onnx")
        if CUDA in providers and fp16.is_file():
            model_file = fp16
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3  # errors only: no fallback warnings spam on CUDA-less machines
        self.threads = threads or cpu_threads()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(str(model_file), sess_options=so, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            if CUDA in providers:
                log.warning("CUDA session for %s failed (%s); using the CPU", self.path.name, str(exc).splitlines()[0])
                model_file = self.path
                self.session = ort.InferenceSession(str(model_file), sess_options=so, providers=[CPU])
                self.provider_reason = "CUDA session creation failed"
            else:
                raise ModelSpecError(f"{self.path}: onnxruntime cannot load the model: {_load_problem(self.path, exc)}") from exc
        self.model_file = model_file
        self.provider = self.session.get_providers()[0]
        if CUDA in providers and self.provider != CUDA:
            self.provider_reason = "CUDA libraries (CUDA runtime/cuDNN) not loadable"
            log.warning("CUDA provider could not start for %s; using the CPU", self.path.name)
        inp = self.session.get_inputs()[0]
        self._input_fp16 = inp.type == "tensor(float16)"
        self.batch_size = batch_size or (64 if self.provider == CUDA else (32 if not self.card.is_3d else 4))
        log.info("encoder %s on %s (%s; %d CPU threads)", self.card.ident, self.provider, self.provider_reason, self.threads)

    @property
    def provenance(self) -> ModelProvenance:
        return ModelProvenance(self.card.name, self.card.version, self.sha256)

    @property
    def embedding_size(self) -> int:
        return self.card.embedding_size

    def _run(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float16 if self._input_fp16 else np.float32, copy=False)
        if self.provider == CUDA:
            io = self.session.io_binding()
            io.bind_cpu_input(self.card.input_name, np.ascontiguousarray(x))
            io.bind_output(self.card.output_name, "cuda")
            self.session.run_with_iobinding(io)
            return np.asarray(io.copy_outputs_to_cpu()[0])
        return self.session.run([self.card.output_name], {self.card.input_name: np.ascontiguousarray(x)})[0]

    def encode(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, [D,] H, W) preprocessed input -> (N, embedding_size) L2-normalised float32."""
        want = (self.card.channels, *self.card.input_size)
        if batch.ndim != len(want) + 1 or tuple(batch.shape[1:]) != want:
            raise InferenceError(f"{self.card.ident}: input batch shape {batch.shape} does not match (N, {', '.join(map(str, want))})")
        out = []
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start : start + self.batch_size]
            y = np.asarray(self._run(chunk), dtype=np.float32)
            # (N, D) or (N, 1, D)-like: one row per input; anything else is the card's fault, named
            # with the shape the graph really returned (never reshaped into a misleading one)
            if y.ndim < 2 or y.shape[0] != len(chunk) or int(np.prod(y.shape[1:])) != self.card.embedding_size:
                raise ModelSpecError(f"{self.card.ident}: the model returned shape {tuple(y.shape)} for a batch of "
                                     f"{len(chunk)}; its card promises (N, {self.card.embedding_size})")
            out.append(y.reshape(len(chunk), self.card.embedding_size))
        if not out:
            return np.zeros((0, self.card.embedding_size), np.float32)
        emb = np.concatenate(out)
        if not np.isfinite(emb).all():
            raise InferenceError(f"{self.card.ident}: model produced non-finite values")
        return l2_normalise(emb)

    def describe(self) -> dict[str, Any]:
        return {"model": self.card.ident, "file": str(self.model_file), "provider": self.provider,
                "reason": self.provider_reason, "threads": self.threads, "sha256": self.sha256[:12]}


__all__ = ["max_ir_version", "Encoder", "ModelProvenance", "choose_providers", "cuda_device_count", "available_providers", "file_sha256", "cpu_threads"]
