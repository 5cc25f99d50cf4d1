"""Where a finding sits: a coarse map of every series, so a box's surroundings can be found again.

Why: the region descriptor (:mod:`.describe`) says what a finding looks like, not where it sits.
On Brain-Tumor-Progression the same patient's tumour on the earlier scan has other patients'
glioblastomas as near copies (descriptor cosine 0.96-0.99), so the earlier scan is found first in
2 of 11 patients. What tells it apart is the anatomy around the tumour: 128 mm of it, in 16 mm cells.
That layout only agrees when both centres agree (measured: a 10 mm shift loses 5 of 10, 20 mm all),
and the stored regions of a tumour are pieces of its rim 20-100 mm off its centre, so the layout
cannot be a block of the region vector. Instead each series keeps a *context map* (its image at
4 mm, log of the family intensity, one byte a pixel) and a box query's 8 x 8-cell context is slid
over a candidate's map, every 4 mm on every slab: the best place is where the box's finding sits in
that series, and how well it agrees is the context score.

The cells are high-passed (each minus the mean of its 3 x 3 cell neighbourhood) so that the score
follows edges and masses rather than the head's overall brightness, and zero-mean, unit-norm, so it
is a correlation in [-1, 1]. In-plane only, in the series' own voxel axes: an axial box is compared
with axial slabs (a coronal series' map is coronal; comparing across planes is left undone).

numpy + SimpleITK, no learned weights; never imports the index or the viewer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import SimpleITK as sitk

from ..errors import PreprocessError
from ..preprocess import ImageInput
from .detect import family_reference, in_plane_holes, prepare

CONTEXT_VERSION = "1"
PIXEL_MM = 4.0  # map pixel (and slab) size; also the step the context is slid by
CELL_PIXELS = 4  # one context cell = 4 x 4 map pixels (16 mm)
CELLS = 8  # 8 x 8 cells: 128 mm of surroundings
_EPS = 0.05  # added before the log: air/background is log(0.05), not -inf
_LO, _HI = math.log(_EPS), math.log(4.0 + _EPS)  # quantisation range of the log intensity
_Q = (_HI - _LO) / 255.0
#: a context whose high-passed cells vary less than this (log units) is background or flat: no match
MIN_SPREAD = 0.02
#: (dy, dx) in map pixels of the 8 x 8 cell centres around a context's centre
_OFFSETS = np.arange(CELLS) * CELL_PIXELS - (CELLS - 1) * CELL_PIXELS // 2
_PAD = int(_OFFSETS.max()) + 2 * CELL_PIXELS
#: slab offsets of a context's layers (a slab is 4 mm): its own slab and those 8 mm above and below,
#: so the place is pinned in z too (phantom seeds 1 / 4242: the box on the same lesion of the other
#: scan 18 -> 21 of 24 / 16 -> 17 of 18 queries; the misses were slabs 9-55 mm off in a smooth liver)
Z_LAYERS = (-2, 0, 2)
#: a query stack thinner than this (mm) keeps one layer: its outer layers would mostly be the
#: stack's repeated end slabs (Brain-Tumor-Progression's 24 mm stacks: with 3 layers 9/11 same-place
#: hits instead of 11/11)
MIN_LAYERED_MM = 48.0


@dataclass
class ContextMap:
    """A series at 4 mm: (z, y, x) uint8 log family intensity, and how map indices meet voxels.

    ``scale``/``offset`` map a map index (z, y, x) to a continuous voxel index (k, j, i) by
    ``zyx * scale + offset`` (as :class:`.detect.PreparedImage`)."""

    values: np.ndarray
    scale: np.ndarray
    offset: np.ndarray
    family: str
    version: str = CONTEXT_VERSION

    def to_voxel(self, zyx: Sequence[float]) -> np.ndarray:
        return np.asarray(zyx, np.float64) * self.scale + self.offset

    def to_map(self, kji: Sequence[float]) -> np.ndarray:
        """Nearest map index of a voxel index, clipped into the map."""
        z = np.rint((np.asarray(kji, np.float64) - self.offset) / self.scale).astype(int)
        return np.clip(z, 0, np.asarray(self.values.shape) - 1)

    def log_values(self) -> np.ndarray:
        return self.values.astype(np.float32) * np.float32(_Q) + np.float32(_LO)


@dataclass
class ContextMatch:
    """Where a context agrees best with a series, in that series' voxels, and how well (-1..1)."""

    score: float
    centre_kji: tuple[float, float, float]


def context_map(image: ImageInput) -> ContextMap:
    """The context map of a whole series (at embed time; about 1/1000 of its pixels)."""
    v = np.asarray(image.voxels, np.float32)
    sp = np.asarray(image.spacing, np.float64)
    if v.size == 0:
        raise PreprocessError("cannot map an empty image")
    # average rather than pick: a 4 mm pixel is the mean of what it covers (Gaussian, sigma ~ half a
    # pixel), axis by axis; an axis of fewer than 4 voxels (a radiograph, a 2-slice series) is left
    sigma = [max(0.0, (PIXEL_MM / 2.0) ** 2 - (s / 2.0) ** 2) ** 0.5 for s in sp[::-1]]  # x, y, z
    img = sitk.GetImageFromArray(v)
    img.SetSpacing([float(s) for s in sp[::-1]])
    try:
        for axis, (sg, n) in enumerate(zip(sigma, v.shape[::-1])):
            if sg > 0 and n >= 4:
                img = sitk.RecursiveGaussian(img, float(sg), False, sitk.RecursiveGaussianImageFilter.ZeroOrder, axis)
    except RuntimeError as exc:  # ITK refuses an image it cannot filter: say so, as for any bad input
        raise PreprocessError(f"cannot map an image of shape {v.shape}: {exc}") from exc
    smooth = ImageInput(sitk.GetArrayFromImage(img), tuple(sp), image.modality, image.photometric)
    prep = prepare(smooth, reference=family_reference(image)[1], grid_mm=PIXEL_MM)
    x = prep.values.astype(np.float32)
    x = (x + 1000.0) / 1000.0 if prep.family == "CT" else x / 1000.0  # water / median tissue = 1
    lv = np.log(np.clip(x, 0.0, None) + _EPS)
    q = np.clip(np.rint((lv - _LO) / _Q), 0, 255).astype(np.uint8)
    return ContextMap(q, np.asarray(prep.scale, np.float64), np.asarray(prep.offset, np.float64), prep.family)


@dataclass
class SlabLayout:
    """What one slab of a CT context map shows of the body: why a series whose headers name no
    anatomy can still be told a head from a chest (see ``casebook.viewer.core.services.anatomy``)."""

    body_mm2: float  # the body's cross-section, holes (lungs, bowel gas) filled
    width_mm: float  # its extent along the map's rows
    air: float  # share of the filled body that is air (< -500 HU): the lungs
    shell_bone: float  # share of the body's outer 12 mm that is bone (> +300 HU): a skull


def slab_layouts(cmap: ContextMap) -> list[SlabLayout]:
    """The body layout of every slab of a CT map that holds a body (at least 25 cm^2); none for
    other families, whose units say nothing of air or bone."""
    if cmap.family != "CT":
        return []
    hu = (np.exp(cmap.log_values()) - np.float32(_EPS)) * np.float32(1000.0) - np.float32(1000.0)
    px = PIXEL_MM * PIXEL_MM
    rim_px = max(int(round(12.0 / PIXEL_MM)), 1)
    body = hu > -400.0
    filled = body | in_plane_holes(body)
    # the erosion stays in each slab's plane (no radius along k), as the outer rim is in-plane
    inner = sitk.GetArrayFromImage(sitk.BinaryErode(sitk.GetImageFromArray(filled.astype(np.uint8)),
                                                    [rim_px, rim_px, 0])).astype(bool)
    out = []
    for slab, flesh, fill, core in zip(hu, body, filled, inner):
        if flesh.sum() * px < 2500.0:
            continue
        rim = fill & ~core
        cols = np.flatnonzero(fill.any(axis=0))
        out.append(SlabLayout(float(fill.sum() * px), float((cols[-1] - cols[0] + 1) * PIXEL_MM),
                              float((fill & (slab < -500.0)).sum() / fill.sum()),
                              float((rim & (slab > 300.0)).sum() / max(int(rim.sum()), 1))))
    return out


def _highpassed(cmap: ContextMap) -> np.ndarray:
    """Per slab: 16 mm cell means at every map pixel, less their 3 x 3 cell neighbourhood, padded
    with background so a context near the edge is defined."""
    lv = np.pad(cmap.log_values(), ((0, 0), (_PAD, _PAD), (_PAD, _PAD)), constant_values=np.float32(_LO))
    c = _box_mean(lv, CELL_PIXELS)
    nb = _box_mean(c, 3 * CELL_PIXELS, step=CELL_PIXELS)
    return (c - nb).astype(np.float32)


def _box_mean(a: np.ndarray, width: int, step: int = 1) -> np.ndarray:
    """Mean over a width x width window (or, with ``step``, over the 3 x 3 points ``step`` apart)
    around every pixel of each slab; edges repeat the border."""
    if step > 1:
        out = np.zeros_like(a)
        p = np.pad(a, ((0, 0), (step, step), (step, step)), mode="edge")
        for dy in (0, step, 2 * step):
            for dx in (0, step, 2 * step):
                out += p[:, dy:dy + a.shape[1], dx:dx + a.shape[2]]
        return out / 9.0
    h = width // 2
    p = np.pad(a, ((0, 0), (h, width - h), (h, width - h)), mode="edge")
    cs = np.zeros((p.shape[0], p.shape[1] + 1, p.shape[2] + 1), np.float64)
    cs[:, 1:, 1:] = p.cumsum(1).cumsum(2)
    y, x = a.shape[1], a.shape[2]
    s = cs[:, width:width + y, width:width + x] - cs[:, :y, width:width + x] - cs[:, width:width + y, :x] + cs[:, :y, :x]
    return (s / (width * width)).astype(np.float32)


def layers_for(cmap: ContextMap) -> tuple[int, ...]:
    """The context layers a box on this series uses: three on a stack of ``MIN_LAYERED_MM`` or
    more, its own slab alone on a thinner one."""
    return Z_LAYERS if cmap.values.shape[0] * PIXEL_MM >= MIN_LAYERED_MM else (0,)


def context_vector(cmap: ContextMap, centre_kji: Sequence[float], layers: Sequence[int] | None = None
                   ) -> np.ndarray | None:
    """The context (64 values a layer, zero-mean, unit-norm) around a voxel of the mapped series;
    None where the surroundings are background or flat (nothing to find again). ``layers``:
    :func:`layers_for` of the series unless given."""
    layers = tuple(layers) if layers is not None else layers_for(cmap)
    z, y, x = (int(v) for v in cmap.to_map(centre_kji))
    nz = cmap.values.shape[0]
    zs = [int(np.clip(z + dz, 0, nz - 1)) for dz in layers]  # near an end the end slab repeats
    h = _highpassed(ContextMap(cmap.values[zs], cmap.scale, cmap.offset, cmap.family))
    w = np.concatenate([layer[np.ix_(_OFFSETS + y + _PAD, _OFFSETS + x + _PAD)].astype(np.float64).ravel()
                        for layer in h])
    w = w - w.mean()
    n = float(np.linalg.norm(w))
    if n / math.sqrt(w.size) < MIN_SPREAD:
        return None
    return (w / n).astype(np.float32)


@dataclass
class PreparedMap:
    """What sliding a context over a map needs that does not depend on the context: the spectrum of
    the high-passed map and every position's window spread. Made once per series and kept by the
    caller (complex64: about 5 MB for a large CT's 60 x 96 x 96 map), so a box answers in one
    inverse FFT per candidate."""

    cmap: ContextMap
    spectrum: np.ndarray  # rfft2 of the padded high-passed map, per slab
    sums: tuple[np.ndarray, np.ndarray]  # per slab and position: window sum and sum of squares (one layer)
    padded: tuple[int, int]

    def spread(self, layers: Sequence[int]) -> np.ndarray:
        """sqrt of each position's sum of squares about its mean over ``layers``; 0 = flat."""
        s1, s2 = (_layers(a, layers) for a in self.sums)
        n = float(CELLS * CELLS * len(layers))
        var = np.maximum(s2 - s1 * s1 / n, 0.0)
        return np.where(var / n >= MIN_SPREAD ** 2, np.sqrt(var), 0.0)


def prepare_map(cmap: ContextMap) -> PreparedMap:
    """The context-independent half of :func:`best_context` (the slow half: ~0.1 s for a large CT)."""
    h = _highpassed(cmap).astype(np.float64)
    nz, ny, nx = cmap.values.shape
    sums = (_window_sum(h, ny, nx), _window_sum(h * h, ny, nx))
    return PreparedMap(cmap, np.fft.rfft2(h).astype(np.complex64), sums, (int(h.shape[1]), int(h.shape[2])))


def best_context(query: np.ndarray, cmap: "ContextMap | PreparedMap", layers: Sequence[int] | None = None
                 ) -> ContextMatch:
    """Slide a context over every 4 mm position of every slab of a series: the best correlation
    and where (voxel index of the centre). -1 when the series has no non-flat place.

    The 64 products are one FFT correlation per slab and the window spreads are made once per map
    (:func:`prepare_map`), so a prepared large CT map (60 x 96 x 96) answers in ~20 ms."""
    prep = cmap if isinstance(cmap, PreparedMap) else prepare_map(cmap)
    t = np.asarray(query, np.float64).reshape(-1, CELLS, CELLS)
    if layers is None:
        layers = Z_LAYERS if len(t) == len(Z_LAYERS) else (0,)
    layers = tuple(layers)
    if len(layers) != len(t):
        raise PreprocessError(f"a context of {len(t)} layers cannot be slid as {len(layers)}")
    hy, hx = prep.padded
    nz, ny, nx = prep.cmap.values.shape
    spec = np.zeros_like(prep.spectrum)
    for n_layer, dz in enumerate(layers):
        kern = np.zeros((hy, hx))
        for r, oy in enumerate(_OFFSETS):
            for c, ox in enumerate(_OFFSETS):
                kern[oy % hy, ox % hx] = t[n_layer, r, c]
        zs = np.clip(np.arange(nz) + dz, 0, nz - 1)
        spec += prep.spectrum[zs] * np.conj(np.fft.rfft2(kern)).astype(np.complex64)[None]
    corr = np.fft.irfft2(spec, s=(hy, hx))
    dot = corr[:, _PAD:_PAD + ny, _PAD:_PAD + nx]
    spread = prep.spread(layers)
    ok = spread > 0
    score = np.where(ok, dot / np.where(ok, spread, 1.0), -1.0)
    at = np.unravel_index(int(np.argmax(score)), score.shape)
    centre = prep.cmap.to_voxel(at)
    return ContextMatch(float(score[at]), (float(centre[0]), float(centre[1]), float(centre[2])))


def _layers(a: np.ndarray, layers: Sequence[int]) -> np.ndarray:
    """Per slab, the sum over the context's layers (slabs that far away, clamped to the stack)."""
    nz = a.shape[0]
    return sum(a[np.clip(np.arange(nz) + dz, 0, nz - 1)] for dz in layers)


def _window_sum(a: np.ndarray, ny: int, nx: int) -> np.ndarray:
    """Sum of the 8 x 8 cell-centre samples around every map pixel (separable: rows, then columns)."""
    rows = sum(a[:, _PAD + oy:_PAD + oy + ny, :] for oy in _OFFSETS)
    return sum(rows[:, :, _PAD + ox:_PAD + ox + nx] for ox in _OFFSETS)


def encode_map(cmap: ContextMap) -> bytes:
    """The map's pixels as stored (row-major uint8)."""
    return np.ascontiguousarray(cmap.values, np.uint8).tobytes()


def decode_map(blob: bytes, shape: Sequence[int], scale: Sequence[float], offset: Sequence[float], family: str,
               version: str = CONTEXT_VERSION) -> ContextMap:
    """A stored map back; a blob of the wrong size is refused (a damaged row)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or int(np.prod(shape)) != len(blob):
        raise PreprocessError(f"context map of {len(blob)} bytes does not fill shape {shape}")
    return ContextMap(np.frombuffer(blob, np.uint8).reshape(shape), np.asarray(scale, np.float64),
                      np.asarray(offset, np.float64), family, version)


__all__ = ["CELLS", "CONTEXT_VERSION", "ContextMap", "ContextMatch", "PIXEL_MM", "PreparedMap", "SlabLayout",
           "best_context", "context_map", "context_vector", "decode_map", "encode_map", "layers_for", "prepare_map",
           "slab_layouts"]
