from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import onnx
import pytest

from casebook.inference.card import CARD_KEY, ModelCard, read_card
from casebook.inference.errors import ModelSpecError
from casebook.inference.export import write_card
from casebook.inference.registry import add_model, find_model, list_models
from casebook.inference.runtime import Encoder, choose_providers
from casebook.viewer.cli import main


def test_shipped_models_have_valid_cards_and_are_small() -> None:
    names = {m.card.name: m for m in list_models()}
    assert {"casebook-baseline", "casebook-cxr2d", "casebook-adrenal3d"} <= set(names)
    assert names["casebook-adrenal3d"].card.is_3d and not names["casebook-cxr2d"].card.is_3d
    for m in names.values():
        assert m.path.stat().st_size < 8_000_000
        assert m.card.licence


def test_missing_card_is_refused(tmp_path) -> None:
    m = onnx.load(str(find_model("casebook-baseline").path))
    del m.metadata_props[:]
    p = tmp_path / "nocard.onnx"
    onnx.save(m, str(p))
    with pytest.raises(ModelSpecError, match="no Casebook model card"):
        read_card(p)


def test_card_not_matching_graph_is_refused(tmp_path) -> None:
    src = find_model("casebook-baseline").path
    card = read_card(src)
    with pytest.raises(ModelSpecError, match="embedding_size"):
        write_card(src, dataclasses.replace(card, embedding_size=card.embedding_size + 1), tmp_path / "x.onnx")
    with pytest.raises(ModelSpecError, match="axis 2"):
        write_card(src, dataclasses.replace(card, input_size=(64, 64)), tmp_path / "y.onnx")
    m = onnx.load(str(src))
    for p in m.metadata_props:
        if p.key == CARD_KEY:
            p.value = "{not json"
    onnx.save(m, str(tmp_path / "z.onnx"))
    with pytest.raises(ModelSpecError, match="not valid JSON"):
        read_card(tmp_path / "z.onnx")


def test_card_validation_names_the_problem() -> None:
    d = json_card = read_card(find_model("casebook-cxr2d").path)
    bad = dataclasses.asdict(d)
    bad["input_kind"] = "4d"
    with pytest.raises(ModelSpecError, match="input_kind"):
        ModelCard.from_dict(bad, "m.onnx")
    del bad["intensity"]
    with pytest.raises(ModelSpecError, match="lacks intensity"):
        ModelCard.from_dict(bad, "m.onnx")
    assert json_card.intensity_for("CR").method == "range"
    assert json_card.intensity_for("CT").method == "window"


def test_cpu_fallback_without_gpu() -> None:
    providers, why = choose_providers("auto")
    assert providers[-1] == "CPUExecutionProvider" and why
    enc = Encoder(find_model("casebook-baseline").path, device="auto")
    assert enc.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert choose_providers("cpu")[0] == ["CPUExecutionProvider"]


def test_model_add_and_list_cli(tmp_path, library_dir, capsys) -> None:
    src = find_model("casebook-baseline").path
    card = read_card(src)
    mine = write_card(src, dataclasses.replace(card, name="hospital-model", version="2"), tmp_path / "mine.onnx")
    assert main(["model", "add", str(mine)]) == 0
    assert (library_dir / "models" / "hospital-model-2.onnx").is_file()
    assert find_model("hospital-model", library_dir / "models").card.version == "2"
    assert main(["model", "list"]) == 0
    out = capsys.readouterr().out
    assert "hospital-model" in out and "casebook-cxr2d" in out
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    assert main(["model", "add", str(junk)]) == 2  # refused: the CLI's one exit code for a bad input
    assert "junk.onnx" in capsys.readouterr().err
    # a different file under the same name+version is refused
    other = write_card(find_model("casebook-cxr2d").path, dataclasses.replace(read_card(find_model("casebook-cxr2d").path), name="hospital-model", version="2"), tmp_path / "other.onnx")
    with pytest.raises(ModelSpecError, match="already registered"):
        add_model(other, library_dir / "models")


def test_doctor_reports_provider(library_dir, capsys) -> None:
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "provider used CPUExecutionProvider" in out or "provider used CUDAExecutionProvider" in out
    assert "onnxruntime" in out
    assert "vector search: in place through a memory map (_hnswmap" in out  # the compiled module is built
