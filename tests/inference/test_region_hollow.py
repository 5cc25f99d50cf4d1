"""A hollow finding (a cavitating nodule, a ring-enhancing tumour around necrosis) is found and
stored as one region holding its wall and its hole, not lost because its centre lies in the hole.

The volumes are drawn here (a slab of tissue with a lung or a brain in it, noise on top), so
the test knows where the finding is and how big; the detector under test is the one
``casebook embed`` runs."""
from __future__ import annotations

import numpy as np
import pytest

from casebook.inference.preprocess import ImageInput
from casebook.inference.regions import find_regions

SPACING = (2.5, 1.5, 1.5)  # slice, row, column (mm)
SHAPE = (40, 100, 100)


def _mm_grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    k, j, i = np.meshgrid(*[np.arange(n) * s for n, s in zip(SHAPE, SPACING)], indexing="ij")
    return k, j, i


def _volume(kind: str, seed: int) -> tuple[ImageInput, tuple[float, float, float], float]:
    """The image, the finding's centre (voxel k, j, i) and its diameter in mm."""
    k, j, i = _mm_grid()
    rng = np.random.default_rng(seed)
    centre_mm = np.array([50.0, 75.0, 75.0])
    radius = 12.0
    d = np.sqrt((k - centre_mm[0]) ** 2 + (j - centre_mm[1]) ** 2 + (i - centre_mm[2]) ** 2)
    inside = (np.abs(j - 75.0) < 55.0) & (np.abs(i - 75.0) < 55.0) & (k > 8.0) & (k < 92.0)
    if kind.startswith("ct"):
        vol = np.full(SHAPE, 40.0, np.float32)  # soft tissue around the lung
        vol[inside] = -850.0
        vol[d <= radius] = 30.0
        if kind == "ct-cavitating":
            vol[d <= 0.55 * radius] = -950.0
        vol += rng.normal(0.0, 12.0, SHAPE).astype(np.float32)
        modality = "CT"
    else:  # a contrast T1: brain, an enhancing rim, necrosis inside
        vol = np.full(SHAPE, 150.0, np.float32)
        vol[inside] = 600.0
        vol[(d <= radius) & (d > 0.65 * radius)] = 1250.0
        vol[d <= 0.65 * radius] = 300.0
        vol += rng.normal(0.0, 15.0, SHAPE).astype(np.float32)
        modality = "MR"
    centre_vox = tuple(float(c / s) for c, s in zip(centre_mm, SPACING))
    return ImageInput(vol, SPACING, modality=modality), centre_vox, 2 * radius  # type: ignore[return-value]


@pytest.mark.parametrize("kind", ["ct-solid", "ct-cavitating", "mr-ring-enhancing"])
@pytest.mark.parametrize("seed", [3, 17])
def test_a_hollow_finding_is_one_region_with_its_wall(kind: str, seed: int) -> None:
    image, (ck, cj, ci), diameter = _volume(kind, seed)
    regions = find_regions(image)
    holding = [r for r in regions
               if r.box[0] <= ck < r.box[1] and r.box[2] <= cj < r.box[3] and r.box[4] <= ci < r.box[5]
               and r.polarity > 0 and 0.6 * diameter <= r.diameter_mm <= 1.6 * diameter]
    found = [(round(r.diameter_mm, 1), r.polarity, tuple(round(c) for c in r.centre)) for r in regions[:12]]
    assert holding, f"no bright region of about {diameter:.0f} mm holds the {kind} finding: {found}"
    best = min(holding, key=lambda r: np.linalg.norm(np.subtract(r.centre, (ck, cj, ci)) * SPACING))
    # the region is centred on the finding (its centroid, cavity filled, within a quarter diameter)
    assert np.linalg.norm(np.subtract(best.centre, (ck, cj, ci)) * SPACING) < diameter / 4
