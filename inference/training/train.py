"""Contrastive training of a Casebook encoder and its export to ONNX with a model card.

Supervised contrastive (SupCon, Khosla et al. 2020) where labels exist, plus a self-supervised
NT-Xent term over two augmented views of every image (SimCLR). The self-supervised term is
what keeps the embedding informative beyond the few training labels (two classes in the
shipped sets): without it, SupCon collapses every image of a class onto one point, which is
useless for "find cases like this one". With no labels at all only the self-supervised term
is used. The checkpoint that retrieves best on the validation split is the one exported.
"""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..card import IntensitySpec, ModelCard
from ..errors import Cancelled
from ..export import export_torch
from ..metrics import retrieval_scores
from .augment import view
from .data import LabelledArrays, default_intensity
from .nets import ConvEncoder

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


@dataclass
class TrainConfig:
    """Hyper-parameters; the defaults are what the shipped encoders were trained with."""

    name: str = "casebook-encoder"
    version: str = "1"
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    temperature: float = 0.1
    supervised_weight: float = 1.0
    ssl_weight: float = 0.5
    width: int = 16
    embedding_size: int = 128
    input_size: int | None = None  # per axis; None: 64 for 2D, 32 for 3D
    seed: int = 0
    threads: int = 0  # 0: all cores
    device: str = "auto"  # auto (CUDA when torch sees a GPU) | cpu | cuda
    licence: str = ""
    training_data: str = ""
    description: str = ""
    intensity: dict[str, IntensitySpec] | None = None


@dataclass
class TrainResult:
    model: Any
    card: ModelCard
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    seconds: float = 0.0


def contrastive_loss(z: torch.Tensor, groups: torch.Tensor, temperature: float) -> torch.Tensor:
    """SupCon loss over L2-normalised ``z`` (2N, d); samples sharing a group id are positives.

    With one group per original image this is exactly NT-Xent (SimCLR).
    """
    sim = z @ z.t() / temperature
    n = z.shape[0]
    eye = torch.eye(n, dtype=torch.bool)
    sim = sim.masked_fill(eye, -1e9)
    pos = (groups[:, None] == groups[None, :]) & ~eye
    logprob = sim - torch.logsumexp(sim, dim=1, keepdim=True)
    npos = pos.sum(1).clamp(min=1)
    return -((logprob * pos).sum(1) / npos).mean()


def _prepare(x: np.ndarray, size: int) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).unsqueeze(1)
    dims = t.dim() - 2
    target = [size] * dims
    if list(t.shape[2:]) != target:
        mode = "trilinear" if dims == 3 else "bilinear"
        out = []
        for i in range(0, len(t), 256):
            out.append(F.interpolate(t[i : i + 256], size=target, mode=mode, align_corners=False, antialias=(dims == 2)))
        t = torch.cat(out)
    return t.clamp(0, 1)


@torch.no_grad()
def embed_tensor(model: Any, x: torch.Tensor, mean: float, std: float, batch: int = 256) -> np.ndarray:
    model.eval()
    dev = next(model.parameters()).device
    out = [model(((x[i : i + batch] - mean) / std).to(dev)).cpu() for i in range(0, len(x), batch)]
    return F.normalize(torch.cat(out), dim=1).numpy()


def train_encoder(data: LabelledArrays, config: TrainConfig, progress: Progress | None = None, cancel: Any = None) -> TrainResult:
    """Train an encoder on ``data``; returns the best checkpoint (by validation retrieval)."""
    data.validate()
    t0 = time.monotonic()
    threads = config.threads or len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    kind = data.kind
    dims = 3 if kind == "3d-volume" else 2
    size = config.input_size or (32 if dims == 3 else 64)
    tx, vx = _prepare(data.train_images, size), _prepare(data.val_images, size)
    ty, vy = torch.from_numpy(data.train_labels.astype(np.int64)), data.val_labels.astype(np.int64)
    mean, std = float(tx.mean()), float(tx.std()) or 1.0
    labelled = data.labelled
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda" if use_cuda else "cpu")
    model = ConvEncoder(dims=dims, channels=1, width=config.width, embedding_size=config.embedding_size).to(dev)
    log.info("training on %s", dev)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = max(1, len(tx) // config.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    history: list[dict[str, float]] = []
    best_score, best_state, best_epoch = -1.0, None, -1
    progress = progress or (lambda d, t, m: None)
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(tx), generator=gen)
        losses = []
        for step in range(steps_per_epoch):
            if cancel is not None and cancel.is_set():
                raise Cancelled("training cancelled")
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            xb = tx[idx]
            v = torch.cat([view(xb, gen=gen), view(xb, gen=gen)])
            z = F.normalize(model.project(((v - mean) / std).to(dev)), dim=1).cpu()
            inst = torch.arange(len(idx)).repeat(2)
            loss = config.ssl_weight * contrastive_loss(z, inst, config.temperature) if config.ssl_weight > 0 or not labelled else 0.0
            if labelled and config.supervised_weight > 0:
                yb = ty[idx].repeat(2)
                # unlabelled images (-1) only count as positives of their own other view
                groups = torch.where(yb >= 0, yb, -1 - inst)
                loss = loss + config.supervised_weight * contrastive_loss(z, groups, config.temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        ve = embed_tensor(model, vx, mean, std)
        rec: dict[str, float] = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        if labelled and (vy >= 0).any():
            te = embed_tensor(model, tx, mean, std)
            keep = vy >= 0
            s = retrieval_scores(ve[keep], vy[keep], te[data.train_labels >= 0], data.train_labels[data.train_labels >= 0], k=10)
            rec.update({"val_mAP@10": s.map_at_k, "val_P@1": s.p_at_1, "val_P@10": s.p_at_k})
            score = s.map_at_k
        else:
            # no labels: how often a val image's augmented view finds the image itself
            g2 = torch.Generator().manual_seed(1234)
            ve2 = embed_tensor(model, view(vx, gen=g2), mean, std)
            score = float(((ve2 @ ve.T).argmax(1) == np.arange(len(ve))).mean())
            rec["val_view_top1"] = score
        history.append(rec)
        if score > best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch + 1
        log.info("epoch %d/%d %s", epoch + 1, config.epochs, " ".join(f"{k}={v:.4f}" for k, v in rec.items() if k != "epoch"))
        progress(epoch + 1, config.epochs, " ".join(f"{k}={v:.3f}" for k, v in rec.items() if k != "epoch"))
    assert best_state is not None
    model.load_state_dict(best_state)
    model = model.cpu().eval()
    best = history[best_epoch - 1]
    card = ModelCard(
        name=config.name,
        version=config.version,
        input_kind=kind,
        input_size=(size,) * dims,
        channels=1,
        embedding_size=config.embedding_size,
        intensity=config.intensity or default_intensity(kind),
        target_spacing=None,
        mean=(mean,),
        std=(std,),
        licence=config.licence,
        training_data=config.training_data or data.source,
        description=config.description or (
            f"ConvEncoder width {config.width}, {'SupCon + ' if labelled else ''}NT-Xent, {config.epochs} epochs, best epoch {best_epoch}"),
        authors="Casebook developers",
        metrics={k: round(v, 4) for k, v in best.items() if k.startswith("val_")},
    )
    return TrainResult(model=model, card=card, history=history, best_epoch=best_epoch, seconds=time.monotonic() - t0)


def export_result(result: TrainResult, out_path: str | Path) -> Path:
    """Write the trained encoder as ONNX with its card."""
    return export_torch(result.model, result.card, out_path)


__all__ = ["TrainConfig", "TrainResult", "train_encoder", "export_result", "contrastive_loss", "default_intensity"]
