"""``casebook audit`` on a real on-disk index in a temporary library."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from casebook.index.vector_index import ArraySource, VectorIndex
from casebook.viewer.cli import main
from casebook.viewer.core.config import load_settings
from casebook.viewer.core.services.search import audit_library


def _index(library: Path, n: int = 6000, dim: int = 48) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(25, dim))
    x = (centers[rng.integers(0, 25, n)] + 0.4 * rng.normal(size=(n, dim))).astype(np.float32)
    VectorIndex.open(library / "vectors", "audit-test@1", dim, ArraySource(np.arange(n) + 1, x)).close()


def test_audit_reports_size_recall_latency(library_dir: Path) -> None:
    _index(library_dir)
    [rep] = audit_library(load_settings(), k=10, sample=60)
    assert rep.model_key == "audit-test@1" and rep.vectors == 6000 and rep.dim == 48
    assert rep.index_bytes > 6000 * 48 * 4
    assert rep.recall_at_k is not None and rep.recall_at_k >= 0.95
    assert rep.hnsw_ms["p50"] > 0 and rep.exact_ms["p99"] >= rep.exact_ms["p50"]
    # Auditing only reads: the saved file is searched in place, with no private copy of it.
    assert rep.backend == "mapped" and rep.memory_bytes < rep.index_bytes / 10 and rep.delta == 0
    vi = VectorIndex.open(library_dir / "vectors", "audit-test@1", 48)
    vi.add(np.arange(50) + 10**6, np.random.default_rng(1).normal(size=(50, 48)).astype(np.float32))
    vi.close()
    [rep] = audit_library(load_settings(), k=10, sample=20)
    assert rep.vectors == 6050 and rep.delta == 50  # saved as a delta beside the untouched base file


def test_audit_cli_table_json_and_errors(library_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["audit"]) == 2  # refused, like every command with nothing to work on
    assert "no vector index" in capsys.readouterr().err
    _index(library_dir, n=3000)
    assert main(["audit", "--sample", "30"]) == 0
    out = capsys.readouterr().out
    assert "recall@10 HNSW vs exact" in out and "3,000 / 0" in out and "file searched in place" in out
    assert main(["audit", "--sample", "30", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data[0]["vectors"] == 3000
    assert main(["audit", "--model", "nope"]) == 2
    assert "of model 'nope'" in capsys.readouterr().err
