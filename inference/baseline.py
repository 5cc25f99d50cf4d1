"""The training-free baseline encoder, written directly as an ONNX graph.

Multi-scale, modality-agnostic descriptors of a slice: pooled intensities on 4x4 and 8x8
grids (layout and anatomy), soft intensity histograms over the whole slice and its quadrants
(tissue mix), gradient-magnitude maps at two scales pooled on the same grids (edges, texture
coarseness) and their histograms. Each group is L2-normalised on its own so no group dominates.
No weights are learned: it works on any modality as a fallback, and is the floor every learned
encoder has to beat in ``benchmarks/retrieval_quality.py``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .card import IntensitySpec, ModelCard

NAME = "casebook-baseline"
VERSION = "1.0"
SIZE = 128
BINS = 16


def baseline_card(embedding_size: int) -> ModelCard:
    return ModelCard(
        name=NAME,
        version=VERSION,
        input_kind="2d-slice",
        input_size=(SIZE, SIZE),
        channels=1,
        embedding_size=embedding_size,
        intensity={
            "CT": IntensitySpec("window", center=-300.0, width=1600.0),
            "MR": IntensitySpec("percentile", low=1.0, high=99.0),
            "XR": IntensitySpec("range"),
            "default": IntensitySpec("percentile", low=0.5, high=99.5),
        },
        licence="Apache-2.0",
        training_data="none (hand-designed descriptors, no learned weights)",
        description="Multi-scale pooled intensities, soft intensity histograms and gradient-magnitude maps/histograms at two scales; each group L2-normalised.",
        authors="Casebook developers",
        slices_per_series=32,
    )


def build_baseline(out_path: str | Path) -> Path:
    """Write the baseline encoder ONNX (with its card) to ``out_path``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from .export import write_card

    nodes: list = []
    inits: list = []
    groups: list[tuple[str, int]] = []

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    flat_shape = const("flat_shape", np.array([0, -1], np.int64))

    def pooled(src: str, grid: int, size: int, tag: str) -> None:
        k = size // grid
        p = node("AveragePool", [src], f"{tag}_pool{grid}", kernel_shape=[k, k], strides=[k, k])
        f = node("Reshape", [p, flat_shape], f"{tag}_flat{grid}")
        groups.append((f, grid * grid))

    def histogram(src: str, lo: float, hi: float, tag: str, size: int) -> None:
        centres = np.linspace(lo, hi, BINS, dtype=np.float32).reshape(1, BINS, 1, 1)
        width = (hi - lo) / (BINS - 1)
        c = const(f"{tag}_centres", centres)
        d = node("Sub", [src, c], f"{tag}_d")
        s = node("Mul", [d, d], f"{tag}_d2")
        e = node("Mul", [s, const(f"{tag}_scale", np.array(-1.0 / (width * width), np.float32))], f"{tag}_e")
        m = node("Exp", [e], f"{tag}_m")
        g = node("GlobalAveragePool", [m], f"{tag}_hist")
        groups.append((node("Reshape", [g, flat_shape], f"{tag}_hflat"), BINS))
        q = node("AveragePool", [m], f"{tag}_qhist", kernel_shape=[size // 2] * 2, strides=[size // 2] * 2)
        groups.append((node("Reshape", [q, flat_shape], f"{tag}_qflat"), BINS * 4))

    x = "input"
    pooled(x, 4, SIZE, "int")
    pooled(x, 8, SIZE, "int")
    histogram(x, 0.0, 1.0, "int", SIZE)
    sobel_x = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float32) / 8.0
    kernels = const("sobel", np.stack([sobel_x, sobel_x.T])[:, None])
    src, size = x, SIZE
    for scale in (1, 2):
        if scale > 1:
            src = node("AveragePool", [src], f"down{scale}", kernel_shape=[2, 2], strides=[2, 2])
            size //= 2
        g = node("Conv", [src, kernels], f"grad{scale}", pads=[1, 1, 1, 1])
        g2 = node("Mul", [g, g], f"grad{scale}_sq")
        s = node("ReduceSum", [g2, const(f"axis1_{scale}", np.array([1], np.int64))], f"grad{scale}_sum", keepdims=1)
        mag = node("Sqrt", [node("Add", [s, const(f"eps{scale}", np.array(1e-8, np.float32))], f"grad{scale}_eps")], f"mag{scale}")
        pooled(mag, 4, size, f"mag{scale}")
        pooled(mag, 8, size, f"mag{scale}")
        histogram(mag, 0.0, 0.25, f"mag{scale}", size)
    normed = []
    axis = const("axis_last", np.array([1], np.int64))
    for n, (g, _) in enumerate(groups):
        l2 = node("ReduceL2", [g, axis], f"g{n}_l2", keepdims=1)
        safe = node("Max", [l2, const(f"g{n}_floor", np.array(1e-6, np.float32))], f"g{n}_safe")
        normed.append(node("Div", [g, safe], f"g{n}_n"))
    node("Concat", normed, "embedding", axis=1)
    dim = sum(d for _, d in groups)
    graph = helper.make_graph(
        nodes, "casebook_baseline",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="casebook")
    model.ir_version = 9
    onnx.checker.check_model(model)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".raw.onnx")
    onnx.save(model, str(tmp))
    try:
        write_card(tmp, baseline_card(dim), out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


__all__ = ["build_baseline", "baseline_card", "NAME", "VERSION"]
