from __future__ import annotations

import numpy as np
import pytest

from casebook.inference.card import IntensitySpec
from casebook.inference.embedding import embed_image, embed_roi
from casebook.inference.errors import Cancelled, InferenceError, PreprocessError
from casebook.inference.preprocess import ImageInput, RoiBox, normalise_intensity, resample_to


def _phantom(seed: int = 0, shape=(20, 96, 128)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    body = ((y - shape[1] / 2) ** 2 / (shape[1] / 2.5) ** 2 + (x - shape[2] / 2) ** 2 / (shape[2] / 2.5) ** 2) < 1
    vol = np.where(body, 40.0, -1000.0) + rng.normal(0, 10, shape)
    vol[:, 30:50, 40:60] = 300.0  # a bright "lesion"
    return vol.astype(np.float32)


def test_intensity_rules() -> None:
    hu = np.array([-1000.0, 40.0, 240.0, 3000.0])
    out = normalise_intensity(hu, IntensitySpec("window", center=40, width=400))
    assert np.allclose(out, [0.0, 0.5, 1.0, 1.0])
    u8 = np.array([0, 255], np.uint8)
    assert np.allclose(normalise_intensity(u8, IntensitySpec("range")), [0, 1])
    assert np.allclose(normalise_intensity(u8, IntensitySpec("range"), "MONOCHROME1"), [1, 0])
    mr = np.linspace(0, 5000, 1001)
    p = normalise_intensity(mr, IntensitySpec("percentile", low=1, high=99))
    assert p.min() == 0 and p.max() == 1 and 0.45 < p[500] < 0.55


def test_resample_keeps_centre_and_aspect() -> None:
    a = np.zeros((100, 200), np.float32)
    a[45:55, 95:105] = 1
    r = resample_to(a, (1.0, 1.0), (64, 64), None)
    assert np.allclose(np.argwhere(r > 0.5).mean(0), [31.5, 31.5], atol=0.6)
    assert r[:10].max() == 0  # letterboxed: the 100-row image fills only the middle half


def test_series_slice_and_roi_embeddings(baseline, cxr2d, adrenal3d) -> None:
    img = ImageInput(_phantom(), (2.5, 0.7, 0.7), "CT", origin=(0.0, 0.0, 0.0), direction=np.eye(3))
    for enc in (baseline, cxr2d, adrenal3d):
        s = embed_image(enc, img)
        assert s.series.shape == (enc.embedding_size,) and abs(np.linalg.norm(s.series) - 1) < 1e-5
        assert s.parts.shape[0] == len(s.part_slices) > 1
        assert np.all(np.diff(s.part_slices) > 0) and s.part_slices.max() < 20
        assert s.model.name == enc.card.name and len(s.model.sha256) == 64
        again = embed_image(enc, ImageInput(_phantom(), (2.5, 0.7, 0.7), "CT"))
        assert float(s.series @ again.series) > 0.9999  # deterministic
        roi = embed_roi(enc, img, RoiBox((5, 28, 38), (15, 52, 62)))
        assert abs(np.linalg.norm(roi) - 1) < 1e-5
        assert float(roi @ s.series) < 0.999  # the lesion box is not the whole series
        # the same box given in patient (LPS) mm gives the same embedding
        lps = RoiBox((38 * 0.7, 28 * 0.7, 5 * 2.5), (61 * 0.7, 51 * 0.7, 14 * 2.5), space="patient")
        assert float(embed_roi(enc, img, lps) @ roi) > 0.999


def test_bad_input_and_cancel(baseline) -> None:
    img = ImageInput(_phantom(), (2.5, 0.7, 0.7), "CT")
    with pytest.raises(PreprocessError, match="outside"):
        embed_roi(baseline, img, RoiBox((0, 500, 500), (5, 600, 600)))
    with pytest.raises(PreprocessError, match="origin"):
        embed_roi(baseline, img, RoiBox((0, 0, 0), (1, 1, 1), space="patient"))
    with pytest.raises(InferenceError, match="does not match"):
        baseline.encode(np.zeros((1, 1, 32, 32), np.float32))
    import threading

    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        embed_image(baseline, img, cancel=ev)


def test_similar_images_are_closer_than_different(cxr2d, baseline) -> None:
    a = _phantom(0)
    b = _phantom(1)  # same anatomy, other noise
    c = np.roll(_phantom(2), 40, axis=2) * 0.2  # different content
    for enc in (cxr2d, baseline):
        ea, eb, ec = (embed_image(enc, ImageInput(v, (2.5, 0.7, 0.7), "CT")).series for v in (a, b, c))
        assert ea @ eb > ea @ ec


def test_one_slice_image_through_every_encoder(baseline, cxr2d, adrenal3d) -> None:
    """A single CR/US/one-slice CT through a 3D model: a unit vector, not an ITK exception."""
    one = _phantom(shape=(1, 96, 128))
    for enc in (baseline, cxr2d, adrenal3d):
        s = embed_image(enc, ImageInput(one, (0.5, 0.7, 0.7), "CT"))
        assert s.series.shape == (enc.embedding_size,) and abs(np.linalg.norm(s.series) - 1) < 1e-5
        assert np.isfinite(s.parts).all() and s.parts.shape[0] >= 1
