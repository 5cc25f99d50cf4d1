"""The shipped encoders, with Casebook's loading and preprocessing, still make the embeddings they
made when ``scripts/golden_embeddings.py`` wrote ``tests/data/golden_embeddings.npz``.

Comparing an encoder with itself (two transfer syntaxes, say) cannot catch a preprocessing change
that stays deterministic; a stored reference can. The tolerance allows float noise across CPUs
and onnxruntime builds, not a changed pipeline (a flipped axis or another window moves the
cosine far below it).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "data" / "golden_embeddings.npz"


def _script():
    spec = importlib.util.spec_from_file_location("golden_embeddings", REPO / "scripts" / "golden_embeddings.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_encoders_reproduce_their_golden_embeddings(shared_data) -> None:
    golden = np.load(GOLDEN)
    meta = json.loads(str(golden["meta"]))
    script = _script()
    arrays, shas = script.compute(shared_data)
    # a retrained model must come with new golden vectors (re-run the script): say which
    assert shas == meta["models"], "a shipped model changed: re-run scripts/golden_embeddings.py"
    assert set(arrays) == set(golden.files) - {"meta"}
    for key, got in arrays.items():
        want = golden[key]
        assert got.shape == want.shape, key
        cos = np.sum(got * want, axis=-1)
        assert np.all(cos > 0.9995), f"{key}: cosine to golden {np.round(cos, 5)}"
        assert np.allclose(got, want, atol=2e-3), f"{key}: max abs diff {np.abs(got - want).max():.2e}"


def test_golden_embeddings_tell_files_apart() -> None:
    """The reference is informative: each file's vector is far from the others' under every model."""
    golden = np.load(GOLDEN)
    meta = json.loads(str(golden["meta"]))
    keys = list(meta["files"])
    for model in meta["models"]:
        vecs = np.stack([golden[f"{model}/{k}/series"] for k in keys])
        sims = vecs @ vecs.T
        off = sims[~np.eye(len(keys), dtype=bool)]
        assert off.max() < 0.999, f"{model}: files not told apart ({np.round(sims, 4)})"
