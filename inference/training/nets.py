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


class Ensemble(nn.Module):
    """Several encoders as one: the concatenation of their L2-normalised embeddings over sqrt(K).

    The cosine of two such vectors is the mean of the members' cosines, so the exported graph
    ranks exactly as averaging the members' similarities would, in one ONNX file and one index.
    With ``flip`` each member also sees the image mirrored left-right and its two embeddings are
    summed (test-time augmentation inside the graph).
    """

    def __init__(self, members: list[nn.Module], flip: bool = False) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.flip = flip
        self.scale = 1.0 / math.sqrt(len(members))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for m in self.members:
            e = F.normalize(m(x), dim=1)
            if self.flip:
                e = F.normalize(e + F.normalize(m(torch.flip(x, dims=(-1,))), dim=1), dim=1)
            outs.append(e)
        return torch.cat(outs, dim=1) * self.scale


__all__ = ["ConvEncoder", "Ensemble"]
