"""Training and bring-your-own export; need the optional torch ('train' extra), skipped without it."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the 'train' extra (torch==2.13.0) is not installed")

from casebook.inference.card import IntensitySpec, ModelCard, read_card  # noqa: E402
from casebook.inference.export import export_torch  # noqa: E402
from casebook.inference.registry import add_model  # noqa: E402
from casebook.inference.runtime import Encoder  # noqa: E402
from casebook.inference.training.data import LabelledArrays, load_npz  # noqa: E402
from casebook.inference.training.train import TrainConfig, export_result, train_encoder  # noqa: E402


def test_export_randomly_initialised_torch_backbone(tmp_path) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(16, 24),
    ).eval()
    card = ModelCard(name="byo-test", version="0.1", input_kind="2d-slice", input_size=(48, 48), channels=3, embedding_size=24,
                     intensity={"default": IntensitySpec("percentile")}, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                     licence="Apache-2.0", training_data="none (random init)")
    out = export_torch(net, card, tmp_path / "byo.onnx")
    assert read_card(out).name == "byo-test"
    info = add_model(out, tmp_path / "models")
    enc = Encoder(info.path, device="cpu")
    x = np.random.default_rng(0).random((3, 3, 48, 48), dtype=np.float32)
    ref = torch.nn.functional.normalize(net(torch.from_numpy(x)), dim=1).detach().numpy()
    assert np.allclose(enc.encode(x), ref, atol=1e-4)


def test_train_small_encoder_supervised_and_self_supervised(tmp_path) -> None:
    rng = np.random.default_rng(0)
    n = 96
    y = rng.integers(0, 2, n)
    yy, xx = np.mgrid[:28, :28]
    imgs = np.where(y[:, None, None] == 1, (xx > 14), (yy > 14)).astype(np.float32) * 0.8 + rng.random((n, 28, 28)) * 0.2
    data = LabelledArrays(imgs[:72], y[:72], imgs[72:], y[72:], source="synthetic")
    cfg = TrainConfig(name="tiny", epochs=2, batch_size=32, width=4, embedding_size=16, input_size=32, threads=1)
    res = train_encoder(data, cfg)
    assert len(res.history) == 2 and "val_mAP@10" in res.history[0]
    out = export_result(res, tmp_path / "tiny.onnx")
    card = read_card(out)
    assert card.embedding_size == 16 and card.input_size == (32, 32) and "val_mAP@10" in card.metrics
    unl = LabelledArrays(imgs[:72], -np.ones(72, int), imgs[72:], -np.ones(24, int), source="synthetic")
    res2 = train_encoder(unl, TrainConfig(name="tiny-ssl", epochs=1, batch_size=32, width=4, embedding_size=16, input_size=32, threads=1))
    assert "val_view_top1" in res2.history[0]


def test_load_npz_medmnist_layout(need_shared) -> None:
    d = load_npz(need_shared("labelled", "pneumoniamnist_trainval.npz"))
    assert d.kind == "2d-slice" and d.labelled and d.train_images.max() <= 1.0
    assert len(d.val_images) == 524
