"""Retrieval quality of Casebook's encoders on the labelled val splits (queries) against the
train splits (the "archive"), with two baselines computed in the same run: raw downsampled
pixels and a randomly initialised network of the same architecture as each learned encoder
(its ONNX weights replaced by He-initialised random values).

    .venv/bin/python benchmarks/retrieval_quality.py [--shared DIR]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from casebook.inference.embedding import embed_image
from casebook.inference.metrics import l2_normalise, retrieval_scores
from casebook.inference.preprocess import ImageInput, resample_to, slices_batch, volume_batch
from casebook.inference.registry import find_model
from casebook.inference.runtime import Encoder
from casebook.viewer.commands._console import print_table


def random_init_copy(path: Path, out: Path, seed: int = 0) -> Path:
    """Same graph and card, He-initialised random weights (what the network is before training)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind != "f":
            continue
        if a.ndim >= 2:
            fan_in = int(np.prod(a.shape[1:]))
            new = rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), a.shape)
        elif "var" in init.name or init.name.endswith("weight"):
            new = np.ones(a.shape)
        else:
            new = np.zeros(a.shape)
        init.CopyFrom(numpy_helper.from_array(new.astype(a.dtype), init.name))
    onnx.save(m, str(out))
    return out


def embed_set(enc: Encoder, images: np.ndarray, modality: str) -> np.ndarray:
    card = enc.card
    out = []
    if images.ndim == 3:  # 2D images
        img = ImageInput(images, (1.0, 1.0, 1.0), modality)
        for s in range(0, len(images), 256):
            out.append(enc.encode(slices_batch(img, card, np.arange(s, min(s + 256, len(images))))))
        return np.concatenate(out)
    for v in images:
        img = ImageInput(v, (1.0, 1.0, 1.0), modality)
        if card.is_3d:
            out.append(enc.encode(volume_batch(img, card)))
        else:
            out.append(embed_image(enc, img, max_parts=16).series[None])
    return np.concatenate(out)


def raw_pixels(images: np.ndarray, size: int) -> np.ndarray:
    dims = images.ndim - 1
    out = np.stack([resample_to(im.astype(np.float32) / 255.0, (1.0,) * dims, (size,) * dims, None).ravel() for im in images])
    out -= out.mean(1, keepdims=True)
    return l2_normalise(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("CASEBOOK_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "data")
    args = ap.parse_args()
    sets = [("pneumoniamnist_trainval.npz", "casebook-cxr2d", "XR", 16), ("adrenalmnist3d_64_trainval.npz", "casebook-adrenal3d", "", 16)]
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="cb-rq-"))
    for fname, model, modality, raw_size in sets:
        path = args.shared / "labelled" / fname
        if not path.exists():
            print(f"skip {fname}: not found under {args.shared}", file=sys.stderr)
            continue
        d = np.load(path)
        tx, ty = d["train_images"], d["train_labels"].ravel()
        vx, vy = d["val_images"], d["val_labels"].ravel()
        prior = max(np.mean(vy), 1 - np.mean(vy))
        cands = {
            f"raw pixels {raw_size}^{vx.ndim - 1}": None,
            f"{model} random init": Encoder(random_init_copy(find_model(model).path, tmp / f"{model}-random.onnx"), device="cpu"),
            "casebook-baseline": Encoder(find_model("casebook-baseline").path),
            model: Encoder(find_model(model).path),
        }
        for name, enc in cands.items():
            t0 = time.perf_counter()
            if enc is None:
                qe, de = raw_pixels(vx, raw_size), raw_pixels(tx, raw_size)
            else:
                qe, de = embed_set(enc, vx, modality), embed_set(enc, tx, modality)
            s = retrieval_scores(qe, vy, de, ty, k=10)
            rows.append([fname.split("_")[0], name, f"{s.map_at_k:.3f}", f"{s.p_at_1:.3f}", f"{s.p_at_k:.3f}",
                         f"{prior:.3f}", f"{time.perf_counter() - t0:.1f}"])
            print(f"done {fname} {name}", file=sys.stderr)
    print("val split queries vs train split archive (cosine k-NN, k=10); 'majority' = P@k of always answering the majority class")
    print_table(["set", "encoder", "mAP@10", "P@1", "P@10", "majority", "seconds"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
