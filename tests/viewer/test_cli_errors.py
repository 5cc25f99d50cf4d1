"""The CLI's one wrapper: exit codes, one-line errors without tracebacks, global options after the
sub-command, settings refused at start-up, the display check, and bring-your-own-model errors."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from casebook.inference.card import IntensitySpec, ModelCard
from casebook.inference.export import write_card
from casebook.inference.runtime import Encoder, max_ir_version
from casebook.viewer.cli import main
from casebook.viewer.commands.gui import display_problem

EXE = [sys.executable, "-m", "casebook.viewer.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CASEBOOK_")}
    env.update(CASEBOOK_CONFIG=str(tmp_path / "settings.toml"), CASEBOOK_LIBRARY=str(tmp_path / "lib"), **extra)
    return env


def test_library_option_after_the_subcommand(tmp_path: Path, need_shared, library_dir: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    ge = need_shared("dicom", "dcm_qa_ct", "In", "GE")
    other = tmp_path / "after"
    assert main(["ingest", str(ge), "--library", str(other), "--json"]) == 0
    capsys.readouterr()
    assert (other / "casebook.sqlite").exists() and not library_dir.exists()
    assert main(["ls", "--series", "--library", str(other)]) == 0
    assert "CT" in capsys.readouterr().out
    # -v is accepted on either side as well, and counts up
    assert main(["-v", "info", "-v", "--library", str(other)]) == 0
    assert str(other) in capsys.readouterr().out


def test_ingest_of_a_missing_path_is_refused_and_creates_nothing(library_dir: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(tmp_path / "nonexistent")]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"casebook ingest: {tmp_path / 'nonexistent'}: no such file or folder"
    assert not library_dir.exists()


def test_version_and_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ex:
        main(["--version"])
    assert ex.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("casebook ") and out.split()[1][0].isdigit()
    for cmd, words in (("model", "model card"), ("doctor", "cuDNN"), ("embed", "Ctrl-C")):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert words in " ".join(capsys.readouterr().out.split()), cmd


@pytest.mark.parametrize("var, value, fragment", [
    ("CASEBOOK_DECODE_PROCESSES", "abc", "decode processes must be int"),
    ("CASEBOOK_DEVICE", "tpu", "device must be one of auto, cpu, cuda"),
    ("CASEBOOK_INGEST_WORKERS", "-3", "ingest_workers must be >= 0"),
    ("CASEBOOK_TOP_K", "0", "search.top_k must be >= 1"),
])
def test_bad_environment_is_refused_at_start(tmp_path: Path, var: str, value: str, fragment: str) -> None:
    r = subprocess.run([*EXE, "ls"], env=_env(tmp_path, **{var: value}), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"casebook ls: {var}={value!r}")
    assert fragment in r.stderr and "Traceback" not in r.stderr


def test_bad_settings_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text('[search]\nmin_score = 3\n')
    r = subprocess.run([*EXE, "info"], env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "search.min_score must be <= 1" in r.stderr and str(tmp_path / "settings.toml") in r.stderr


def test_internal_errors_are_one_line_unless_vv(tmp_path: Path) -> None:
    # a bug (here: an exception type Casebook never raises on purpose) is named in one line
    hook = tmp_path / "sitecustomize.py"
    hook.write_text("from casebook.viewer.commands import info\n"
                    "def boom(args):\n    raise ZeroDivisionError('simulated bug')\n"
                    "info.run = boom\n")
    env = _env(tmp_path, PYTHONPATH=str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([*EXE, "info"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 70 and "Traceback" not in r.stderr
    assert "internal error: ZeroDivisionError: simulated bug (run with -vv" in r.stderr
    r = subprocess.run([*EXE, "info", "-vv"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 70 and "Traceback" in r.stderr


def test_gui_without_a_display_says_so(tmp_path: Path) -> None:
    env = _env(tmp_path)
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        env.pop(k, None)
    for argv in ([], ["gui"]):
        r = subprocess.run([*EXE, *argv], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stderr  # not Qt's abort (134)
        assert "no display: DISPLAY is not set" in r.stderr and "xvfb-run" in r.stderr
        assert "xcb-cursor0" not in r.stderr
    r = subprocess.run([*EXE, "gui"], env={**env, "DISPLAY": ":987"}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "DISPLAY=:987 is not reachable" in r.stderr
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    if os.environ.get("DISPLAY"):  # under pytest-xvfb: the real virtual display is found
        assert display_problem(dict(os.environ)) is None


def _card(**kw) -> ModelCard:
    base = dict(name="byo-test", version="1", input_kind="2d-slice", input_size=(16, 16), channels=1,
                embedding_size=128, intensity={"default": IntensitySpec("percentile")})
    base.update(kw)
    return ModelCard(**base)


def _onnx(path: Path, out_dim: int, ir_version: int) -> Path:
    """A real encoder graph: flatten (N, 1, 16, 16) and project to ``out_dim`` features."""
    w = helper.make_tensor("w", TensorProto.FLOAT, [256, out_dim],
                           np.random.default_rng(0).normal(size=(256, out_dim)).astype(np.float32).ravel())
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"], ["embedding"])],
        "byo", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 1, 16, 16])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", "D"])], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = ir_version
    onnx.save(model, path)
    return path


def test_model_add_names_the_real_output_shape(tmp_path: Path, library_dir: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    raw = _onnx(tmp_path / "raw.onnx", out_dim=64, ir_version=max_ir_version())
    model = write_card(raw, _card(), tmp_path / "byo.onnx")  # the card promises 128-d, the graph gives 64
    assert main(["model", "add", str(model)]) == 2
    err = capsys.readouterr().err
    assert "returned shape (2, 64) for a batch of 2" in err and "(N, 128)" in err
    assert "(1, 128)" not in err and "Traceback" not in err


def test_card_writer_makes_files_the_installed_onnxruntime_reads(tmp_path: Path) -> None:
    newest = onnx.IR_VERSION  # what the installed onnx package writes by default
    raw = _onnx(tmp_path / "raw.onnx", out_dim=128, ir_version=newest)
    out = write_card(raw, _card(), tmp_path / "byo.onnx")
    assert onnx.load(str(out)).ir_version == min(newest, max_ir_version())
    enc = Encoder(out, device="cpu")
    assert enc.encode(np.zeros((3, 1, 16, 16), np.float32) + 0.5).shape == (3, 128)


def test_model_replace_is_refused_once_embeddings_exist(tmp_path: Path, library_dir: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from casebook.index.case_store import CaseStore
    from casebook.inference.runtime import file_sha256

    first = write_card(_onnx(tmp_path / "a.onnx", 128, 8), _card(), tmp_path / "first.onnx")
    assert main(["model", "add", str(first)]) == 0
    library_dir.mkdir(parents=True, exist_ok=True)
    with CaseStore.open(library_dir / "casebook.sqlite") as store:
        store.register_model("byo-test", "1", file_sha256(library_dir / "models" / "byo-test-1.onnx"), 128, "2d-slice")
    capsys.readouterr()
    retrained = write_card(_onnx(tmp_path / "b.onnx", 128, 8), dataclasses.replace(_card(), description="retrained"),
                           tmp_path / "second.onnx")
    assert main(["model", "add", "--replace", str(retrained)]) == 2
    err = capsys.readouterr().err
    assert "already holds embeddings of byo-test@1" in err and "new card version" in err
    # the registered file is untouched, so `casebook embed` keeps working with it
    assert file_sha256(library_dir / "models" / "byo-test-1.onnx") == file_sha256(first)
