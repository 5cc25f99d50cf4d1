"""Nothing leaves the hospital: running a shipped encoder through onnxruntime writes no telemetry
state (ONNX Runtime's official builds keep a device id under ~/.cache/Microsoft and a session
file in $TMPDIR, and upload usage events, unless told not to)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import numpy as np
from casebook.inference.registry import find_model
from casebook.inference.runtime import Encoder
enc = Encoder(find_model("casebook-baseline").path, device="cpu")
x = np.random.default_rng(0).random((2, enc.card.channels, *enc.card.input_size), dtype=np.float32)
print(enc.encode(x).shape)
import onnxruntime
print("onnxruntime", onnxruntime.__version__)
"""


@pytest.mark.parametrize("preset", [None, "0"])
def test_an_encoder_run_leaves_no_telemetry_behind(tmp_path, preset) -> None:
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    env.update(HOME=str(home), TMPDIR=str(tmp), XDG_CACHE_HOME=str(home / ".cache"))
    if preset is not None:  # a shell that turned it back on: Casebook still switches it off
        env["ORT_DISABLE_TELEMETRY"] = preset
    p = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "onnxruntime" in p.stdout and "(2, " in p.stdout  # the encoder really ran
    left = sorted(str(x.relative_to(tmp_path)) for x in list(home.rglob("*")) + list(tmp.rglob("*")))
    assert not left, f"telemetry state written: {left}"
