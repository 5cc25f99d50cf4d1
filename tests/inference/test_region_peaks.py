"""The blob detector's peak finder equals the plain definition (a voxel above the threshold that is
>= every one of its 26 neighbours, 8 in plane for one slice), ties and borders included."""
from __future__ import annotations

import numpy as np
import pytest

from casebook.inference.regions.detect import _peaks


def reference(resp: np.ndarray, thr: float) -> np.ndarray:
    idx = np.argwhere(resp > thr)
    if len(idx) == 0:
        return idx
    val = resp[tuple(idx.T)]
    shape = np.asarray(resp.shape)
    keep = np.ones(len(idx), bool)
    for dz in (-1, 0, 1):
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if (dz, dy, dx) == (0, 0, 0) or (shape[0] == 1 and dz):
                    continue
                nb = np.clip(idx + (dz, dy, dx), 0, shape - 1)
                keep &= val >= resp[tuple(nb.T)]
    return idx[keep]


@pytest.mark.parametrize("shape", [(1, 40, 37), (2, 30, 30), (3, 20, 25), (17, 33, 29)])
@pytest.mark.parametrize("ties", [False, True])
def test_peaks_equal_the_definition(shape, ties) -> None:
    rng = np.random.default_rng(sum(shape))
    a = rng.normal(size=shape).astype(np.float32)
    if ties:
        a = np.round(a * 2).astype(np.float32)
    for thr in (-10.0, 0.0, 1.5):
        got, want = _peaks(a, thr), reference(a, thr)
        assert got.shape == want.shape and (got == want).all()
    assert len(_peaks(a, 1e9)) == 0
