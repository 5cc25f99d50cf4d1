"""Bring-your-own-model helpers: put a Casebook model card into an ONNX file.

A hospital that fine-tuned a foundation model (a timm/torchvision/DINOv2 backbone, BiomedCLIP's
image tower...) exports it with :func:`export_torch` (or exports ONNX itself and calls
:func:`write_card`), then registers the file with ``casebook model add FILE.onnx``. torch is only
imported inside :func:`export_torch`, so the runtime never needs it.
"""
from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

from .card import CARD_KEY, ModelCard, check_graph
from .errors import ModelSpecError

log = logging.getLogger(__name__)


def write_card(model_path: str | Path, card: ModelCard, out_path: str | Path | None = None) -> Path:
    """Store ``card`` in the ONNX file's metadata (replacing any previous card), atomically.

    The card is validated on its own and against the graph before anything is written, so a
    wrong card never reaches disk.
    """
    import onnx

    src = Path(model_path)
    dst = Path(out_path) if out_path is not None else src
    try:
        model = onnx.load(str(src))
    except Exception as exc:
        raise ModelSpecError(f"{src}: not a readable ONNX model: {exc}") from exc
    card.validate(str(src))
    check_graph(model, card, str(src))
    keep = [p for p in model.metadata_props if p.key != CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    model.metadata_props.add(key=CARD_KEY, value=card.to_json())
    model.doc_string = card.description or model.doc_string
    model.producer_name = model.producer_name or "casebook"
    _fit_ir_version(model, str(src))
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".card-", suffix=".onnx", dir=dst.parent)
    os.close(fd)
    try:
        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    log.info("wrote model card %s into %s", card.ident, dst)
    return dst


def _fit_ir_version(model: Any, origin: str) -> None:
    """Lower the file's IR version to what the installed onnxruntime reads (the ``onnx`` package
    may write a newer one); refuse when the graph's opsets need a newer IR than that."""
    from onnx import helper

    from .runtime import max_ir_version

    top = max_ir_version()
    if model.ir_version <= top:
        return
    need = 3
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            for _rel, ir, opset, *_ in helper.VERSION_TABLE:
                if opset >= imp.version:
                    need = max(need, ir)
                    break
    if need > top:
        raise ModelSpecError(f"{origin}: its opset needs ONNX IR {need}, the installed onnxruntime reads up to "
                             f"IR {top}: export with a lower opset (e.g. 17) or upgrade onnxruntime")
    log.info("%s: IR version %d lowered to %d for onnxruntime", origin, model.ir_version, top)
    model.ir_version = top


def export_torch(module: Any, card: ModelCard, out_path: str | Path, opset: int = 17) -> Path:
    """Export a torch module (in eval mode, input ``(N, C, [D,] H, W)``) to ONNX with ``card``.

    The batch axis is dynamic; input and output names come from the card. The module may return
    a tensor or a tuple whose first element is the embedding.
    """
    import torch

    class _First(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Any) -> Any:
            y = self.inner(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            return y.flatten(1)

    card.validate(str(out_path))
    wrapped = _First(module).eval()
    example = torch.zeros((2, card.channels, *card.input_size), dtype=torch.float32)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_suffix(".raw.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(
                wrapped,
                (example,),
                str(tmp),
                input_names=[card.input_name],
                output_names=[card.output_name],
                dynamic_axes={card.input_name: {0: "batch"}, card.output_name: {0: "batch"}},
                opset_version=opset,
                dynamo=False,
            )
    try:
        write_card(tmp, card, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


__all__ = ["write_card", "export_torch"]
