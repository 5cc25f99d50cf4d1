"""Encoder throughput on this machine: slices/s (2D models) and volumes/s (3D models), model
only and end to end (preprocessing included), with the share of the machine's measured fp32
matmul peak that the model's own FLOPs reach.

    .venv/bin/python benchmarks/encode_throughput.py [--device cpu|cuda|auto]
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from casebook.inference.embedding import embed_image
from casebook.inference.preprocess import ImageInput
from casebook.inference.registry import list_models
from casebook.inference.runtime import Encoder, cpu_threads
from casebook.viewer.commands._console import print_table


def matmul_peak(seconds: float = 2.0) -> float:
    """Measured fp32 GFLOP/s of a large numpy matmul (BLAS on all cores): the machine's ceiling."""
    n = 1024
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = a.T.copy()
    a @ b
    t0, reps = time.perf_counter(), 0
    while time.perf_counter() - t0 < seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def model_gflop(path: str, card) -> float:
    """FLOPs of Conv/Gemm/MatMul nodes for one input, from ONNX shape inference."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = onnx.load(path)
    inp = m.graph.input[0].type.tensor_type.shape.dim[0]
    inp.ClearField("dim_param")
    inp.dim_value = 1
    m = shape_inference.infer_shapes(m)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim] for v in list(m.graph.value_info) + list(m.graph.output)}
    inits = {i.name: numpy_helper.to_array(i).shape for i in m.graph.initializer}
    total = 0.0
    for nd in m.graph.node:
        if nd.op_type == "Conv" and nd.input[1] in inits and nd.output[0] in shapes:
            w = inits[nd.input[1]]
            total += 2 * np.prod(shapes[nd.output[0]]) * np.prod(w[1:])
        elif nd.op_type in ("Gemm", "MatMul") and nd.input[1] in inits:
            total += 2 * np.prod(inits[nd.input[1]])
    return total / 1e9


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    peak = matmul_peak()
    rng = np.random.default_rng(0)
    ct = (rng.normal(0, 300, (64, 512, 512))).astype(np.float32)
    rows = []
    for info in list_models():
        enc = Encoder(info.path, device=args.device)
        card = enc.card
        batch = rng.random((32 if not card.is_3d else 8, card.channels, *card.input_size), dtype=np.float32)
        enc.encode(batch)
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < args.seconds:
            enc.encode(batch)
            n += len(batch)
        rate = n / (time.perf_counter() - t0)
        gf = model_gflop(str(enc.model_file), card)
        t0 = time.perf_counter()
        s = embed_image(enc, ImageInput(ct, (2.0, 0.7, 0.7), "CT"))
        e2e = time.perf_counter() - t0
        unit = "volumes/s" if card.is_3d else "slices/s"
        rows.append([card.ident, enc.provider.replace("ExecutionProvider", ""), f"{rate:,.0f} {unit}", f"{gf * 1000:.1f}",
                     f"{rate * gf:.1f}", f"{100 * rate * gf / peak:.1f}%", f"{e2e:.2f}s ({len(s.parts)} parts)"])
    print(f"CPU threads {cpu_threads()}; measured fp32 matmul peak {peak:.1f} GFLOP/s")
    print_table(["model", "provider", "model-only throughput", "MFLOP/input", "GFLOP/s", "of peak", "512x512x64 CT series end to end"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
