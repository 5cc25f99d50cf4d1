"""Retrieval quality of Casebook's shipped encoders on labelled sets, on data no choice was made on.

Protocol (the one issue 11 measures): every query image of a split searches the *archive* by
cosine of embeddings, top 10; a hit is a neighbour with the query's label. The archive is the
train split minus Casebook's own held-out test split (20% of each class, carved with a fixed
seed by ``casebook.inference.training.data.stratified_holdout``), which is what the shipped
encoders were trained on. Query splits:

* ``val``: MedMNIST's val split (the shipped encoders select by cross-validation on train, so
  val chose nothing; older models chose their epoch on it);
* ``held-out``: the held-out test split, never used for any choice; report it, do not tune on it.

Every encoder goes through Casebook's own preprocessing (the model card's intensity rule and
resampling) and onnxruntime, as in the viewer. Compared in the same run: raw pixels (each image
flattened, mean removed, L2-normalised; 3D volumes 2x bin-averaged to 32^3), the training-free
``casebook-baseline`` and each learned encoder's graph with random weights. ``majority`` is the
P@1 of always answering the query split's majority class. ``balanced`` figures average over
classes (robust to a test split whose class balance differs). ``ECE`` is the expected
calibration error (10 equal-count bins) of P(same label | cosine) for the top-10 neighbours,
fitted by isotonic regression on the val queries and evaluated on the held-out queries.

    .venv/bin/python benchmarks/retrieval_quality.py [--shared DIR] [--extra NAME=MODEL.onnx ...] [--write]
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from casebook.inference.metrics import calibration_error, fit_isotonic, neighbour_pairs, retrieval_scores
from casebook.inference.registry import find_model
from casebook.inference.runtime import Encoder
from casebook.inference.training.data import HOLDOUT_FRACTION, HOLDOUT_SEED, stratified_holdout
from casebook.inference.training.evaluate import embed_arrays, raw_pixel_vectors

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "retrieval_quality.txt"


@dataclass(frozen=True)
class LabelledSet:
    file: str
    models: tuple[str, ...]  # the shipped encoders trained on it
    modality: str  # what Casebook is told the images are


# casebook-cxr2d 1.0 and casebook-adrenal3d's 1.0 were trained on the whole train split: their
# held-out rows are queries they were trained on (optimistic); the others never saw them.
SETS = (LabelledSet("pneumoniamnist_trainval.npz", ("casebook-cxr2d", "casebook-pneumonia2d"), "XR"),
        LabelledSet("adrenalmnist3d_64_trainval.npz", ("casebook-adrenal3d",), ""))


def random_init_copy(path: Path, out: Path, seed: int = 0) -> Path:
    """Same graph and card, He-initialised random weights (what the network is before training)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    rng = np.random.default_rng(seed)
    # the hand-made shape descriptor's constants (coordinates, difference kernels, its
    # standardisation) are not learned weights: they stay, only the networks are re-drawn
    fixed = {i for n in m.graph.node if "descriptor" in n.name for i in n.input}
    for init in m.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype.kind != "f" or init.name in fixed:
            continue
        if a.ndim >= 2:
            fan_in = int(np.prod(a.shape[1:]))
            new = rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), a.shape)
        elif "var" in init.name or init.name.endswith("weight"):
            new = np.ones(a.shape)
        elif a.ndim == 0:
            new = a  # scalar constants of the graph (eps, ensemble scale) are not weights
        else:
            new = np.zeros(a.shape)
        init.CopyFrom(numpy_helper.from_array(np.asarray(new, dtype=a.dtype), init.name))
    onnx.save(m, str(out))
    return out


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """Plain aligned text (the results file is read in a diff, not a terminal)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    fmt = lambda r: "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths)))  # noqa: E731
    return [fmt(headers), "-" * (sum(widths) + 2 * (len(widths) - 1)), *map(fmt, rows)]


def score_row(name: str, split: str, q: np.ndarray, ql: np.ndarray, db: np.ndarray, dl: np.ndarray) -> list[str]:
    s10 = retrieval_scores(q, ql, db, dl, k=10)
    s5 = retrieval_scores(q, ql, db, dl, k=5)
    majority = float(np.bincount(ql).max() / len(ql))
    per = " / ".join(f"{v:.3f}" for _, v in sorted(s10.per_class_p_at_1.items()))
    return [split, name, f"{s10.p_at_1:.3f}", f"{s5.p_at_k:.3f}", f"{s10.map_at_k:.3f}", f"{s10.balanced_p_at_1:.3f}",
            f"{s10.balanced_map_at_k:.3f}", per, f"{majority:.3f}"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = Path(os.environ.get("CASEBOOK_SHARED", REPO.parent / "shared"))
    ap.add_argument("--shared", type=Path, default=shared / "data", help="the shared data folder (with labelled/)")
    ap.add_argument("--extra", action="append", default=[], metavar="NAME=MODEL.onnx",
                    help="also score this model file on the set its card's kind fits (e.g. a previous version)")
    ap.add_argument("--write", action="store_true", help=f"also write the report to {RESULTS.relative_to(REPO)}")
    args = ap.parse_args()
    extras = [tuple(e.split("=", 1)) for e in args.extra]
    lines: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="cb-rq-"))
    for ls in SETS:
        path = args.shared / "labelled" / ls.file
        if not path.exists():
            print(f"skip {ls.file}: not found under {args.shared}", file=sys.stderr)
            continue
        d = np.load(path)
        tx, ty = d["train_images"], d["train_labels"].ravel().astype(np.int64)
        vx, vy = d["val_images"], d["val_labels"].ravel().astype(np.int64)
        keep, held = stratified_holdout(ty, HOLDOUT_FRACTION, HOLDOUT_SEED)
        ax, ay, hx, hy = tx[keep], ty[keep], tx[held], ty[held]
        cands: dict[str, Encoder | None] = {"raw pixels": None, "casebook-baseline": Encoder(find_model("casebook-baseline").path, device="cpu")}
        for model in ls.models:
            shipped = find_model(model).path
            cands[f"{model} random weights"] = Encoder(random_init_copy(shipped, tmp / f"{model}-random.onnx"), device="cpu")
        for name, file in extras:
            enc = Encoder(file, device="cpu")
            if enc.card.is_3d == (vx.ndim == 4):
                cands[name] = enc
        for model in ls.models:
            enc = Encoder(find_model(model).path, device="cpu")
            cands[f"{model} {enc.card.version}"] = enc
        rows: list[list[str]] = []
        for name, enc in cands.items():
            t0 = time.perf_counter()
            if enc is None:
                de, ve, he = raw_pixel_vectors(ax), raw_pixel_vectors(vx), raw_pixel_vectors(hx)
            else:
                de, ve, he = (embed_arrays(enc, x, ls.modality) for x in (ax, vx, hx))
            rows.append(score_row(name, "val", ve, vy, de, ay) + ["fit"])
            sv, hv = neighbour_pairs(ve, vy, de, ay, k=10), neighbour_pairs(he, hy, de, ay, k=10)
            iso = fit_isotonic(*sv)
            rows.append(score_row(name, "held-out", he, hy, de, ay) + [f"{calibration_error(iso(hv[0]), hv[1]):.3f}"])
            print(f"done {ls.file} {name} in {time.perf_counter() - t0:.0f}s", file=sys.stderr)
        rows.sort(key=lambda r: r[0] != "held-out")
        counts = (f"archive = train minus held-out: {len(ay)} ({np.bincount(ay).tolist()} per class); val queries {len(vy)} "
                  f"({np.bincount(vy).tolist()}); held-out queries {len(hy)} ({np.bincount(hy).tolist()})")
        lines += [f"{ls.file.split('_')[0]}: {counts}", ""]
        lines += table(["split", "encoder", "P@1", "P@5", "mAP@10", "bal P@1", "bal mAP@10", "P@1 per class",
                        "majority", "ECE"], rows)
        lines.append("")
    head = [f"# .venv/bin/python benchmarks/retrieval_quality.py ({platform.machine()}, {os.cpu_count()} cores, "
            f"{datetime.date.today().isoformat()}; load average at the end "
            f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})",
            f"# held-out test = {HOLDOUT_FRACTION:.0%} of each class of train, seed {HOLDOUT_SEED} (stratified_holdout); "
            "queries search the rest of train by cosine, hit = same label"]
    text = "\n".join(head + [""] + lines)
    print(text)
    if args.write:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
