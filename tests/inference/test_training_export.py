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


def _stripes(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two classes a radiologist would tell apart at a glance (vertical vs horizontal edge), with noise;
    the minority class is a quarter of the set, like the normals of PneumoniaMNIST."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.75).astype(np.int64)
    yy, xx = np.mgrid[:28, :28]
    imgs = np.where(y[:, None, None] == 1, (xx > 14), (yy > 14)).astype(np.float32) * 0.7 + rng.random((n, 28, 28)) * 0.3
    return imgs, y


def test_cross_validated_ensemble_exports_as_one_graph(tmp_path) -> None:
    imgs, y = _stripes(120)
    data = LabelledArrays(imgs[:96], y[:96], imgs[96:], y[96:], source="synthetic")
    cfg = TrainConfig(name="tiny-ens", epochs=2, batch_size=32, width=4, embedding_size=8, input_size=32, threads=1,
                      members=2, input_norm=True)
    res = train_encoder(data, cfg)
    # each member chose its epoch on its own fold of train: the history says which, val chose nothing
    assert len(res.member_epochs) == 2 and all(1 <= e <= 2 for e in res.member_epochs)
    assert {h["member"] for h in res.history} == {1, 2} and all("cv_bal_mAP@10" in h for h in res.history)
    assert "cross-validation" in res.card.metrics["selected_on"] and "val_bal_P@1" in res.card.metrics
    out = export_result(res, tmp_path / "ens.onnx")
    card = read_card(out)
    assert card.embedding_size == 16 and "ensemble of 2" in card.description
    enc = Encoder(out, device="cpu")
    x = np.random.default_rng(1).random((4, 1, 32, 32), dtype=np.float32)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(res.model(torch.from_numpy(x)), dim=1).numpy()
    got = enc.encode(x)
    assert np.allclose(got, ref, atol=1e-4)
    # the concatenated vector's cosine is the mean of the members' cosines
    members = [torch.nn.functional.normalize(m(torch.from_numpy(x)), dim=1).detach().numpy() for m in res.model.members]
    assert np.allclose(got @ got.T, np.mean([m @ m.T for m in members], axis=0), atol=1e-4)
    # per-image standardisation in the graph: a brighter, higher-contrast copy embeds the same
    assert np.allclose(enc.encode(x * 1.5 + 0.2), got, atol=1e-3)


def test_balanced_batches_draw_classes_evenly() -> None:
    from casebook.inference.training.train import _sample_order

    labels = torch.tensor([0] * 10 + [1] * 90)
    order = _sample_order(labels, True, torch.Generator().manual_seed(0))
    assert len(order) == 100 and 35 <= int((labels[order] == 0).sum()) <= 65
    plain = _sample_order(labels, False, torch.Generator().manual_seed(0))
    assert sorted(plain.tolist()) == list(range(100))


def test_heldout_split_is_stratified_fixed_and_disjoint(need_shared) -> None:
    from casebook.inference.training.data import load_npz_with_holdout, stratified_folds, stratified_holdout

    path = need_shared("labelled", "pneumoniamnist_trainval.npz")
    full = load_npz(path)
    keep, held = stratified_holdout(full.train_labels)
    assert len(np.intersect1d(keep, held)) == 0 and len(keep) + len(held) == len(full.train_labels)
    # 20% of every class, the same indices on every call (the benchmark and the trainer agree)
    for c in (0, 1):
        n = int((full.train_labels == c).sum())
        assert int((full.train_labels[held] == c).sum()) == round(0.2 * n)
    assert np.array_equal(stratified_holdout(full.train_labels)[1], held)
    h = load_npz_with_holdout(path)
    assert len(h.data.train_images) == len(keep) and np.array_equal(h.test_labels, full.train_labels[held])
    folds = stratified_folds(h.data.train_labels, 3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(keep)))
    shares = [h.data.train_labels[f].mean() for f in folds]
    assert max(shares) - min(shares) < 0.01


def test_from_store_supervised_then_audit_compares_before_and_after(library_dir, need_shared, capsys) -> None:
    """The library's own diagnoses train an encoder, and `casebook audit` reports it beside the model it replaces."""
    import json

    from casebook.viewer.cli import main
    from casebook.viewer.core.services.library import open_store

    mr = [str(need_shared("dicom", "dcm_qa_ts", "In", f"{n}.dcm")) for n in (1, 2, 3)]
    assert main(["ingest", str(need_shared("dicom", "dcm_qa_ct", "In")), *mr]) == 0
    store = open_store()
    try:
        studies = sorted({s.study_id: s.modality for s in store.list_series()}.items())
        assert len(studies) >= 3 and {m for _, m in studies} == {"CT", "MR"}
        for sid, modality in studies:  # a diagnosis a reader could have entered: CT head vs MR brain work-up
            store.set_report(sid, diagnosis="head CT" if modality == "CT" else "brain MR")
    finally:
        store.close()
    assert main(["embed", "--model", "casebook-cxr2d"]) == 0  # the shipped slice encoder: "before"
    capsys.readouterr()
    assert main(["train-encoder", "--from-store", "2d-slice", "--name", "lib-sup", "--epochs", "1", "--width", "4",
                 "--input-size", "32", "--batch-size", "16", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert ", labelled" in err and "self-supervised" not in err  # the diagnoses became classes
    assert (library_dir / "models" / "lib-sup-1.onnx").is_file()
    assert main(["embed", "--model", "lib-sup"]) == 0
    capsys.readouterr()
    assert main(["audit", "--json", "--sample", "20"]) == 0
    reports = {r["model_key"].split("@")[0]: r for r in json.loads(capsys.readouterr().out)}
    assert {"casebook-cxr2d", "lib-sup"} <= set(reports)
    for key in ("casebook-cxr2d", "lib-sup"):  # before and after, on the same labelled cases
        assert reports[key]["diagnosis_queries"] > 0 and reports[key]["precision_at_1"] is not None
    assert reports["casebook-cxr2d"]["diagnosis_queries"] == reports["lib-sup"]["diagnosis_queries"]


def test_from_store_without_labels_trains_self_supervised(library_dir, need_shared, capsys) -> None:
    """A library nobody has labelled still trains its own encoder: NT-Xent over augmented views of its slices."""
    from casebook.inference.card import read_card as card_of
    from casebook.viewer.cli import main

    mr = [str(need_shared("dicom", "dcm_qa_ts", "In", f"{n}.dcm")) for n in (1, 2, 3)]
    assert main(["ingest", str(need_shared("dicom", "dcm_qa_ct", "In")), *mr]) == 0
    capsys.readouterr()
    assert main(["train-encoder", "--from-store", "2d-slice", "--name", "lib-ssl", "--epochs", "1", "--width", "4",
                 "--input-size", "32", "--batch-size", "16", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "unlabelled (self-supervised)" in captured.err
    assert "val_view_top1" in captured.out  # chosen on how often a view finds its own image, not on labels
    out = library_dir / "models" / "lib-ssl-1.onnx"
    card = card_of(out)
    assert "NT-Xent" in card.description and "SupCon" not in card.description and "cross-entropy" not in card.description


def test_shape_descriptor_is_rotation_invariant_and_exports_with_the_ensemble(tmp_path) -> None:
    from casebook.inference.training.nets import ShapeDescriptor

    g = np.mgrid[:16, :16, :16] - 7.5
    ellipsoid = ((g[0] / 6) ** 2 + (g[1] / 3) ** 2 + (g[2] / 2) ** 2 < 1).astype(np.float32)
    ball = ((g ** 2).sum(0) < 16).astype(np.float32)
    desc = ShapeDescriptor(16, mean=0.0, std=1.0)
    st = desc.stats(torch.from_numpy(np.stack([ellipsoid, ellipsoid.transpose(2, 0, 1), ball])[:, None]))
    assert torch.allclose(st[0], st[1], atol=1e-4)  # the same shape turned: the same statistics
    assert (st[0] - st[2]).abs().max() > 0.3  # an elongated gland is not a round mass
    # a tiny 3D training: the descriptor weights are chosen by cross-validation and ship in the graph
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    r = np.sqrt((g ** 2).sum(0))
    imgs = np.stack([(r < 3 + 3 * v + rng.random() * 2).astype(np.float32) for v in y])
    data = LabelledArrays(imgs[:48], y[:48], imgs[48:], y[48:], source="synthetic")
    res = train_encoder(data, TrainConfig(name="tiny-3d", epochs=1, batch_size=16, width=2, embedding_size=8, input_size=16,
                                          threads=1, members=2, shape_descriptor=True))
    assert "shape descriptor" in res.card.description and "descriptor_weights" in res.card.metrics
    out = export_result(res, tmp_path / "tiny3d.onnx")
    enc = Encoder(out, device="cpu")
    x = ((imgs[:4, None] - res.card.mean[0]) / res.card.std[0]).astype(np.float32)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(res.model(torch.from_numpy(x)), dim=1).numpy()
    assert enc.card.embedding_size == ref.shape[1] and np.allclose(enc.encode(x), ref, atol=1e-4)


def test_shape_views_mirror_every_axis_and_keep_masks_binary() -> None:
    from casebook.inference.training.augment import random_flips, shape_view

    x = torch.zeros(64, 1, 8, 8, 8)
    x[:, :, :2, :2, :2] = 1.0  # a corner cube: every mirror moves it to another corner
    flipped = random_flips(x, gen=torch.Generator().manual_seed(0))
    corners = {(int(f[0, :, :, :].nonzero()[0, 0] > 3), int(f[0].nonzero()[0, 1] > 3)) for f in flipped}
    assert corners == {(0, 0), (0, 1), (1, 0), (1, 1)}  # depth and height axes both mirrored, independently
    assert torch.equal(flipped.sum(dim=(1, 2, 3, 4)), x.sum(dim=(1, 2, 3, 4)))  # a mirror adds or loses nothing
    v = shape_view(x, gen=torch.Generator().manual_seed(1))
    assert v.shape == x.shape and float(v.min()) >= 0.0 and float(v.max()) <= 1.0 + 1e-6  # no intensity jitter or noise


def test_cross_entropy_mixup_training_selects_by_p_at_1_and_exports_without_the_classifier(tmp_path) -> None:
    imgs, y = _stripes(120, seed=3)
    data = LabelledArrays(imgs[:96], y[:96], imgs[96:], y[96:], source="synthetic")
    cfg = TrainConfig(name="tiny-ce", epochs=3, batch_size=32, width=4, embedding_size=8, input_size=32, threads=1,
                      members=2, ssl_weight=0.0, supervised_weight=0.0, ce_weight=1.0, mixup=0.4, augment="shape",
                      balanced=False, select_metric="P@1")
    res = train_encoder(data, cfg)
    # each member's epoch is the one with its fold's best P@1
    for m, e in enumerate(res.member_epochs, start=1):
        rows = [h for h in res.history if h["member"] == m]
        assert rows[e - 1]["cv_P@1"] == max(h["cv_P@1"] for h in rows)
    assert "cross-entropy with mixup 0.4" in res.card.description and "NT-Xent" not in res.card.description
    out = export_result(res, tmp_path / "ce.onnx")
    card = read_card(out)
    assert card.embedding_size == 16  # two members' embeddings; the classifier is not in the graph
    # the two stripe directions are told apart: every val image's nearest training image shares its label
    enc = Encoder(out, device="cpu")
    from casebook.inference.metrics import retrieval_scores

    def vec(a: np.ndarray) -> np.ndarray:
        t = torch.nn.functional.interpolate(torch.from_numpy(a[:, None].astype(np.float32)), size=(32, 32), mode="bilinear",
                                            align_corners=False, antialias=True).clamp(0, 1).numpy()
        return enc.encode(((t - card.mean[0]) / card.std[0]).astype(np.float32))
    s = retrieval_scores(vec(imgs[96:]), y[96:], vec(imgs[:96]), y[:96], k=5)
    assert s.p_at_1 >= 0.9


def test_unknown_augment_or_selection_metric_is_refused() -> None:
    from casebook.inference.training.data import TrainingDataError

    imgs, y = _stripes(40)
    data = LabelledArrays(imgs[:32], y[:32], imgs[32:], y[32:], source="synthetic")
    with pytest.raises(TrainingDataError, match="augment"):
        train_encoder(data, TrainConfig(epochs=1, augment="elastic", threads=1))
    with pytest.raises(TrainingDataError, match="select_metric"):
        train_encoder(data, TrainConfig(epochs=1, select_metric="accuracy", threads=1))


def test_mirror_tta_in_the_graph_makes_the_embedding_mirror_invariant(tmp_path) -> None:
    from casebook.inference.training.nets import ConvEncoder, Ensemble, tta_flips

    assert len(set(tta_flips("mirrors", 3))) == 8 and tta_flips("lr", 3) == [(), (-1,)] and tta_flips("none", 2) == [()]
    torch.manual_seed(0)
    members = [ConvEncoder(dims=3, width=2, embedding_size=8).eval() for _ in range(2)]
    for m in members:
        torch.nn.init.zeros_(m.embed.bias)  # untrained, the bias alone would make every embedding alike
    card = ModelCard(name="tta-test", version="0.1", input_kind="3d-volume", input_size=(16, 16, 16), channels=1,
                     embedding_size=16, intensity={"default": IntensitySpec("range")}, mean=(0.0,), std=(1.0,),
                     licence="CC0-1.0", training_data="none (random init)")
    x = np.random.default_rng(0).random((3, 1, 16, 16, 16), dtype=np.float32) * 0.2
    x[:, :, :5, 2:9, :4] += 0.8  # an off-centre block: its mirror image lies elsewhere
    mirrored = np.ascontiguousarray(x[:, :, ::-1, :, ::-1])  # depth and left-right mirrored
    plain = Encoder(export_torch(Ensemble(members).eval(), card, tmp_path / "plain.onnx"), device="cpu")
    tta = Encoder(export_torch(Ensemble(members, tta="mirrors").eval(), card, tmp_path / "tta.onnx"), device="cpu")
    # without TTA a random network tells a volume from its mirror; with it, the graph cannot
    assert np.abs(plain.encode(x) - plain.encode(mirrored)).max() > 1e-3
    assert np.allclose(tta.encode(x), tta.encode(mirrored), atol=1e-4)
    # the graph's vector is the renormalised sum of the member's unit embeddings over the 8 mirrors
    t = torch.from_numpy(x)
    with torch.no_grad():
        views = [torch.nn.functional.normalize(members[0](torch.flip(t, dims=f) if f else t), dim=1) for f in tta_flips("mirrors", 3)]
    first = torch.nn.functional.normalize(torch.stack(views).sum(0), dim=1).numpy() / np.sqrt(2)
    assert np.allclose(tta.encode(x)[:, :8], first, atol=1e-4)


def test_repeated_cv_with_auto_tta_resumes_from_member_checkpoints(tmp_path) -> None:
    g = np.mgrid[:16, :16, :16] - 7.5
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 48)
    imgs = np.stack([((g[0] / (5 + 2 * v)) ** 2 + (g[1] / 3) ** 2 + (g[2] / (2 + rng.random())) ** 2 < 1).astype(np.float32) for v in y])
    data = LabelledArrays(imgs[:40], y[:40], imgs[40:], y[40:], source="synthetic")
    cfg = TrainConfig(name="tiny-rep", epochs=1, batch_size=16, width=2, embedding_size=4, input_size=16, threads=1, members=2,
                      repeats=2, tta="auto", augment="shape", ssl_weight=0.0, supervised_weight=0.0, ce_weight=1.0,
                      select_metric="P@1", checkpoint_dir=str(tmp_path / "ckpt"))
    res = train_encoder(data, cfg)
    # two repeats of 2-fold cross-validation: four members, one checkpoint each, one vector of 4 x 4
    assert len(res.member_epochs) == 4 and len(list((tmp_path / "ckpt").glob("tiny-rep-*-member*.pt"))) == 4
    assert set(res.card.metrics["tta_cv"]) == {"none", "lr", "mirrors"} and "repeated 2 times" in res.card.metrics["selected_on"]
    chosen = res.model.tta
    assert res.card.metrics["tta_cv"][chosen] == max(res.card.metrics["tta_cv"].values())
    # a second run of the same recipe trains nothing: the members come back from their checkpoints
    seen: list[str] = []
    again = train_encoder(data, cfg, progress=lambda d, t, m: seen.append(m))
    assert len(seen) == 4 and all("reused" in m for m in seen)
    x = torch.from_numpy(imgs[:3, None])
    with torch.no_grad():
        assert torch.allclose(res.model(x), again.model(x))
    # a changed recipe does not pick up another recipe's members
    other = train_encoder(data, TrainConfig(**{**cfg.__dict__, "lr": 1e-3, "repeats": 1}))
    assert len(other.member_epochs) == 2 and len(list((tmp_path / "ckpt").glob("*.pt"))) == 6
    with pytest.raises(Exception, match="tta"):
        train_encoder(data, TrainConfig(epochs=1, tta="rotations", threads=1))
