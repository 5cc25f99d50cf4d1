"""Shared fixtures: where the shared imaging data lives, temporary libraries.

Tests that need ``../shared/data`` skip with a reason when it is absent, except under
``CI=true`` where its absence is a failure (CI always has it beside the clone).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _shared_root() -> Path | None:
    env = os.environ.get("CASEBOOK_SHARED")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared")
    for c in candidates:
        if (c / "data").is_dir():
            return c / "data"
    return None


SHARED_DATA = _shared_root()


def require_shared(*parts: str) -> Path:
    """Path inside the shared data; skip (or fail under CI) when it is not there."""
    if SHARED_DATA is None or not SHARED_DATA.joinpath(*parts).exists():
        where = "/".join(parts) or "data"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared data {where} is missing under CI (set CASEBOOK_SHARED)")
        pytest.skip(f"shared data {where} not found (set CASEBOOK_SHARED or put shared/ beside the repo)")
    return SHARED_DATA.joinpath(*parts)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return require_shared()


@pytest.fixture
def library_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty library folder that the settings point at, so nothing touches the user's."""
    lib = tmp_path / "library"
    monkeypatch.setenv("CASEBOOK_LIBRARY", str(lib))
    monkeypatch.setenv("CASEBOOK_CONFIG", str(tmp_path / "settings.toml"))
    return lib


@pytest.fixture(scope="session")
def need_shared():
    """``need_shared("dicom", "dcm_qa_ct")`` -> Path, skipping (failing under CI) when absent."""
    return require_shared
