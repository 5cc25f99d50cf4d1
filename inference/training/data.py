"""Training sets as plain arrays: from MedMNIST-style npz files or assembled by the caller.

The same :class:`LabelledArrays` is built from an npz folder (``casebook train-encoder DIR``)
or from the case store (the viewer's embedding service turns stored series and their
diagnoses/tags into arrays), so the trainer never needs to know where images came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..card import IntensitySpec
from ..errors import InferenceError


class TrainingDataError(InferenceError):
    """A training set is missing, malformed or too small."""


@dataclass
class LabelledArrays:
    """Train/val images (N, H, W) or (N, D, H, W), values in [0, 1], with integer labels.

    Labels may be ``-1`` for unlabelled images; a set without any label trains self-supervised.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    source: str = ""
    label_names: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return "3d-volume" if self.train_images.ndim == 4 else "2d-slice"

    @property
    def labelled(self) -> bool:
        return bool((self.train_labels >= 0).any())

    def validate(self) -> None:
        if self.train_images.ndim not in (3, 4):
            raise TrainingDataError(f"{self.source}: images must be (N, H, W) or (N, D, H, W), got {self.train_images.shape}")
        if self.val_images.shape[1:] != self.train_images.shape[1:]:
            raise TrainingDataError(f"{self.source}: train and val image shapes differ")
        if len(self.train_images) != len(self.train_labels) or len(self.val_images) != len(self.val_labels):
            raise TrainingDataError(f"{self.source}: image and label counts differ")
        if len(self.train_images) < 16 or len(self.val_images) < 4:
            raise TrainingDataError(f"{self.source}: too few images to train (train {len(self.train_images)}, val {len(self.val_images)})")


def _to_unit(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    lo, hi = np.percentile(x, [0.5, 99.5])
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def load_npz(path: str | Path, val_fraction: float = 0.15, seed: int = 0) -> LabelledArrays:
    """Load a MedMNIST-style labelled set.

    ``path`` is an ``.npz`` file or a folder holding one. Keys ``train_images``/``train_labels``
    and ``val_images``/``val_labels`` are used as they are; a file with only ``train_*`` is
    split (``val_fraction``, stratified-free random split with ``seed``). Colour images
    (trailing axis of 3) are converted to grey. Test splits are ignored on purpose: they are
    not for tuning.
    """
    p = Path(path)
    if p.is_dir():
        files = sorted(p.glob("*.npz"))
        if len(files) != 1:
            raise TrainingDataError(f"{p}: expected exactly one .npz file in the folder, found {len(files)}")
        p = files[0]
    if not p.is_file():
        raise TrainingDataError(f"{p}: no such file")
    try:
        data = np.load(p)
    except (OSError, ValueError) as exc:
        raise TrainingDataError(f"{p}: not a readable npz file: {exc}") from exc
    if "train_images" not in data.files or "train_labels" not in data.files:
        raise TrainingDataError(f"{p}: needs train_images and train_labels arrays (has {data.files})")
    tx, ty = data["train_images"], data["train_labels"].reshape(len(data["train_labels"]), -1)[:, 0]
    if "val_images" in data.files and "val_labels" in data.files:
        vx, vy = data["val_images"], data["val_labels"].reshape(len(data["val_labels"]), -1)[:, 0]
    else:
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(tx))
        nval = max(4, int(len(tx) * val_fraction))
        vx, vy, tx, ty = tx[order[:nval]], ty[order[:nval]], tx[order[nval:]], ty[order[nval:]]

    def grey(x: np.ndarray) -> np.ndarray:
        if x.shape[-1] == 3 and x.ndim in (4, 5):
            return (x.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
        return _to_unit(x)

    out = LabelledArrays(grey(tx), ty.astype(np.int64), grey(vx), vy.astype(np.int64), source=str(p))
    out.validate()
    return out


# The held-out test split Casebook carves out of a labelled set's train split: never used for any
# choice (architecture, epochs, augmentation, threshold), only reported once a model is final.
HOLDOUT_FRACTION = 0.2
HOLDOUT_SEED = 11  # issue 11 of the project, where the split was introduced


def stratified_holdout(labels: np.ndarray, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(keep, held)`` sorted index arrays: ``fraction`` of every class (rounded) goes to ``held``.

    Stratified so the held-out split has the train split's class balance; deterministic in
    ``seed`` and in the labels alone, so the benchmark and the trainer carve the same split
    without sharing state.
    """
    y = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        n = int(round(len(idx) * fraction))
        held.append(rng.permutation(idx)[:n])
    h = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    keep = np.setdiff1d(np.arange(len(y)), h)
    return keep, h


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> list[np.ndarray]:
    """``k`` disjoint sorted index arrays covering ``labels``, each with the overall class balance.

    Cross-validation folds for model selection: member ``i`` of an ensemble trains on the other
    folds and picks its epoch on fold ``i``, so no split outside train is used for any choice.
    """
    if k < 2:
        raise TrainingDataError(f"cross-validation needs at least 2 folds, not {k}")
    y = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    folds: list[list[np.ndarray]] = [[] for _ in range(k)]
    offset = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        for n, part in enumerate(np.array_split(idx, k)):
            folds[(n + offset) % k].append(part)
        offset += len(idx) % k  # keep fold sizes level across classes
    out = [np.sort(np.concatenate(f)) for f in folds]
    if any(len(f) == 0 for f in out):
        raise TrainingDataError(f"too few images ({len(y)}) for {k} cross-validation folds")
    return out


@dataclass
class HeldOutSet:
    """A labelled set split three ways: the training arrays (train minus held-out, and val) and the
    held-out test images that only the final report may look at."""

    data: LabelledArrays
    test_images: np.ndarray
    test_labels: np.ndarray
    holdout_fraction: float
    holdout_seed: int

    @property
    def description(self) -> str:
        return (f"held-out test = {self.holdout_fraction:.0%} of each class of the train split "
                f"(numpy default_rng seed {self.holdout_seed}, casebook.inference.training.data.stratified_holdout)")


def load_npz_with_holdout(path: str | Path, fraction: float = HOLDOUT_FRACTION, seed: int = HOLDOUT_SEED) -> HeldOutSet:
    """:func:`load_npz`, then the held-out test split carved out of train (see :func:`stratified_holdout`)."""
    d = load_npz(path)
    keep, held = stratified_holdout(d.train_labels, fraction, seed)
    train = LabelledArrays(d.train_images[keep], d.train_labels[keep], d.val_images, d.val_labels,
                           source=d.source, label_names=d.label_names)
    train.validate()
    return HeldOutSet(train, d.train_images[held], d.train_labels[held], fraction, seed)


__all__ = ["LabelledArrays", "load_npz", "TrainingDataError", "default_intensity", "stratified_holdout",
           "stratified_folds", "HeldOutSet", "load_npz_with_holdout", "HOLDOUT_FRACTION", "HOLDOUT_SEED"]


def default_intensity(kind: str) -> dict[str, IntensitySpec]:
    """Intensity rules for a model trained on 8-bit MedMNIST-style images."""
    if kind == "2d-slice":
        return {
            "XR": IntensitySpec("range"),
            # a wide chest window resembles a radiograph's contrast more than a soft-tissue one
            "CT": IntensitySpec("window", center=-300.0, width=1600.0),
            "MR": IntensitySpec("percentile", low=1.0, high=99.0),
            "default": IntensitySpec("percentile", low=0.5, high=99.5),
        }
    return {
        "CT": IntensitySpec("window", center=40.0, width=400.0),
        "MR": IntensitySpec("percentile", low=1.0, high=99.0),
        # 8-bit volumes (the training data's own form) divided by 255, wider data by its robust
        # range: a percentile rule would blow up a small 8-bit shape mask to all-foreground
        "default": IntensitySpec("range"),
    }
