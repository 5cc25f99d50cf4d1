"""``casebook check`` and ``--repair`` on a real library: real DICOM files ingested into a real
SQLite case store, embedded by the shipped ONNX encoder, indexed by hnswlib; then broken the
ways issue 15 measured (a file deleted, an embedding lost, the index damaged, the database
damaged) and repaired from what the library keeps."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from casebook.viewer.cli import main


@pytest.fixture(scope="module")
def library(tmp_path_factory, need_shared):
    root = tmp_path_factory.mktemp("check")
    src = root / "dicom"
    shutil.copytree(need_shared("dicom", "dcm_qa_ts", "In"), src)
    lib = root / "library"
    mp = pytest.MonkeyPatch()
    mp.setenv("CASEBOOK_LIBRARY", str(lib))
    mp.setenv("CASEBOOK_CONFIG", str(root / "settings.toml"))
    assert main(["ingest", str(src)]) in (0, 1)
    assert main(["embed"]) == 0
    yield lib, src
    mp.undo()


def _check(capsys, *extra: str) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["check", "--json", *extra])
    return rc, json.loads(capsys.readouterr().out)


def _finding(rep: dict, prefix: str) -> dict:
    return next(f for f in rep["findings"] if f["check"].startswith(prefix))


def test_a_whole_library_passes(library, capsys):
    rc, rep = _check(capsys)
    assert rc == 0 and rep["ok"], rep
    assert {f["check"].split()[0] for f in rep["findings"]} == {"database", "series", "embeddings", "index", "files"}


def test_a_deleted_file_is_named_by_check_and_info(library, capsys):
    lib, src = library
    victim = sorted(src.glob("*.dcm"))[0]
    aside = victim.with_suffix(".away")
    os.replace(victim, aside)
    try:
        rc, rep = _check(capsys)
        assert rc == 1 and not _finding(rep, "files")["ok"]
        assert rep["files"]["missing"] == 1 and str(victim) in rep["files"]["examples"]
        capsys.readouterr()
        assert main(["info"]) == 0
        line = next(l for l in capsys.readouterr().out.splitlines() if "stored files missing" in l)
        assert "1 / 0" in line and "casebook check" in line
    finally:
        os.replace(aside, victim)
    assert _check(capsys)[0] == 0


def test_lost_embedding_and_damaged_index_are_repaired(library, capsys):
    lib, _src = library
    assert main(["check", "--repair"]) == 0  # builds the index (searches would too)
    vec = lib / "vectors"
    base = max(vec.glob("*.hnsw"), key=lambda p: p.stat().st_size)
    with open(base, "r+b") as f:  # damage the graph file in place
        f.seek(base.stat().st_size // 2)
        f.write(b"\xff" * 4096)
    con = sqlite3.connect(lib / "casebook.sqlite")
    sid = con.execute("SELECT series_id FROM embedding LIMIT 1").fetchone()[0]
    con.execute("DELETE FROM embedding WHERE series_id = ?", (sid,))
    con.commit()
    con.close()
    rc, rep = _check(capsys)
    assert rc == 1
    assert _finding(rep, "embeddings")["count"] == 1 and _finding(rep, "embeddings")["repairable"]
    assert not _finding(rep, "index")["ok"]
    rc, rep = _check(capsys, "--repair")
    assert rc == 0 and rep["ok"], rep
    assert any("embedded 1 series" in r for r in rep["repaired"]) and any("index" in r for r in rep["repaired"])


def test_free_pages_of_deleted_rows_are_named_and_given_back_by_repair(library, capsys):
    """SQLite keeps the pages of deleted rows: the check says how much, --repair gives it back."""
    lib, _src = library
    db = lib / "casebook.sqlite"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE scratch (b BLOB)")  # rows written and deleted, as a large removal leaves them
    con.executemany("INSERT INTO scratch VALUES (?)", [(os.urandom(4096),) for _ in range(2048)])
    con.commit()
    con.execute("DROP TABLE scratch")
    con.commit()
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    before = db.stat().st_size
    rc, rep = _check(capsys)
    assert rc == 0 and rep["ok"]  # free pages are no fault
    assert "free pages of deleted rows" in _finding(rep, "database")["detail"]
    capsys.readouterr()
    assert main(["check", "--repair"]) == 0
    assert "compacted the database" in capsys.readouterr().out
    assert db.stat().st_size < before - 6 * 2**20
    rc, rep = _check(capsys)
    assert rc == 0 and "free pages" not in _finding(rep, "database")["detail"]


def test_damaged_database_is_restored_from_its_backup_and_reingested(library, capsys):
    lib, _src = library
    db = lib / "casebook.sqlite"
    assert main(["check", "--repair"]) == 0
    assert (lib / "casebook.sqlite.checked.bak").exists()
    con = sqlite3.connect(db)
    before = con.execute("SELECT count(*) FROM series").fetchone()[0]
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    data = bytearray(db.read_bytes())
    for page in range(2, len(data) // 4096, 2):  # every other page overwritten
        data[page * 4096 + 100:page * 4096 + 600] = os.urandom(500)
    db.write_bytes(bytes(data))
    rc, rep = _check(capsys)
    assert rc == 1 and "damaged" in _finding(rep, "database")["detail"] and _finding(rep, "database")["repairable"]
    rc, rep = _check(capsys, "--repair")
    assert rc == 0 and rep["ok"], rep
    assert any(r.startswith("database restored from casebook.sqlite.checked.bak") for r in rep["repaired"])
    assert list(lib.glob("casebook.sqlite.damaged-*"))  # the damaged file is kept, not deleted
    con = sqlite3.connect(db)
    assert con.execute("SELECT count(*) FROM series").fetchone()[0] == before
    con.close()
