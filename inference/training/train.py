"""Contrastive training of a Casebook encoder and its export to ONNX with a model card.

Supervised contrastive (SupCon, Khosla et al. 2020) where labels exist, plus a self-supervised
NT-Xent term over two augmented views of every image (SimCLR). The self-supervised term is
what keeps the embedding informative beyond the few training labels (two classes in the
shipped sets): without it, SupCon collapses every image of a class onto one point, which is
useless for "find cases like this one". With no labels at all only the self-supervised term
is used. Optionally (``ce_weight``) a cross-entropy term on a linear classifier over the
embedding, which is not exported: on small shape sets (AdrenalMNIST3D) the instance term kept
look-alike shapes of the other class as nearest neighbours. The checkpoint that retrieves best (class-balanced mAP@10, or ``select_metric``) on the selection split is
the one exported: the val split for one model, each member's own cross-validation fold for an
ensemble.
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
from .augment import VIEWS, view
from .data import LabelledArrays, TrainingDataError, default_intensity
from .nets import TTA_MODES, Combined, ConvEncoder, Ensemble, ShapeDescriptor

log = logging.getLogger(__name__)

Progress = Callable[[int, int, str], None]


@dataclass
class TrainConfig:
    """Hyper-parameters. The shipped encoders' own settings are in ``scripts/train_shipped_encoders.py``."""

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
    # Batches drawn with equal weight per class: a rare class (normals are a tenth of
    # PneumoniaMNIST's train split) shapes the embedding as much as a common one.
    balanced: bool = True
    # members > 1: a cross-validated ensemble. The train split is cut into that many stratified
    # folds; member i trains on the others and picks its epoch on fold i (val is never used for a
    # choice), and the exported graph concatenates the members (see nets.Ensemble).
    members: int = 1
    input_norm: bool = False  # standardise each image by its own mean/std inside the graph
    flip_tta: bool = False  # members also embed the mirrored image (inside the exported graph); same as tta="lr"
    # test-time augmentation inside the exported graph (nets.tta_flips): "none", "lr", "mirrors"
    # (every axis-mirror combination), or "auto": the one with the best cross-validated
    # select_metric over the members, each scored on its own fold (needs members > 1)
    tta: str = "none"
    # repeats > 1 (with members > 1): the cross-validation is run again with other folds (fold seed
    # seed + r) and other initialisations, and every repeat's members join the one ensemble
    repeats: int = 1
    # a folder where each member's selected weights are kept as it finishes: a run stopped half-way
    # (or repeated to change only what follows training) reuses the members of the same recipe
    checkpoint_dir: str = ""
    # 3D only: append nets.ShapeDescriptor (shape statistics and pooled occupancy) to the learned
    # embedding; the parts' weights are chosen by cross-validation (one of them: learned only)
    shape_descriptor: bool = False
    # Cross-entropy on a linear classifier over the embedding (training only, not exported): pulls
    # the classes apart where the contrastive terms alone keep look-alikes of another class close.
    ce_weight: float = 0.0
    mixup: float = 0.0  # > 0: the cross-entropy term sees mixup pairs (Beta(mixup, mixup) weights)
    augment: str = "view"  # augment.VIEWS: "view" (images) or "shape" (binary masks: affine + mirrors, no intensity)
    # the figure that picks each member's epoch: "bal_mAP@10" (robust to another class balance) or
    # "P@1" (what a reader sees first: the top analogue shares the finding)
    select_metric: str = "bal_mAP@10"
    licence: str = ""
    training_data: str = ""
    description: str = ""
    intensity: dict[str, IntensitySpec] | None = None


@dataclass
class TrainResult:
    model: Any
    card: ModelCard
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1  # of the single model; with an ensemble, of its first member
    seconds: float = 0.0
    member_epochs: list[int] = field(default_factory=list)


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


def _sample_order(labels: torch.Tensor, balanced: bool, gen: torch.Generator) -> torch.Tensor:
    """One epoch of indices: a permutation, or (balanced) a draw with equal weight per class."""
    n = len(labels)
    if not balanced:
        return torch.randperm(n, generator=gen)
    _, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if len(counts) < 2:
        return torch.randperm(n, generator=gen)
    weights = 1.0 / counts[inverse].double()
    return torch.multinomial(weights, n, replacement=True, generator=gen)


@dataclass
class _Split:
    """Training images of one member, and the queries/archive its epochs are scored on."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    query_x: torch.Tensor
    query_y: np.ndarray
    archive_x: torch.Tensor
    archive_y: np.ndarray
    prefix: str  # "val" or "cv": which split chose the epoch


SELECT_METRICS = ("bal_mAP@10", "P@1", "bal_P@1", "mAP@10")


def _score(model: Any, split: _Split, mean: float, std: float, labelled: bool, metric: str = "bal_mAP@10") -> dict[str, float]:
    qe = embed_tensor(model, split.query_x, mean, std)
    p = split.prefix
    if labelled and (split.query_y >= 0).any() and (split.archive_y >= 0).any():
        de = embed_tensor(model, split.archive_x, mean, std)
        keep, dkeep = split.query_y >= 0, split.archive_y >= 0
        s = retrieval_scores(qe[keep], split.query_y[keep], de[dkeep], split.archive_y[dkeep], k=10)
        # selected on the class-balanced mAP: robust to a test split with another class balance
        out = {f"{p}_mAP@10": s.map_at_k, f"{p}_P@1": s.p_at_1, f"{p}_P@10": s.p_at_k,
               f"{p}_bal_mAP@10": s.balanced_map_at_k, f"{p}_bal_P@1": s.balanced_p_at_1}
        out["score"] = out[f"{p}_{metric}"]
        return out
    # no labels: how often an image's augmented view finds the image itself
    g2 = torch.Generator().manual_seed(1234)
    qe2 = embed_tensor(model, view(split.query_x, gen=g2), mean, std)
    top1 = float(((qe2 @ qe.T).argmax(1) == np.arange(len(qe))).mean())
    return {f"{p}_view_top1": top1, "score": top1}


def _train_member(split: _Split, config: TrainConfig, dims: int, mean: float, std: float, labelled: bool, dev: torch.device,
                  seed: int, tick: Callable[[str], None], cancel: Any) -> tuple[Any, list[dict[str, float]], int]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ConvEncoder(dims=dims, channels=1, width=config.width, embedding_size=config.embedding_size,
                        input_norm=config.input_norm).to(dev)
    tx, ty = split.train_x, split.train_y
    augment = VIEWS[config.augment]
    use_ce = labelled and config.ce_weight > 0
    contrastive = not labelled or config.ssl_weight > 0 or config.supervised_weight > 0
    # the classifier only shapes the embedding during training; the exported graph ends before it
    classifier = torch.nn.Linear(config.embedding_size, int(ty.max()) + 1).to(dev) if use_ce else None
    params = list(model.parameters()) + (list(classifier.parameters()) if classifier is not None else [])
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    batch = min(config.batch_size, len(tx))
    steps_per_epoch = max(1, len(tx) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    history: list[dict[str, float]] = []
    best_score, best_state, best_epoch = -1.0, None, -1
    for epoch in range(config.epochs):
        model.train()
        order = _sample_order(ty, config.balanced and labelled, gen)
        losses = []
        for step in range(steps_per_epoch):
            if cancel is not None and cancel.is_set():
                raise Cancelled("training cancelled")
            idx = order[step * batch : (step + 1) * batch]
            xb = tx[idx]
            loss: Any = 0.0
            e = None
            if contrastive:
                v = torch.cat([augment(xb, gen=gen), augment(xb, gen=gen)])
                e = model(((v - mean) / std).to(dev))
                z = F.normalize(model.head(e), dim=1).cpu()
                # a balanced draw repeats images: the instance id is the image's index, so two copies
                # of one image (and their views) are positives of each other, never negatives
                inst = idx.repeat(2)
                if config.ssl_weight > 0 or not labelled:
                    # without labels the instance term is all there is: weight 1 when none was given
                    w_ssl = config.ssl_weight if config.ssl_weight > 0 else 1.0
                    loss = w_ssl * contrastive_loss(z, inst, config.temperature)
                if labelled and config.supervised_weight > 0:
                    yb = ty[idx].repeat(2)
                    # unlabelled images (-1) only count as positives of their own other view
                    groups = torch.where(yb >= 0, yb, -1 - inst)
                    loss = loss + config.supervised_weight * contrastive_loss(z, groups, config.temperature)
            if classifier is not None:
                ce = _ce_term(model, classifier, xb, ty[idx], e, augment, config.mixup, mean, std, dev, gen)
                loss = loss + config.ce_weight * ce.cpu()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
        rec: dict[str, float] = {"epoch": epoch + 1, "loss": float(np.mean(losses))}
        rec.update(_score(model, split, mean, std, labelled, config.select_metric))
        score = rec.pop("score")
        history.append(rec)
        if score > best_score:
            best_score, best_state, best_epoch = score, copy.deepcopy(model.state_dict()), epoch + 1
        msg = " ".join(f"{k}={v:.3f}" for k, v in rec.items() if k != "epoch")
        log.info("epoch %d/%d %s", epoch + 1, config.epochs, msg)
        tick(msg)
    assert best_state is not None
    model.load_state_dict(best_state)
    return model.cpu().eval(), history, best_epoch


def _ce_term(model: Any, classifier: Any, xb: torch.Tensor, yb: torch.Tensor, e: torch.Tensor | None, augment: Callable[..., torch.Tensor],
             mixup: float, mean: float, std: float, dev: torch.device, gen: torch.Generator) -> torch.Tensor:
    """Cross-entropy of the classifier over the embedding; unlabelled images (-1) are ignored.

    Reuses the contrastive views' embeddings ``e`` when there are some and mixup is off; with
    mixup, a fresh view of the batch is blended with a shuffled copy of itself.
    """
    yb = yb.to(dev)
    if mixup > 0:
        lam = float(torch.distributions.Beta(mixup, mixup).sample()) if gen is None else float(
            np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=gen))).beta(mixup, mixup))
        perm = torch.randperm(len(xb), generator=gen)
        x = augment(xb, gen=gen)
        logits = classifier(model((((lam * x + (1 - lam) * x[perm]) - mean) / std).to(dev)))
        return lam * F.cross_entropy(logits, yb, ignore_index=-1) + (1 - lam) * F.cross_entropy(logits, yb[perm.to(dev)], ignore_index=-1)
    if e is None:
        return F.cross_entropy(classifier(model(((augment(xb, gen=gen) - mean) / std).to(dev))), yb, ignore_index=-1)
    return F.cross_entropy(classifier(e), yb.repeat(2), ignore_index=-1)


WEIGHT_GRID = [(a / 10, b / 10, (10 - a - b) / 10) for a in range(0, 11, 2) for b in range(0, 11 - a, 2)]


@torch.no_grad()
def _attach_descriptor(model: Any, members: list[Any], splits: list[_Split], tx: torch.Tensor, size: int, mean: float,
                       std: float, metric: str = "bal_mAP@10") -> tuple[Any, tuple[float, float, float], float]:
    """Append a ShapeDescriptor and choose the parts' weights on held-back data.

    Each member's own selection split (its cross-validation fold, or val for one model) queries
    its training images with [learned, stats, occupancy] weighted by each point of
    ``WEIGHT_GRID``; the weights with the best mean ``metric`` (the one that picked the epochs) ship.
    """
    desc = ShapeDescriptor(size, mean, std)
    xs = (tx - mean) / std
    st = torch.cat([desc.stats(xs[i : i + 128]) for i in range(0, len(xs), 128)])
    desc.mu.copy_(st.mean(0))
    desc.sd.copy_(st.std(0).clamp(min=1e-6))
    desc.weights.copy_(torch.tensor([1.0, 1.0]))
    dim_z = ShapeDescriptor.STATS
    parts = []
    for member, split in zip(members, splits):
        def embed(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            x = (x - mean) / std
            d = torch.cat([desc(x[i : i + 128]) for i in range(0, len(x), 128)]).numpy()
            return embed_tensor(member, x, 0.0, 1.0), d[:, :dim_z], d[:, dim_z:]
        parts.append((embed(split.query_x), embed(split.archive_x), split))
    best, best_w = -1.0, (1.0, 0.0, 0.0)
    for w in WEIGHT_GRID:
        sw = np.sqrt(np.asarray(w, np.float32))
        scores = []
        for q, a, split in parts:
            qv = np.hstack([q[0] * sw[0], q[1] * sw[1], q[2] * sw[2]])
            av = np.hstack([a[0] * sw[0], a[1] * sw[1], a[2] * sw[2]])
            keep, dkeep = split.query_y >= 0, split.archive_y >= 0
            s = retrieval_scores(qv[keep], split.query_y[keep], av[dkeep], split.archive_y[dkeep], k=10)
            scores.append({"bal_mAP@10": s.balanced_map_at_k, "P@1": s.p_at_1, "bal_P@1": s.balanced_p_at_1,
                           "mAP@10": s.map_at_k}[metric])
        score = float(np.mean(scores))
        log.info("descriptor weights %s: %s %.4f", w, metric, score)
        if score > best + 1e-9:
            best, best_w = score, w
    if best_w[0] == 1.0:
        return model, best_w, best  # the descriptor did not help: ship the learned embedding alone
    desc.weights.copy_(torch.tensor([np.sqrt(best_w[1]), np.sqrt(best_w[2])], dtype=torch.float32))
    desc.occupancy = best_w[2] > 0
    return Combined(model, desc, best_w[0]).eval(), best_w, best


def _descriptor_note(weights: tuple[float, float, float], score: float, cv: bool, metric: str) -> str:
    """What the card says about the shape descriptor: appended with its weights, or tried and left out."""
    how = f"by {'cross-validation' if cv else 'val'} ({metric} {score:.4f} there)"
    if weights[0] == 1.0:
        return f"shape descriptor tried and left out of the graph: weights learned/stats/occupancy 1.0/0.0/0.0 {how}"
    return (f"shape descriptor appended, weights learned/stats/occupancy {weights[0]:.1f}/{weights[1]:.1f}/{weights[2]:.1f} {how}"
            + ("; zero-weight groups left out of the graph" if weights[2] == 0.0 else ""))


# fields that change nothing about a member's weights: a checkpoint stays valid across them
_NOT_RECIPE = {"name", "version", "threads", "device", "checkpoint_dir", "licence", "training_data", "description",
               "intensity", "tta", "flip_tta", "shape_descriptor", "repeats"}


def _checkpoint_path(config: TrainConfig, index: int, n_train: int, dims: int, size: int) -> Path | None:
    """Where member ``index`` of this recipe is kept (None without ``checkpoint_dir``).

    The name hashes every field that shapes a member's weights (and the training set's size and
    input shape), so a changed recipe never picks up another recipe's members.
    """
    if not config.checkpoint_dir:
        return None
    import hashlib
    import json
    from dataclasses import asdict

    recipe = {k: v for k, v in sorted(asdict(config).items()) if k not in _NOT_RECIPE}
    recipe.update(n_train=n_train, dims=dims, size=size, torch=torch.__version__)
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return Path(config.checkpoint_dir) / f"{config.name}-{digest}-member{index + 1}.pt"


def _load_member(path: Path, config: TrainConfig, dims: int) -> tuple[Any, list[dict[str, float]], int]:
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model = ConvEncoder(dims=dims, channels=1, width=config.width, embedding_size=config.embedding_size,
                        input_norm=config.input_norm)
    model.load_state_dict(saved["state"])
    return model.eval(), list(saved["history"]), int(saved["epoch"])


@torch.no_grad()
def _choose_tta(members: list[Any], splits: list[_Split], mean: float, std: float, labelled: bool,
                metric: str) -> tuple[str, dict[str, float]]:
    """The test-time augmentation with the best mean ``metric`` over the members, each on its own fold.

    Ties go to the cheaper mode (fewer passes): a mirror pass must earn its cost.
    """
    scores: dict[str, float] = {}
    for mode in TTA_MODES:
        per = [_score(Ensemble([m], tta=mode).eval(), split, mean, std, labelled, metric)["score"]
               for m, split in zip(members, splits)]
        scores[mode] = float(np.mean(per))
        log.info("tta %s: cross-validated %s %.4f", mode, metric, scores[mode])
    best = max(TTA_MODES, key=lambda k: (round(scores[k], 9), -TTA_MODES.index(k)))
    return best, scores


def train_encoder(data: LabelledArrays, config: TrainConfig, progress: Progress | None = None, cancel: Any = None) -> TrainResult:
    """Train an encoder (or a cross-validated ensemble) on ``data``; returns the selected checkpoint(s).

    One model picks its epoch on the val split; an ensemble (``config.members`` > 1) picks each
    member's epoch on its own held-back fold of train, so the val figures on its card are a
    measurement, not a choice.
    """
    data.validate()
    if config.augment not in VIEWS:
        raise TrainingDataError(f"augment {config.augment!r} is not one of {sorted(VIEWS)}")
    if config.select_metric not in SELECT_METRICS:
        raise TrainingDataError(f"select_metric {config.select_metric!r} is not one of {list(SELECT_METRICS)}")
    if config.tta not in TTA_MODES + ("auto",):
        raise TrainingDataError(f"tta {config.tta!r} is not one of {list(TTA_MODES + ('auto',))}")
    if config.tta == "auto" and config.members < 2:
        raise TrainingDataError("tta 'auto' is chosen by cross-validation: it needs members > 1")
    if config.repeats < 1 or (config.repeats > 1 and config.members < 2):
        raise TrainingDataError(f"repeats {config.repeats}: needs repeats >= 1, and members > 1 to repeat")
    t0 = time.monotonic()
    threads = config.threads or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))
    torch.set_num_threads(max(1, threads))
    kind = data.kind
    dims = 3 if kind == "3d-volume" else 2
    size = config.input_size or (32 if dims == 3 else 64)
    tx, vx = _prepare(data.train_images, size), _prepare(data.val_images, size)
    ty_np = data.train_labels.astype(np.int64)
    ty, vy = torch.from_numpy(ty_np), data.val_labels.astype(np.int64)
    mean, std = float(tx.mean()), float(tx.std()) or 1.0
    labelled = data.labelled
    use_cuda = config.device == "cuda" or (config.device == "auto" and torch.cuda.is_available())
    dev = torch.device("cuda" if use_cuda else "cpu")
    log.info("training on %s", dev)
    seeds: list[int] = []
    if config.members > 1:
        from .data import stratified_folds

        splits = []
        for r in range(max(1, config.repeats)):
            folds = stratified_folds(ty_np, config.members, seed=config.seed + r)
            for i, fold in enumerate(folds):
                rest = np.concatenate([f for j, f in enumerate(folds) if j != i])
                splits.append(_Split(tx[rest], ty[rest], tx[fold], ty_np[fold], tx[rest], ty_np[rest], "cv"))
                # repeat 0 keeps the seeds of the single cross-validation (same members as before)
                seeds.append(config.seed + 1000 * i + 100_000 * r)
    else:
        splits = [_Split(tx, ty, vx, vy, tx, ty_np, "val")]
        seeds.append(config.seed)
    total = config.epochs * len(splits)
    done = [0]
    report = progress or (lambda d, t, m: None)

    def tick(msg: str) -> None:
        done[0] += 1
        report(done[0], total, msg)

    members, history, epochs = [], [], []
    for i, split in enumerate(splits):
        ckpt = _checkpoint_path(config, i, len(tx), dims, size)
        if ckpt is not None and ckpt.is_file():
            m, h, e = _load_member(ckpt, config, dims)
            done[0] += config.epochs
            report(done[0], total, f"member {i + 1}: reused {ckpt.name}")
        else:
            m, h, e = _train_member(split, config, dims, mean, std, labelled, dev, seeds[i], tick, cancel)
            if ckpt is not None:
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                torch.save({"state": m.state_dict(), "history": h, "epoch": e}, ckpt)
        members.append(m)
        history += [dict(rec, member=i + 1) for rec in h] if len(splits) > 1 else h
        epochs.append(e)
    tta = "lr" if config.flip_tta and config.tta == "none" else config.tta
    tta_scores: dict[str, float] = {}
    if tta == "auto":
        tta, tta_scores = _choose_tta(members, splits, mean, std, labelled, config.select_metric)
    model: Any = members[0] if len(members) == 1 and tta == "none" else Ensemble(members, tta=tta).eval()
    out_size = config.embedding_size * len(members)
    descriptor_note = ""
    if config.shape_descriptor and dims == 3 and labelled:
        # the descriptor's weights are chosen on the members as they will ship (with their TTA)
        scored = [Ensemble([m], tta=tta).eval() for m in members] if tta != "none" else members
        model, weights, sel = _attach_descriptor(model, scored, splits, tx, size, mean, std, config.select_metric)
        out_size = int(model(torch.zeros((1, 1, *(size,) * 3))).shape[1])
        descriptor_note = _descriptor_note(weights, sel, len(splits) > 1, config.select_metric)
    if len(splits) > 1:
        chosen = [h for h in history if h["epoch"] == epochs[int(h["member"]) - 1]]
        metrics: dict[str, Any] = {k: round(float(np.mean([c[k] for c in chosen])), 4) for k in chosen[0] if k.startswith("cv_")}
        final = _score(model, _Split(tx, ty, vx, vy, tx, ty_np, "val"), mean, std, labelled)
        final.pop("score")
        metrics.update({k: round(v, 4) for k, v in final.items()})
        metrics["selected_on"] = (f"{config.members}-fold cross-validation on train"
                                  f"{f' repeated {config.repeats} times' if config.repeats > 1 else ''} (val not used for any choice)")
    else:
        best = history[epochs[0] - 1]
        metrics = {k: round(v, 4) for k, v in best.items() if k.startswith("val_")}
        metrics["selected_on"] = "val (these val figures chose the epoch)"
    terms = []
    if labelled and config.supervised_weight > 0:
        terms.append("SupCon")
    if config.ssl_weight > 0 or not labelled:
        terms.append("NT-Xent")
    if labelled and config.ce_weight > 0:
        terms.append(f"cross-entropy{f' with mixup {config.mixup:g}' if config.mixup > 0 else ''} (classifier not exported)")
    parts = [f"ConvEncoder width {config.width}{' with per-image input standardisation' if config.input_norm else ''}",
             f"{' + '.join(terms)}{' on class-balanced batches' if labelled and config.balanced else ''}",
             ("shape-mask views (affine, mirrors on every axis)" if config.augment == "shape"
              else "image views (affine, intensity, blur, noise)"),
             f"epochs picked by {config.select_metric}",
             f"{config.epochs} epochs, lr {config.lr:g}, weight decay {config.weight_decay:g}"]
    if len(members) > 1:
        rep_note = f" ({config.repeats} repeats of {config.members}-fold cross-validation)" if config.repeats > 1 else ""
        parts.append(f"ensemble of {len(members)} cross-validated members{rep_note} (best epochs {', '.join(map(str, epochs))})")
    else:
        parts.append(f"best epoch {epochs[0]}")
    if tta_scores:
        metrics["tta_cv"] = {k: round(v, 4) for k, v in tta_scores.items()}
        parts.append(f"test-time augmentation {tta!r} in the graph, chosen by cross-validated {config.select_metric} "
                     f"({', '.join(f'{k} {v:.4f}' for k, v in tta_scores.items())})")
    elif tta == "lr":
        parts.append("left-right flip test-time augmentation in the graph")
    elif tta == "mirrors":
        parts.append("test-time augmentation in the graph: the mean of the embeddings of every axis-mirror combination")
    if descriptor_note:
        parts.append(descriptor_note)
        metrics["descriptor_weights"] = descriptor_note
    card = ModelCard(
        name=config.name,
        version=config.version,
        input_kind=kind,
        input_size=(size,) * dims,
        channels=1,
        embedding_size=out_size,
        intensity=config.intensity or default_intensity(kind),
        target_spacing=None,
        mean=(mean,),
        std=(std,),
        licence=config.licence,
        training_data=config.training_data or data.source,
        description=config.description or ", ".join(parts),
        authors="Casebook developers",
        metrics=metrics,
    )
    return TrainResult(model=model, card=card, history=history, best_epoch=epochs[0], seconds=time.monotonic() - t0,
                       member_epochs=epochs)


def export_result(result: TrainResult, out_path: str | Path) -> Path:
    """Write the trained encoder as ONNX with its card."""
    return export_torch(result.model, result.card, out_path)


__all__ = ["TrainConfig", "TrainResult", "train_encoder", "export_result", "contrastive_loss", "default_intensity"]
