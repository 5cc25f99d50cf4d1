"""Batch augmentations on torch tensors (N, C, [D,] H, W) in [0, 1], for 2D and 3D alike.

Random affine (scale, rotation, shift, flips), intensity contrast/brightness/gamma jitter, blur
and noise: the views a radiologist would still call "the same image", which is what the
self-supervised loss teaches the encoder to ignore.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine(x: torch.Tensor, scale: tuple[float, float] = (0.8, 1.1), max_rot_deg: float = 12.0,
                  max_shift: float = 0.08, flip: bool = True, gen: torch.Generator | None = None) -> torch.Tensor:
    n, dims = x.shape[0], x.dim() - 2
    s = torch.empty(n).uniform_(*scale, generator=gen)
    theta = torch.zeros(n, dims, dims + 1)
    if dims == 2:
        a = torch.empty(n).uniform_(-max_rot_deg, max_rot_deg, generator=gen) * math.pi / 180
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / s, -torch.sin(a) / s
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / s, torch.cos(a) / s
    else:
        # rotate in-plane (y, x) only: through-plane resolution of real volumes is usually worse
        a = torch.empty(n).uniform_(-max_rot_deg, max_rot_deg, generator=gen) * math.pi / 180
        theta[:, 0, 0], theta[:, 0, 1] = torch.cos(a) / s, -torch.sin(a) / s
        theta[:, 1, 0], theta[:, 1, 1] = torch.sin(a) / s, torch.cos(a) / s
        theta[:, 2, 2] = 1 / s
    if flip:
        f = (torch.rand(n, generator=gen) < 0.5).float() * 2 - 1
        theta[:, 0, 0] *= f
        theta[:, 1, 0] *= f
    theta[:, :, dims] = torch.empty(n, dims).uniform_(-max_shift, max_shift, generator=gen) * 2
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_intensity(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    n = x.shape[0]
    shape = (n,) + (1,) * (x.dim() - 1)
    contrast = torch.empty(shape).uniform_(0.75, 1.25, generator=gen)
    bright = torch.empty(shape).uniform_(-0.1, 0.1, generator=gen)
    gamma = torch.exp(torch.empty(shape).uniform_(-0.3, 0.3, generator=gen))
    x = x.clamp(0, 1) ** gamma
    x = (x - 0.5) * contrast + 0.5 + bright
    noise = torch.empty(shape).uniform_(0, 0.04, generator=gen)
    x = x + noise * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def random_blur(x: torch.Tensor, p: float = 0.3, gen: torch.Generator | None = None) -> torch.Tensor:
    dims = x.dim() - 2
    pool = F.avg_pool3d if dims == 3 else F.avg_pool2d
    blurred = pool(x, 3, stride=1, padding=1, count_include_pad=False)
    m = (torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), generator=gen) < p).float()
    return m * blurred + (1 - m) * x


def view(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """One random view of a batch."""
    return random_intensity(random_blur(random_affine(x, gen=gen), gen=gen), gen=gen)


def random_flips(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image independently along every spatial axis but the last (which random_affine flips)."""
    for axis in range(2, x.dim() - 1):
        m = torch.rand(x.shape[0], generator=gen) < 0.5
        x = torch.where(m.view((-1,) + (1,) * (x.dim() - 1)), torch.flip(x, dims=(axis,)), x)
    return x


def shape_view(x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    """A view of a binary shape mask: affine and mirror on every axis, no intensity jitter.

    A segmentation mask has no contrast, noise or blur to vary, and an organ's shape says the same
    mirrored (left and right glands) or turned a little; intensity jitter would teach the network
    to ignore grey levels the masks never had.
    """
    return random_flips(random_affine(x, gen=gen), gen=gen)


VIEWS = {"view": view, "shape": shape_view}

__all__ = ["view", "shape_view", "random_flips", "random_affine", "random_intensity", "random_blur", "VIEWS"]
