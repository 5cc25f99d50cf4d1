"""``casebook train-encoder``: train a Casebook encoder on a labelled npz set and register it.

Needs the optional ``train`` extra (``pip install 'casebook[train]'``, CPU torch). The trained
model is exported to ONNX with its model card and, unless ``--no-register``, copied into the
library's models folder so ``casebook embed`` and the viewer can use it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._console import print_table, progress_bar


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train-encoder", help="train an encoder on a labelled npz set (needs the 'train' extra)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, nargs="?", help="MedMNIST-style .npz (train_images/train_labels[/val_*]) or a folder with one")
    p.add_argument("--from-store", choices=("2d-slice", "3d-volume"), help="train on the library itself (labels: diagnoses) with this input kind")
    p.add_argument("--label-tags", metavar="TAG[,TAG...]",
                   help="with --from-store: classes are these study tags instead of diagnoses (e.g. a teaching file's categories)")
    p.add_argument("-o", "--out", type=Path, help="ONNX file to write (default: <models dir>/<name>-<version>.onnx)")
    p.add_argument("--name", default="casebook-custom", help="model name in the card (no spaces)")
    p.add_argument("--version", default="1", help="model version in the card")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--width", type=int, default=16, help="channels of the first stage (x2 per stage)")
    p.add_argument("--embedding-size", type=int, default=128)
    p.add_argument("--input-size", type=int, help="input size per axis (default 64 for 2D, 32 for 3D)")
    p.add_argument("--ssl-weight", type=float, default=0.5, help="weight of the self-supervised term")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--licence", default="", help="licence of the trained weights (follow the data's licence)")
    p.add_argument("--training-data", default="", help="one-line description of the training data for the card")
    p.add_argument("--no-register", action="store_true", help="do not copy the model into the library")
    p.set_defaults(func=run, cancellable=True)


def run(args: argparse.Namespace) -> int:
    try:
        from casebook.inference.training.train import TrainConfig, export_result, train_encoder
    except ImportError as exc:
        print(f"casebook train-encoder: needs torch (the 'train' extra): pip install 'casebook[train]' ({exc})",
              file=sys.stderr)
        return 2
    from casebook.inference.training.data import load_npz
    from casebook.viewer.core.config import load_settings

    settings = load_settings()
    if (args.data is None) == (args.from_store is None):
        print("casebook train-encoder: give an npz DATA path or --from-store KIND (not both)", file=sys.stderr)
        return 2
    if args.label_tags and not args.from_store:
        print("casebook train-encoder: --label-tags goes with --from-store", file=sys.stderr)
        return 2
    label_tags = [t for t in (args.label_tags or "").split(",") if t.strip()] or None
    if args.from_store:
        from casebook.viewer.core.services.embedding import training_set_from_store
        from casebook.viewer.core.services.library import open_store

        store = open_store(settings, create=False)
        try:
            with progress_bar("read library", unit="series") as bar0:
                data = training_set_from_store(store, args.from_store, size=args.input_size,
                                               label_tags=label_tags, progress=bar0, cancel=args.cancel)
        finally:
            store.close()
    else:
        data = load_npz(args.data)
    print(f"{data.source}: {data.kind}, train {len(data.train_images)}, val {len(data.val_images)}, "
          f"{'labelled' if data.labelled else 'unlabelled (self-supervised)'}", file=sys.stderr)
    cfg = TrainConfig(name=args.name, version=args.version, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      width=args.width, embedding_size=args.embedding_size, input_size=args.input_size,
                      ssl_weight=args.ssl_weight, threads=args.threads, seed=args.seed, licence=args.licence,
                      training_data=args.training_data)
    with progress_bar("train", unit="epochs") as bar:
        result = train_encoder(data, cfg, progress=bar)
    keys = [k for k in result.history[0] if k != "epoch"]
    print_table(["epoch", *keys], [[int(h["epoch"]), *(f"{h[k]:.4f}" for k in keys)] for h in result.history])
    out = args.out or settings.models_dir / f"{args.name}-{args.version}.onnx"
    export_result(result, out)
    print(f"best epoch {result.best_epoch} in {result.seconds:.0f}s; wrote {out}")
    if not args.no_register and out.resolve().parent != settings.models_dir.resolve():
        from casebook.inference.registry import add_model

        info = add_model(out, settings.models_dir)
        print(f"registered {info.card.ident} in {info.path}")
    return 0
