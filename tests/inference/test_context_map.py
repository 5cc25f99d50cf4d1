"""A box's surroundings are found again on a shifted copy of the same anatomy, at the shifted place,
and scored above another anatomy; flat images give no context; damaged maps are refused.

The volumes are drawn here (a head-sized MR-like slab of ellipses with a mass, noise on top), so
the test knows where the place is; the code under test is what ``casebook embed`` stores and a box
query slides (:mod:`casebook.inference.regions.context`)."""
from __future__ import annotations

import numpy as np
import pytest

from casebook.inference.errors import PreprocessError
from casebook.inference.preprocess import ImageInput
from casebook.inference.regions import context as cx

SPACING = (5.0, 1.0, 1.0)  # slice, row, column (mm)
SHAPE = (12, 220, 200)


def _head(seed: int, shift_mm: tuple[float, float] = (0.0, 0.0), layout: int = 0) -> ImageInput:
    """An MR-like head: skull ring, brain, ventricles, a mass, structured blobs placed by ``layout``."""
    rng = np.random.default_rng(1000 + layout)
    k, j, i = np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)], indexing="ij")
    j = j - shift_mm[0]
    i = i - shift_mm[1]
    vol = np.zeros(SHAPE, np.float32)
    head = ((j - 110) / 90) ** 2 + ((i - 100) / 75) ** 2
    vol[head <= 1] = 300.0  # scalp / skull
    vol[head <= 0.85] = 900.0  # brain
    for _ in range(14):  # sulci, vessels, nuclei: what makes one head's layout its own
        cj, ci = rng.uniform(50, 170), rng.uniform(45, 155)
        rj, ri = rng.uniform(5, 16), rng.uniform(5, 16)
        vol[(((j - cj) / rj) ** 2 + ((i - ci) / ri) ** 2 <= 1) & (head <= 0.8)] = rng.uniform(400, 1500)
    vol[((j - 130) / 14) ** 2 + ((i - 70) / 14) ** 2 <= 1] = 1800.0  # the mass the box is drawn on
    vol += np.random.default_rng(seed).normal(0, 30, SHAPE).astype(np.float32)
    return ImageInput(np.clip(vol, 0, None), SPACING, "MR")


def test_the_box_surroundings_are_found_at_the_shifted_place() -> None:
    later = _head(1)
    earlier = _head(2, shift_mm=(14.0, -9.0))  # the patient lay 14 mm lower, 9 mm to the side
    box_centre = (6.0, 130.0, 70.0)  # (k, j, i) voxels: the mass on the later scan
    q = cx.context_vector(cx.context_map(later), box_centre)
    assert q is not None and q.shape == (cx.CELLS * cx.CELLS * len(cx.Z_LAYERS),) and abs(float(np.linalg.norm(q)) - 1) < 1e-4
    own = cx.best_context(q, cx.context_map(earlier))
    assert own.score > 0.9
    k, j, i = own.centre_kji
    assert abs(j - 144.0) <= 4.5 and abs(i - 61.0) <= 4.5, own  # within one 4 mm map pixel of the truth
    assert abs(k - 6.0) <= 2.0
    # another head scores high too (heads are alike at 16 mm), but below the same head's place
    for layout in (1, 2, 3):
        assert cx.best_context(q, cx.context_map(_head(3, layout=layout))).score < own.score - 0.01


def test_background_has_no_context_and_damaged_maps_are_refused() -> None:
    flat = ImageInput(np.full((6, 240, 240), 500.0, np.float32), (4.0, 1.0, 1.0), "MR")
    cmap = cx.context_map(flat)
    assert cx.context_vector(cmap, (3, 120, 120)) is None  # nothing to find again in its middle
    head = cx.context_map(_head(4))
    vec = cx.context_vector(head, (6.0, 130.0, 70.0))
    assert vec is not None
    # only the flat square's corners can agree at all, far below a same-place hit's 0.90
    assert cx.best_context(vec, cmap).score < 0.75
    blob = cx.encode_map(head)
    back = cx.decode_map(blob, head.values.shape, head.scale, head.offset, head.family)
    assert np.array_equal(back.values, head.values) and back.family == "MR"
    with pytest.raises(PreprocessError, match="does not fill"):
        cx.decode_map(blob[:-1], head.values.shape, head.scale, head.offset, head.family)


def test_ct_maps_use_hounsfield_units() -> None:
    vol = np.full((8, 120, 120), -1000.0, np.float32)
    vol[:, 20:100, 20:100] = 40.0
    cmap = cx.context_map(ImageInput(vol, (5.0, 2.0, 2.0), "CT"))
    assert cmap.family == "CT" and cmap.values.dtype == np.uint8
    lv = cmap.log_values()
    # air maps to the floor, water-like tissue near log(1.04 + 0.05)
    assert lv.min() == pytest.approx(np.log(0.05), abs=0.02)
    assert float(np.max(lv)) == pytest.approx(np.log(1.04 + 0.05), abs=0.03)
