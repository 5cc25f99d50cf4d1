"""Findings lie inside the body: when a series has more candidates than the region cap, those at
the body's surface (skin, subcutaneous fat, the scalp, the skull's marrow) go after deeper ones
of similar saliency, so a tumour's enhancing rim is not crowded out by scalp fat.

Real arrays through the detector's own preparation; candidates built as the detector builds them."""
from __future__ import annotations

import numpy as np

from casebook.inference.preprocess import ImageInput
from casebook.inference.regions.detect import Candidate, prepare
from casebook.inference.regions.extract import SURFACE_MM, select_candidates, surface_depth

SPACING = (2.0, 2.0, 2.0)


def _ct_chest(shape=(12, 100, 100)) -> ImageInput:
    """An ellipse of soft tissue in air with two lungs in it (a chest on every slice)."""
    _, j, i = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in shape], indexing="ij")
    vol = np.full(shape, -1000.0, np.float32)
    body = ((j - 50) / 40) ** 2 + ((i - 50) / 45) ** 2 <= 1
    vol[body] = 40.0
    for c in (30, 70):
        vol[body & (((j - 50) / 25) ** 2 + ((i - c) / 14) ** 2 <= 1)] = -850.0
    return ImageInput(vol, SPACING, modality="CT")


def test_surface_depth_is_zero_outside_small_at_the_skin_and_ignores_the_lungs() -> None:
    prep = prepare(_ct_chest())
    depth = surface_depth(prep)
    assert depth.shape == prep.values.shape
    z = depth.shape[0] // 2
    assert depth[z, 50, 2] == 0.0  # air beside the body
    assert 0.0 < depth[z, 50, 8] < SURFACE_MM  # just under the skin (the body starts 5 voxels in)
    # a lung is inside the body, not its surface: its centre is as deep as the tissue around it
    assert depth[z, 50, 30] > 2 * SURFACE_MM
    assert depth[0, 50, 50] == depth[z, 50, 50]  # in plane: the first slice is not skin


def _cand(centre, voxels: int, core: float, context: float = 100.0) -> Candidate:
    n = max(int(round(voxels ** (1 / 3))), 1)
    mask = np.zeros((n + 1, n + 1, n + 1), bool)
    mask.flat[:voxels] = True
    return Candidate(np.asarray(centre, float), 3.0, 1, 50.0, core, context,
                     (slice(0, n + 1), slice(0, n + 1), slice(0, n + 1)), mask, 0, spread=20.0)


def test_a_deep_finding_is_kept_when_surface_candidates_would_fill_the_cap() -> None:
    prep = prepare(_ct_chest())
    depth = surface_depth(prep)
    z = depth.shape[0] // 2
    # ten distinct kinds of bright things at the skin, each more salient than the deep nodule, but
    # less than four times as salient (a much brighter thing at the skin still goes first)
    surface = [_cand((z, 50, 8), v, core) for v in (4, 40) for core in (700.0, 900.0, 1200.0, 1500.0, 1900.0)]
    deep = _cand((z, 50, 30), 60, 600.0)
    cands = surface + [deep]
    assert all(1 < c.saliency(prep.noise) / deep.saliency(prep.noise) < 1 / 0.25 for c in surface)
    assert len({(c.polarity, c.voxels, c.core) for c in cands}) == len(cands)
    without = select_candidates(cands, prep.noise, "CT", 5)
    assert all(c is not deep for c in without)  # the cap is all skin when depth is not asked
    kept = select_candidates(cands, prep.noise, "CT", 5, depth=depth)
    assert kept[0] is deep and len(kept) == 5
