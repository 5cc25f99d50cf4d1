"""Which models exist: the built-in ones shipped in ``casebook.resources`` and the library's own.

``add_model`` is the gate for bring-your-own models: the card is validated against the graph,
a test inference checks the output really has the promised size, and only then is the file
copied into the library's models folder as ``<name>-<version>.onnx``.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from casebook.resources import MODELS_DIR as BUILTIN_MODELS_DIR

from .card import ModelCard, read_card
from .errors import ModelSpecError
from .runtime import Encoder, file_sha256

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    card: ModelCard
    sha256: str
    builtin: bool


def _scan(folder: Path, builtin: bool, problems: list[str]) -> list[ModelInfo]:
    out = []
    if not folder.is_dir():
        return out
    for p in sorted(folder.glob("*.onnx")):
        if p.name.endswith(".fp16.onnx"):
            continue
        try:
            out.append(ModelInfo(p, read_card(p), file_sha256(p), builtin))
        except ModelSpecError as exc:
            problems.append(str(exc))
            log.warning("skipping model: %s", exc)
    return out


def list_models(models_dir: Path | None = None, problems: list[str] | None = None) -> list[ModelInfo]:
    """Built-in models then the library's; invalid files are reported in ``problems``, not raised."""
    problems = problems if problems is not None else []
    found = _scan(BUILTIN_MODELS_DIR, True, problems)
    if models_dir is not None:
        found += _scan(Path(models_dir), False, problems)
    return found


def find_model(name: str, models_dir: Path | None = None) -> ModelInfo:
    """``name`` or ``name@version``; the library's copy wins over a built-in of the same name,
    and the highest version wins when none is given."""
    want, _, version = name.partition("@")
    hits = [m for m in list_models(models_dir) if m.card.name == want and (not version or m.card.version == version)]
    if not hits:
        raise ModelSpecError(f"model {name!r} not found (built-in or in {models_dir})")

    def key(m: ModelInfo) -> tuple:
        parts = tuple(int(p) if p.isdigit() else 0 for p in m.card.version.split("."))
        return (parts, not m.builtin)

    return max(hits, key=key)


def load_encoder(name: str, models_dir: Path | None = None, device: str = "auto") -> Encoder:
    return Encoder(find_model(name, models_dir).path, device=device)


def validate_model(path: str | Path) -> ModelCard:
    """Card + graph check, then one real inference on a blank batch of two."""
    path = Path(path)
    enc = Encoder(path, device="cpu")
    card = enc.card
    x = np.zeros((2, card.channels, *card.input_size), np.float32)
    try:
        enc.encode(x + 0.5)
    except ModelSpecError as exc:
        raise ModelSpecError(f"{path}: test inference on a batch of 2: {exc}") from exc
    except Exception as exc:  # onnxruntime's own exception types: the graph cannot run
        raise ModelSpecError(f"{path}: test inference failed: {' '.join(str(exc).split())}") from exc
    return card


def add_model(path: str | Path, models_dir: Path, replace: bool = False) -> ModelInfo:
    """Validate and copy a model into ``models_dir``; refuses to overwrite a different file
    registered under the same name and version unless ``replace``."""
    src = Path(path)
    card = validate_model(src)
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    dst = models_dir / f"{card.name}-{card.version}.onnx"
    digest = file_sha256(src)
    if dst.exists() and not replace and file_sha256(dst) != digest:
        raise ModelSpecError(f"{src}: a different model {card.ident} is already registered at {dst}; bump the card version or use --replace")
    if src.resolve() != dst.resolve():
        tmp = dst.with_suffix(".onnx.part")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
        fp16 = src.with_name(src.stem + ".fp16.onnx")
        if fp16.is_file():
            shutil.copyfile(fp16, dst.with_name(dst.stem + ".fp16.onnx"))
    log.info("registered model %s at %s", card.ident, dst)
    return ModelInfo(dst, card, digest, False)


__all__ = ["ModelInfo", "list_models", "find_model", "load_encoder", "validate_model", "add_model", "BUILTIN_MODELS_DIR"]
