"""Scoring an exported encoder on labelled arrays the way the viewer would run it (numpy only).

The training loop scores checkpoints on tensors it prepared itself; what ships is an ONNX file fed
by Casebook's own preprocessing (the card's intensity rule, SimpleITK resampling). These helpers
measure that file, so the figures written into a model card and those of
``benchmarks/retrieval_quality.py`` are the same numbers from the same code.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics import l2_normalise, retrieval_scores
from ..preprocess import ImageInput, slices_batch, volume_batch


def embed_arrays(encoder: Any, images: np.ndarray, modality: str = "", batch: int = 256) -> np.ndarray:
    """L2-normalised embeddings of (N, H, W) images or (N, D, H, W) volumes (1 mm spacing assumed).

    A 2D encoder given volumes embeds each volume as the mean of up to 16 evenly spread slices
    (what :func:`casebook.inference.embedding.embed_image` does for a series).
    """
    card = encoder.card
    out = []
    if images.ndim == 3:
        img = ImageInput(images, (1.0, 1.0, 1.0), modality)
        for s in range(0, len(images), batch):
            out.append(encoder.encode(slices_batch(img, card, np.arange(s, min(s + batch, len(images))))))
        return l2_normalise(np.concatenate(out))
    from ..embedding import embed_image

    for v in images:
        img = ImageInput(v, (1.0, 1.0, 1.0), modality)
        if card.is_3d:
            out.append(encoder.encode(volume_batch(img, card)))
        else:
            out.append(embed_image(encoder, img, max_parts=16).series[None])
    return l2_normalise(np.concatenate(out))


def raw_pixel_vectors(images: np.ndarray) -> np.ndarray:
    """The floor every encoder must beat: flattened pixels in [0, 1], mean removed, L2-normalised.

    8-bit input; volumes are 2x bin-averaged first (64^3 -> 32^3) to keep the vectors in memory.
    """
    x = images.astype(np.float32) / (255.0 if images.dtype == np.uint8 else max(float(images.max()), 1e-6))
    if x.ndim == 4:
        n, d, h, w = x.shape
        x = x[:, : d // 2 * 2, : h // 2 * 2, : w // 2 * 2].reshape(n, d // 2, 2, h // 2, 2, w // 2, 2).mean(axis=(2, 4, 6))
    x = x.reshape(len(x), -1)
    return l2_normalise(x - x.mean(1, keepdims=True))


def split_figures(prefix: str, queries: np.ndarray, query_labels: np.ndarray, archive: np.ndarray,
                  archive_labels: np.ndarray) -> dict[str, float]:
    """P@1, P@5, mAP@10 and their class-balanced forms, keyed ``<prefix>_<figure>``, rounded for a card."""
    s10 = retrieval_scores(queries, query_labels, archive, archive_labels, k=10)
    s5 = retrieval_scores(queries, query_labels, archive, archive_labels, k=5)
    return {f"{prefix}_P@1": round(s10.p_at_1, 4), f"{prefix}_P@5": round(s5.p_at_k, 4),
            f"{prefix}_mAP@10": round(s10.map_at_k, 4), f"{prefix}_bal_P@1": round(s10.balanced_p_at_1, 4),
            f"{prefix}_bal_mAP@10": round(s10.balanced_map_at_k, 4)}


__all__ = ["embed_arrays", "raw_pixel_vectors", "split_figures"]
