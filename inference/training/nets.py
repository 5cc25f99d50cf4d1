"""Small convolutional encoders that train in minutes on a CPU and export cleanly to ONNX.

Deliberately small: the shipped models are trained on two CPU cores and committed to the
repository (a few MB). A hospital with a GPU can raise ``width`` or bring its own backbone.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _block(dims: int, cin: int, cout: int, stride: int, convs: int = 2) -> nn.Sequential:
    conv = nn.Conv3d if dims == 3 else nn.Conv2d
    norm = nn.BatchNorm3d if dims == 3 else nn.BatchNorm2d
    layers: list[nn.Module] = []
    for n in range(convs):
        layers += [conv(cin if n == 0 else cout, cout, 3, stride=stride if n == 0 else 1, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class ConvEncoder(nn.Module):
    """Four stride-2 stages (one conv in the first, two in the others), global average + max pooling, a linear embedding layer.

    ``forward`` returns the embedding (what ships); ``project`` adds the MLP head used only by the
    contrastive loss during training (the usual SimCLR/SupCon practice: the representation
    before the head retrieves better than the head's output).

    With ``input_norm`` every image is standardised by its own mean and standard deviation first,
    so a radiograph exposed or windowed differently from the training images is seen the same.
    """

    def __init__(self, dims: int = 2, channels: int = 1, width: int = 16, embedding_size: int = 128, proj_size: int = 64,
                 input_norm: bool = False) -> None:
        super().__init__()
        self.dims = dims
        self.input_norm = input_norm
        w = [width, width * 2, width * 4, width * 8]
        stages = []
        cin = channels
        for n, cout in enumerate(w):
            # the first stage works at the largest resolution: one conv keeps CPU training fast
            stages.append(_block(dims, cin, cout, 2, convs=1 if n == 0 else 2))
            cin = cout
        self.features = nn.Sequential(*stages)
        self.embed = nn.Linear(2 * w[-1], embedding_size)
        self.head = nn.Sequential(nn.ReLU(), nn.Linear(embedding_size, embedding_size), nn.ReLU(), nn.Linear(embedding_size, proj_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_norm:
            axes = tuple(range(1, x.dim()))
            x = (x - x.mean(dim=axes, keepdim=True)) / (x.std(dim=axes, keepdim=True) + 1e-3)
        f = self.features(x)
        flat = f.flatten(2)
        pooled = torch.cat([flat.mean(dim=2), flat.amax(dim=2)], dim=1)
        return self.embed(pooled)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(x))


TTA_MODES = ("none", "lr", "mirrors")


def tta_flips(mode: str, dims: int) -> list[tuple[int, ...]]:
    """The mirror combinations a test-time-augmentation ``mode`` embeds (``()`` is the image as it is).

    ``"lr"``: the image and its left-right mirror; ``"mirrors"``: every combination of mirrors
    along the spatial axes (8 for a volume, 4 for a slice), the views a shape encoder trained
    with mirrors on every axis was taught to treat alike.
    """
    if mode == "none":
        return [()]
    if mode == "lr":
        return [(), (-1,)]
    if mode == "mirrors":
        axes = list(range(-dims, 0))
        return [tuple(a for j, a in enumerate(axes) if n >> j & 1) for n in range(2 ** dims)]
    raise ValueError(f"test-time augmentation {mode!r} is not one of {TTA_MODES}")


class Ensemble(nn.Module):
    """Several encoders as one: the concatenation of their L2-normalised embeddings over sqrt(K).

    The cosine of two such vectors is the mean of the members' cosines, so the exported graph
    ranks exactly as averaging the members' similarities would, in one ONNX file and one index.
    With test-time augmentation (``tta``, see :func:`tta_flips`; ``flip=True`` is ``"lr"``) each
    member also sees the mirrored image(s) and its unit embeddings are summed and renormalised,
    inside the graph, so every caller (viewer, CLI, index) gets the averaged vector.
    """

    def __init__(self, members: list[nn.Module], flip: bool = False, tta: str = "none") -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.tta = "lr" if flip and tta == "none" else tta
        tta_flips(self.tta, 2)  # validate early
        self.flip = self.tta != "none"
        self.scale = 1.0 / math.sqrt(len(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flips = tta_flips(self.tta, x.dim() - 2)
        # all views in one batch: one pass per member, whatever the number of mirrors
        views = torch.cat([torch.flip(x, dims=f) if f else x for f in flips]) if len(flips) > 1 else x
        outs = []
        for m in self.members:
            e = F.normalize(m(views), dim=1)
            if len(flips) > 1:
                e = F.normalize(e.reshape(len(flips), -1, e.shape[1]).sum(0), dim=1)
            outs.append(e)
        return torch.cat(outs, dim=1) * self.scale


class ShapeDescriptor(nn.Module):
    """Training-free 3D shape statistics of a volume's foreground, for the shape-mask encoders.

    Occupancy (log volume), surface (mean gradient magnitude) and its ratio to volume^(2/3)
    (compactness), and the rotation invariants of the second-moment tensor (trace, sum of
    principal minors, determinant, and two ratios of them: elongation and flatness without an
    eigen-solver, so the graph exports to plain ONNX) - standardised by the statistics of the
    training images (``mu``/``sd``). Beside them, the occupancy pooled on a ``grid``^3 lattice
    (mean removed). The two groups are L2-normalised and weighted by ``weights``.
    """

    STATS = 8

    def __init__(self, size: int, mean: float, std: float, grid: int = 8) -> None:
        super().__init__()
        self.mean, self.std, self.grid = float(mean), float(std), grid
        g = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
        zz, yy, xx = torch.meshgrid(g, g, g, indexing="ij")
        self.register_buffer("coords", torch.stack([zz, yy, xx])[None])  # (1, 3, D, H, W)
        k = torch.zeros(3, 1, 3, 3, 3)
        k[0, 0, 0, 1, 1], k[0, 0, 2, 1, 1] = -0.5, 0.5
        k[1, 0, 1, 0, 1], k[1, 0, 1, 2, 1] = -0.5, 0.5
        k[2, 0, 1, 1, 0], k[2, 0, 1, 1, 2] = -0.5, 0.5
        self.register_buffer("grad", k)
        self.register_buffer("mu", torch.zeros(self.STATS))
        self.register_buffer("sd", torch.ones(self.STATS))
        self.register_buffer("weights", torch.tensor([1.0, 1.0]))
        self.occupancy = True  # False: the pooled-occupancy group is left out (its weight was 0)

    def stats(self, x: torch.Tensor) -> torch.Tensor:
        v = (x * self.std + self.mean).clamp(0, 1)  # back to the [0, 1] occupancy
        n = v.shape[0]
        mass = v.flatten(1).sum(1) + 1e-6
        vol = v.flatten(1).mean(1)
        c = (v * self.coords).flatten(2).sum(2) / mass[:, None]  # (N, 3) centroid
        m = [[None] * 3 for _ in range(3)]
        for i in range(3):
            for j in range(i, 3):
                e = (v[:, 0] * self.coords[0, i] * self.coords[0, j]).flatten(1).sum(1) / mass - c[:, i] * c[:, j]
                m[i][j] = m[j][i] = e
        i1 = m[0][0] + m[1][1] + m[2][2]
        i2 = m[0][0] * m[1][1] + m[0][0] * m[2][2] + m[1][1] * m[2][2] - m[0][1] ** 2 - m[0][2] ** 2 - m[1][2] ** 2
        i3 = (m[0][0] * (m[1][1] * m[2][2] - m[1][2] ** 2) - m[0][1] * (m[0][1] * m[2][2] - m[1][2] * m[0][2])
              + m[0][2] * (m[0][1] * m[1][2] - m[1][1] * m[0][2]))
        g = F.conv3d(F.pad(v, (1, 1, 1, 1, 1, 1), mode="replicate"), self.grad)
        surf = torch.sqrt((g * g).sum(1) + 1e-12).flatten(1).mean(1)

        def lg(a: torch.Tensor) -> torch.Tensor:
            return torch.log(a.clamp(min=1e-6))

        return torch.stack([lg(vol), lg(surf), lg(surf) - lg(vol) * (2.0 / 3.0), lg(i1), lg(i2), lg(i3),
                            lg(i3) / 3 - lg(i1 / 3), lg(i2 / 3) / 2 - lg(i1 / 3)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = F.normalize((self.stats(x) - self.mu) / self.sd, dim=1)
        if not self.occupancy:
            return z * self.weights[0]
        v = (x * self.std + self.mean).clamp(0, 1)
        p = F.adaptive_avg_pool3d(v, self.grid).flatten(1)
        p = F.normalize(p - p.mean(dim=1, keepdim=True), dim=1)
        return torch.cat([z * self.weights[0], p * self.weights[1]], dim=1)


class Combined(nn.Module):
    """Learned embedding and hand-made descriptor side by side: ``sqrt(a)`` times the unit
    learned vector beside the descriptor (whose groups carry their own weights), so the cosine is
    a weighted mean of the parts' cosines with weights chosen by cross-validation."""

    def __init__(self, learned: nn.Module, descriptor: nn.Module, learned_weight: float) -> None:
        super().__init__()
        self.learned, self.descriptor, self.learned_weight = learned, descriptor, float(learned_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.normalize(self.learned(x), dim=1) * math.sqrt(self.learned_weight), self.descriptor(x)], dim=1)


__all__ = ["ConvEncoder", "Ensemble", "ShapeDescriptor", "Combined", "TTA_MODES", "tta_flips"]
