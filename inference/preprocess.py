"""From an image array in patient geometry to the batch a model's card asks for.

numpy in, numpy out: the viewer's Volume is turned into an :class:`ImageInput` by the caller
(``ImageInput(volume.voxels, volume.spacing, volume.modality, ...)``), so this package never
imports the viewer. Axis order follows the Volume convention: voxels ``[k, j, i]`` = (z, y, x),
spacing ``(sk, sj, si)`` in mm.

Geometry: with a card ``target_spacing`` the image is resampled (SimpleITK, linear) to that
spacing and centre-cropped/padded to the input size; without one the whole field of view is
fitted into the input size at an isotropic spacing (aspect ratio kept, padded), which is what
lets a 2D model trained on radiographs take a 512x512 CT slice or a 3D model any volume.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import SimpleITK as sitk

from .card import IntensitySpec, ModelCard
from .errors import PreprocessError


@dataclass
class ImageInput:
    """An image series as arrays: what a Volume carries, without depending on it."""

    voxels: np.ndarray  # (z, y, x) or (z, y, x, c)
    spacing: tuple[float, float, float]  # (sk, sj, si) mm
    modality: str = ""
    photometric: str = "MONOCHROME2"
    origin: tuple[float, float, float] | None = None  # LPS of voxel [0,0,0] (needed for patient-coordinate ROIs)
    direction: np.ndarray | None = None  # 3x3, columns = unit LPS vectors of i, j, k

    def __post_init__(self) -> None:
        v = np.asarray(self.voxels)
        if v.ndim == 2:
            v = v[None]
        if v.ndim == 4 and v.shape[-1] in (3, 4):
            v = v[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
        if v.ndim != 3 or min(v.shape) < 1:
            raise PreprocessError(f"image must be (z, y, x) or (z, y, x, c), got shape {np.shape(self.voxels)}")
        self.voxels = v
        sp = tuple(float(s) for s in self.spacing)
        if len(sp) != 3 or not all(np.isfinite(sp)) or min(sp) <= 0:
            sp = tuple(s if (np.isfinite(s) and s > 0) else 1.0 for s in (list(sp) + [1.0, 1.0, 1.0])[:3])
        self.spacing = sp  # type: ignore[assignment]

    @classmethod
    def from_volume(cls, volume: Any) -> "ImageInput":
        """Duck-typed adapter for any object with the Volume attributes."""
        return cls(volume.voxels, tuple(volume.spacing), getattr(volume, "modality", ""), getattr(volume, "photometric", "MONOCHROME2"),
                   tuple(getattr(volume, "origin", (0, 0, 0))), getattr(volume, "direction", None))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.voxels.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class RoiBox:
    """A box: ``space='voxel'`` corners are (k, j, i) indices (inclusive-exclusive);
    ``space='patient'`` corners are two opposite LPS points in mm."""

    lo: tuple[float, float, float]
    hi: tuple[float, float, float]
    space: str = "voxel"

    def to_voxel(self, image: ImageInput) -> tuple[slice, slice, slice]:
        if self.space == "voxel":
            a, b = np.asarray(self.lo, float), np.asarray(self.hi, float)
        elif self.space == "patient":
            if image.origin is None or image.direction is None:
                raise PreprocessError("a patient-coordinate ROI needs the image origin and direction")
            d = np.asarray(image.direction, float).reshape(3, 3)
            sk, sj, si = image.spacing
            m = np.column_stack([d[:, 0] * si, d[:, 1] * sj, d[:, 2] * sk])
            inv = np.linalg.inv(m)
            pts = [inv @ (np.asarray(p, float) - np.asarray(image.origin, float)) for p in (self.lo, self.hi)]
            ijk = np.array(pts)  # (2, 3) in i, j, k
            kji = ijk[:, ::-1]
            a, b = np.floor(kji.min(0) + 0.5), np.floor(kji.max(0) + 0.5) + 1
        else:
            raise PreprocessError(f"ROI space must be 'voxel' or 'patient', not {self.space!r}")
        lo = np.maximum(np.minimum(a, b), 0).astype(int)
        hi = np.minimum(np.maximum(a, b), image.shape).astype(int)
        if np.any(hi - lo < 1):
            raise PreprocessError(f"ROI {self.lo}..{self.hi} ({self.space}) lies outside the image {image.shape}")
        return tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))  # type: ignore[return-value]


def normalise_intensity(voxels: np.ndarray, spec: IntensitySpec, photometric: str = "MONOCHROME2") -> np.ndarray:
    """Map raw values to [0, 1] by the card's rule for the modality; MONOCHROME1 is inverted."""
    x = np.asarray(voxels)
    if spec.method == "as-is":
        out = x.astype(np.float32)
    elif spec.method == "window":
        lo = spec.center - spec.width / 2.0  # type: ignore[operator]
        out = np.clip((x.astype(np.float32) - lo) / float(spec.width), 0.0, 1.0)
    else:
        if spec.method == "range" and x.dtype == np.uint8:
            out = x.astype(np.float32) / 255.0
        else:
            sample = x[:: max(1, x.shape[0] // 32)] if x.ndim == 3 else x
            low, high = (spec.low, spec.high) if spec.method == "percentile" else (0.5, 99.5)
            a, b = np.percentile(sample, [low, high])
            if spec.method == "range" and float(x.min()) >= 0 and float(x.max()) <= 255 and np.issubdtype(x.dtype, np.integer):
                a, b = 0.0, 255.0
            out = np.clip((x.astype(np.float32) - a) / max(float(b - a), 1e-6), 0.0, 1.0)
    if photometric.upper() == "MONOCHROME1" and spec.method != "as-is":
        out = 1.0 - out
    return out.astype(np.float32, copy=False)


def _fit_grid(in_size: Sequence[int], in_spacing: Sequence[float], out_size: Sequence[int],
              target_spacing: Sequence[float] | None) -> tuple[list[float], list[float]]:
    """Output spacing and origin offset (in the input's index frame, mm) centring the image."""
    fov = [n * s for n, s in zip(in_size, in_spacing)]
    if target_spacing is None:
        iso = max(f / o for f, o in zip(fov, out_size))
        out_sp = [iso] * len(out_size)
    else:
        out_sp = list(target_spacing)
    centre = [(n - 1) * s / 2.0 for n, s in zip(in_size, in_spacing)]
    origin = [c - (o - 1) * sp / 2.0 for c, o, sp in zip(centre, out_size, out_sp)]
    return out_sp, origin


def resample_to(arr: np.ndarray, spacing: Sequence[float], out_size: Sequence[int],
                target_spacing: Sequence[float] | None) -> np.ndarray:
    """Resample a (d, h, w) or (h, w) float array onto the model grid (numpy axis order).

    Shrinks by whole factors with bin averaging first so downsampling does not alias.
    """
    if min(arr.shape) < 1:
        raise PreprocessError(f"cannot resample an empty image of shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    sp = [float(s) for s in spacing]
    if target_spacing is None:
        fov = [n * s for n, s in zip(arr.shape, sp)]
        iso = max(f / o for f, o in zip(fov, out_size))
        want = [iso] * arr.ndim
    else:
        want = list(target_spacing)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(sp[::-1])
    # never bin more samples than an axis has (a one-slice image through a 3D model)
    shrink = [max(1, min(n, int(w / s))) for n, w, s in zip(arr.shape, want, sp)]
    if max(shrink) > 1:
        img = sitk.BinShrink(img, shrink[::-1])
        img.SetOrigin([0.0] * arr.ndim)
    in_size = img.GetSize()[::-1]
    in_sp = img.GetSpacing()[::-1]
    # BinShrink moves the first sample centre; re-centre on the original field of view
    out_sp, origin = _fit_grid(arr.shape, sp, out_size, target_spacing)
    shift = [(s_new - s_old) / 2.0 for s_new, s_old in zip(in_sp, sp)]
    img.SetOrigin([o for o in shift][::-1])
    res = sitk.Resample(img, [int(v) for v in out_size][::-1], sitk.Transform(), sitk.sitkLinear,
                        origin[::-1], out_sp[::-1], img.GetDirection(), 0.0, sitk.sitkFloat32)
    del in_size
    return sitk.GetArrayFromImage(res)


def sample_slices(depth: int, count: int) -> np.ndarray:
    """Up to ``count`` evenly spread slice indices (centres of equal bins), all when fewer."""
    if depth <= count:
        return np.arange(depth)
    return np.unique(((np.arange(count) + 0.5) * depth / count).astype(int))


def _standardise(x: np.ndarray, card: ModelCard) -> np.ndarray:
    mean = np.asarray(card.mean, np.float32)
    std = np.asarray(card.std, np.float32)
    return (x - mean.reshape((-1,) + (1,) * (x.ndim - 2))) / std.reshape((-1,) + (1,) * (x.ndim - 2))


def _channels(x: np.ndarray, card: ModelCard) -> np.ndarray:
    """(N, ...) -> (N, C, ...): grey repeated into the card's channel count."""
    x = x[:, None]
    if card.channels == 3:
        x = np.repeat(x, 3, axis=1)
    return x


def slices_batch(image: ImageInput, card: ModelCard, indices: Sequence[int],
                 crop: tuple[slice, slice] | None = None) -> np.ndarray:
    """Model input (N, C, H, W) for 2D models from the given slice indices (optionally cropped)."""
    if card.is_3d:
        raise PreprocessError(f"{card.ident} is a 3D model; use volume_batch")
    vox = image.voxels[np.asarray(indices, int)]
    if crop is not None:
        vox = vox[:, crop[0], crop[1]]
    norm = normalise_intensity(vox, card.intensity_for(image.modality), image.photometric)
    sk, sj, si = image.spacing
    out = np.empty((len(norm), *card.input_size), np.float32)
    for n, sl in enumerate(norm):
        out[n] = resample_to(sl, (sj, si), card.input_size, card.target_spacing)
    return _standardise(_channels(out, card), card)


def volume_batch(image: ImageInput, card: ModelCard, boxes: Sequence[tuple[slice, slice, slice]] | None = None) -> np.ndarray:
    """Model input (N, C, D, H, W) for 3D models: the whole volume, or one entry per box."""
    if not card.is_3d:
        raise PreprocessError(f"{card.ident} is a 2D model; use slices_batch")
    spec = card.intensity_for(image.modality)
    norm = normalise_intensity(image.voxels, spec, image.photometric)
    boxes = boxes or [(slice(None), slice(None), slice(None))]
    out = np.empty((len(boxes), *card.input_size), np.float32)
    for n, box in enumerate(boxes):
        out[n] = resample_to(norm[box], image.spacing, card.input_size, card.target_spacing)
    return _standardise(_channels(out, card), card)


__all__ = ["ImageInput", "RoiBox", "normalise_intensity", "resample_to", "sample_slices", "slices_batch", "volume_batch"]
