"""Shared fixtures of the inference tests: the shipped encoders (loaded once per session)."""
from __future__ import annotations

import pytest

from casebook.inference.registry import find_model
from casebook.inference.runtime import Encoder


@pytest.fixture(scope="session")
def baseline():
    return Encoder(find_model("casebook-baseline").path, device="cpu")


@pytest.fixture(scope="session")
def cxr2d():
    return Encoder(find_model("casebook-cxr2d").path, device="cpu")


@pytest.fixture(scope="session")
def adrenal3d():
    return Encoder(find_model("casebook-adrenal3d").path, device="cpu")
