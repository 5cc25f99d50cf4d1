"""Training of Casebook's own encoders (optional ``train`` extra: torch).

``data`` is numpy-only (so a caller can assemble a training set without torch installed);
``nets``, ``augment`` and ``train`` import torch.
"""
from .data import LabelledArrays, load_npz

__all__ = ["LabelledArrays", "load_npz"]
