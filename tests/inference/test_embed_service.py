"""casebook embed over a real case store built by the real ingest service."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from casebook.index.case_store import CaseStore
from casebook.viewer.cli import main
from casebook.viewer.core.errors import Cancelled
from casebook.viewer.core.services.embedding import embed_missing
from casebook.viewer.core.services.ingest import ingest


def test_embed_missing_is_resumable_and_records_model(tmp_path, need_shared, baseline) -> None:
    src = need_shared("dicom", "dcm_qa_ct")
    store = CaseStore.open(tmp_path / "lib.sqlite", create=True)
    ingest([src], store, workers=2)
    ev = threading.Event()
    ev.set()
    with pytest.raises(Cancelled):
        embed_missing(store, baseline, cancel=ev)
    first = embed_missing(store, baseline, limit=1)
    assert first.done == 1 and first.remaining >= 1
    rest = embed_missing(store, baseline)
    assert rest.remaining == 0 and rest.done == first.remaining - len(rest.failed)
    rec = store.get_model("casebook-baseline@1.0")
    assert rec.sha256 == baseline.sha256 and rec.dim == baseline.embedding_size
    es = store.get_embeddings(rec.id)
    assert len(es.labels) > rest.done
    assert embed_missing(store, baseline).done == 0  # nothing left to do


def test_embed_cli(library_dir, need_shared, capsys) -> None:
    assert main(["ingest", str(need_shared("dicom", "dcm_qa_ct"))]) == 0
    capsys.readouterr()
    assert main(["embed", "--model", "casebook-cxr2d"]) == 0
    assert "casebook-cxr2d@1.0" in capsys.readouterr().out


def test_train_encoder_from_store(library_dir, need_shared, capsys) -> None:
    pytest.importorskip("torch", reason="the 'train' extra (torch==2.13.0) is not installed (scripts/test.sh installs it)")
    from casebook.viewer.core.services.embedding import training_set_from_store
    from casebook.viewer.core.services.library import open_store

    assert main(["ingest", str(need_shared("dicom", "dcm_qa_ct")), str(need_shared("dicom", "dcm_qa_ge"))]) == 0
    data = training_set_from_store(open_store(), "2d-slice", size=32, val_fraction=0.3)
    assert data.train_images.shape[1:] == (32, 32) and 0.0 <= data.train_images.min() and data.train_images.max() <= 1.0
    assert not data.labelled  # no diagnoses entered: self-supervised
    assert main(["train-encoder", "--from-store", "2d-slice", "--name", "lib-enc", "--epochs", "1", "--width", "4",
                 "--input-size", "32", "--batch-size", "16", "--threads", "1"]) == 0
    assert (library_dir / "models" / "lib-enc-1.onnx").is_file()


def test_training_set_from_store_labels_by_tags(library_dir, need_shared) -> None:
    """A teaching file's tags as classes (numpy only: runs without the train extra)."""
    from casebook.inference.training.data import TrainingDataError
    from casebook.viewer.core.services.embedding import training_set_from_store
    from casebook.viewer.core.services.library import open_store

    assert main(["ingest", str(need_shared("dicom", "dcm_qa_ct", "In")), str(need_shared("dicom", "dcm_qa_ge"))]) == 0
    store = open_store()
    try:
        studies = sorted({s.study_id for s in store.list_series()})
        assert len(studies) >= 3
        store.add_tag(studies[0], "bleed")
        store.add_tag(studies[1], "normal-head")
        store.add_tag(studies[2], "bleed")
        store.add_tag(studies[2], "normal-head")  # both: ambiguous, so unlabelled
        data = training_set_from_store(store, "2d-slice", size=32, val_fraction=0.3, label_tags=["bleed", "normal-head"])
        assert data.label_names == ["bleed", "normal-head"]
        labels = np.concatenate([data.train_labels, data.val_labels])
        assert set(labels.tolist()) == {-1, 0, 1}
        assert data.train_images.shape[1:] == (32, 32) and data.train_images.max() <= 1.0
        by_diag = training_set_from_store(store, "2d-slice", size=32, val_fraction=0.3)
        assert not by_diag.labelled  # no diagnoses entered
        with pytest.raises(TrainingDataError, match="fracture"):
            training_set_from_store(store, "2d-slice", size=32, label_tags=["bleed", "fracture"])
    finally:
        store.close()
