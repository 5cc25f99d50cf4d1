"""``casebook reports`` and ``casebook study`` end to end on a real library folder."""
from __future__ import annotations

import io
import json
import sqlite3
import sys
from pathlib import Path

import pytest

from casebook.viewer.cli import main

from .reports_samples import oru, write_ct


@pytest.fixture
def library(library_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    write_ct(tmp_path / "dicom" / "a", study_uid="1.2.826.0.1.3680043.10.1", accession="ACC1001")
    write_ct(tmp_path / "dicom" / "b", study_uid="1.2.826.0.1.3680043.10.2", accession="ACC2002", seed=3)
    assert main(["ingest", str(tmp_path / "dicom")]) == 0
    capsys.readouterr()
    return library_dir


def test_reports_import_list_show_and_vocabulary(library: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "a.hl7").write_text(oru())
    (tmp_path / "r" / "late.hl7").write_text(oru(accession="ACC3003", control="M3"))
    (tmp_path / "r" / "bad.hl7").write_text("MSH|^~\\&|RIS|X|||2024||ADT^A01|1|P|2.5\r")
    (tmp_path / "r" / "x.csv").write_text("ACC;Befund;Beurteilung\nACC2002;Left rib 5 cortical break.;Fractured rib, left.\n")
    assert main(["reports", "import", str(tmp_path / "r"), "--map", "findings=Befund",
                 "--map", "impression=Beurteilung"]) == 1  # one bad file
    out, err = capsys.readouterr()
    assert "3 new reports" in out and "1 waiting for their study" in out
    assert "bad.hl7: message 1: is ADT^A01 (MSH-9), not an ORU^R01 result" in err
    assert main(["reports", "list", "--unmatched", "--json"]) == 0
    [waiting] = json.loads(capsys.readouterr().out)
    assert waiting["accession_number"] == "ACC3003" and waiting["link_strength"] == "none"
    assert waiting["patient_issuer"] == "GENHOSP"  # PID-3's assigning authority
    assert main(["reports", "list", "--unmatched"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "issuer" in table[0].split() and "GENHOSP" in table[-1] and "UNMATCHED" in table[-1]
    assert main(["reports", "show", "ACC1001"]) == 0
    out = capsys.readouterr().out
    assert "History:\nCough for three weeks." in out and "finding: pulmonary nodule" in out
    assert main(["reports", "link", str(waiting["id"]), "ACC1001"]) == 0
    capsys.readouterr()
    assert main(["reports", "list", "--json"]) == 0
    assert {d["accession_number"]: d["link_method"] for d in json.loads(capsys.readouterr().out)}["ACC3003"] \
        == "manual"
    assert main(["reports", "vocabulary", "add", "rib fracture", "--synonym", "fractured rib"]) == 0
    assert main(["reports", "vocabulary", "map", "Fractured rib, left"]) == 0
    assert capsys.readouterr().out.strip().endswith("rib fracture")
    assert main(["ls", "--diagnosis", "fractured rib", "--json"]) == 0
    assert [s["accession_number"] for s in json.loads(capsys.readouterr().out)] == ["ACC2002"]
    assert main(["reports", "vocabulary", "add", "x", "--synonym", "lung nodule"]) == 2  # refused, one line
    assert "already names 'pulmonary nodule'" in capsys.readouterr().err


def test_study_set_show_and_delete(library: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    assert main(["study", "set", "ACC1001", "--diagnosis", "lung nodule", "--tag", "teaching", "--tag", "chest",
                 "--note", "compare with 2022"]) == 0
    assert "diagnosis: lung nodule → finding: pulmonary nodule" in capsys.readouterr().out
    assert main(["ls", "--tag", "teaching", "--diagnosis", "pulmonary nodule", "--json"]) == 0
    [st] = json.loads(capsys.readouterr().out)
    assert main(["study", "set", str(st["id"]), "--untag", "chest", "--source", "feedback"]) == 0
    capsys.readouterr()
    assert main(["study", "show", "1.2.826.0.1.3680043.10.1"]) == 0
    out = capsys.readouterr().out
    assert "lung nodule → pulmonary nodule" in out and "reader (" in out
    assert "remove 'chest'" in out and "feedback" in out
    assert main(["study", "set", "ACC9999", "--note", "x"]) == 2
    assert "study 'ACC9999' is not in the library" in capsys.readouterr().err
    assert main(["study", "set", "ACC1001"]) == 2  # nothing to set
    capsys.readouterr()

    db = library / "casebook.sqlite"
    # no terminal and no --yes: refused, nothing deleted
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))
    assert main(["study", "delete", "ACC1001"]) == 2
    assert "without confirmation" in capsys.readouterr().err
    files = sorted((tmp_path / "dicom" / "a").glob("*.dcm"))
    assert main(["embed", "--no-regions"]) == 0  # vectors of both studies, in the store and the index
    capsys.readouterr()
    from casebook.index.case_store import CaseStore
    from casebook.index.vector_index import VectorIndex
    from casebook.viewer.core.config import load_settings

    settings = load_settings()
    with CaseStore.open(db, create=False) as store:
        model = store.list_models()[0]
        index = VectorIndex.open(settings.index_dir, model.key, model.dim, store.embedding_source(model.id))
        assert len(index.live_labels) == 8  # 2 series × (3 slices + the series vector)
        index.close()
    assert main(["study", "delete", "ACC1001", "--yes"]) == 0
    assert "study 1 removed: 1 series, 3 files (left on disk)" in capsys.readouterr().out
    assert all(f.exists() for f in files)
    with CaseStore.open(db, create=False) as store:
        live = set(store.embedding_source(model.id).labels().tolist())
        assert len(live) == 4
        index = VectorIndex.open(settings.index_dir, model.key, model.dim)  # the file alone, no catching up
        assert set(index.live_labels.tolist()) == live  # the study's vectors left the index too
        index.close()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM study WHERE accession_number = 'ACC1001'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM label_event").fetchone()[0] == 0
    # the nightly re-ingest of the same folder does not bring it back; --rescan does
    assert main(["ingest", str(tmp_path / "dicom")]) == 0
    capsys.readouterr()
    assert main(["ls", "--json"]) == 0
    assert [s["accession_number"] for s in json.loads(capsys.readouterr().out)] == ["ACC2002"]
    assert main(["study", "delete", "ACC2002", "--yes", "--delete-files"]) == 0
    assert "(3 deleted from disk)" in capsys.readouterr().out
    assert not any((tmp_path / "dicom" / "b").glob("*.dcm"))
    assert main(["ingest", str(tmp_path / "dicom"), "--rescan"]) == 0
    capsys.readouterr()
    assert main(["ls", "--json"]) == 0
    assert [s["accession_number"] for s in json.loads(capsys.readouterr().out)] == ["ACC1001"]
