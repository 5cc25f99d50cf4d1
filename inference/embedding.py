"""Series, per-slice (2D models) or per-slab (3D models) and ROI embeddings.

A series gets one embedding (search "cases like this study") plus part embeddings tied to slice
indices: they serve "why similar" (which slice of the match looks like which slice of the query)
and let an ROI drawn later be matched against slices of other series. For 2D models the series
embedding is the normalised mean of its slice embeddings; for 3D models it is the embedding of
the whole volume, and the parts are overlapping slabs along the slice axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .errors import Cancelled
from .metrics import l2_normalise
from .preprocess import ImageInput, RoiBox, sample_slices, slices_batch, volume_batch
from .runtime import Encoder, ModelProvenance

Progress = Callable[[int, int, str], None]


@dataclass
class SeriesEmbedding:
    """Unit vectors of one series; ``part_slices[n]`` is the slice index (k) part ``n`` is centred on."""

    series: np.ndarray  # (E,)
    parts: np.ndarray  # (P, E)
    part_slices: np.ndarray  # (P,) int
    part_kind: str  # "slice" | "slab"
    model: ModelProvenance


def _check(cancel: Any) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("embedding cancelled")


def embed_image(encoder: Encoder, image: ImageInput, progress: Progress | None = None, cancel: Any = None,
                max_parts: int | None = None) -> SeriesEmbedding:
    """Embed a whole series (see module doc for what the parts are)."""
    card = encoder.card
    depth = image.shape[0]
    if not card.is_3d:
        idx = sample_slices(depth, max_parts or card.slices_per_series)
        chunks = [idx[i : i + 16] for i in range(0, len(idx), 16)]
        parts = []
        for n, chunk in enumerate(chunks):
            _check(cancel)
            parts.append(encoder.encode(slices_batch(image, card, chunk)))
            if progress:
                progress(n + 1, len(chunks), "slices")
        emb = np.concatenate(parts)
        return SeriesEmbedding(l2_normalise(emb.mean(0, keepdims=True))[0], emb, idx.astype(np.int64), "slice", encoder.provenance)
    # 3D: whole volume + slabs of about a quarter of the extent, at up to max_parts positions
    _check(cancel)
    series = encoder.encode(volume_batch(image, card))[0]
    nslab = min(depth, max_parts or 8)
    half = max(1, depth // 8)
    centres = sample_slices(depth, nslab)
    boxes = [(slice(max(0, c - half), min(depth, c + half + 1)), slice(None), slice(None)) for c in centres]
    parts = []
    for n in range(0, len(boxes), 4):
        _check(cancel)
        parts.append(encoder.encode(volume_batch(image, card, boxes[n : n + 4])))
        if progress:
            progress(min(n + 4, len(boxes)), len(boxes), "slabs")
    return SeriesEmbedding(series, np.concatenate(parts), centres.astype(np.int64), "slab", encoder.provenance)


def embed_roi(encoder: Encoder, image: ImageInput, roi: RoiBox, margin: float = 0.1) -> np.ndarray:
    """One unit vector for a box drawn on the image (a little context margin is added)."""
    box = roi.to_voxel(image)
    grown = []
    for ax, s in enumerate(box):
        n = s.stop - s.start
        m = int(round(n * margin)) if ax > 0 else 0
        grown.append(slice(max(0, s.start - m), min(image.shape[ax], s.stop + m)))
    card = encoder.card
    if card.is_3d:
        return encoder.encode(volume_batch(image, card, [tuple(grown)]))[0]  # type: ignore[list-item]
    ks = np.arange(grown[0].start, grown[0].stop)
    ks = ks[sample_slices(len(ks), card.slices_per_series)]
    emb = encoder.encode(slices_batch(image, card, ks, crop=(grown[1], grown[2])))
    return l2_normalise(emb.mean(0, keepdims=True))[0]


def embed_slices(encoder: Encoder, image: ImageInput, indices: np.ndarray) -> np.ndarray:
    """Embeddings of chosen slices (2D models), e.g. the slice a reader is looking at."""
    return encoder.encode(slices_batch(image, encoder.card, indices))


__all__ = ["SeriesEmbedding", "embed_image", "embed_roi", "embed_slices"]
