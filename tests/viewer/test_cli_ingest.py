"""``casebook ingest`` / ``ls`` / ``info`` end to end on real DICOM and a real library folder."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from casebook.viewer.cli import main


@pytest.fixture
def ct_dir(need_shared) -> Path:
    return need_shared("dicom", "dcm_qa_ct", "In")


def test_ingest_ls_info(library_dir: Path, ct_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "junk.txt").write_text("not dicom")
    assert main(["ingest", str(ct_dir), str(tmp_path / "junk.txt"), "--workers", "2"]) == 0
    out, err = capsys.readouterr()
    assert "series stored (new)" in out and "STD BRAIN 5MM" in out
    assert "skipped because" in out and "junk.txt" in out and "not a DICOM file" in out
    assert f"library: {library_dir / 'casebook.sqlite'}" in out
    assert "reading headers" in err  # progress went to stderr
    assert (library_dir / "casebook.sqlite").exists()

    assert main(["ingest", str(ct_dir), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["series_stored"] == 0 and again["files_unchanged"] > 0 and again["files_stored"] == 0

    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    assert "PLASTIC" in out and "CT" in out  # patient ID and modality of the Philips study
    assert main(["ls", "--series", "--modality", "ct", "--text", "brain"]) == 0
    out = capsys.readouterr().out
    assert "STD BRAIN 5MM" in out and "Exam Summary" not in out
    assert main(["ls", "--modality", "MR"]) == 0
    assert "nothing matches" in capsys.readouterr().out
    assert main(["ls", "--series", "--json"]) == 0
    series = json.loads(capsys.readouterr().out)
    assert len(series) >= 5 and {s["modality"] for s in series} == {"CT"}

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    from casebook.index.case_store import migrate

    assert str(library_dir) in out and f"{migrate.head_revision()} (current)" in out
    assert "CT" in out and "models: none yet" in out
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["series"] == len(series) and info["series_by_modality"]["CT"] == len(series)
    assert info["schema_version"] == info["head_version"]


def test_library_flag_overrides_settings(library_dir: Path, ct_dir: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "elsewhere"
    assert main(["--library", str(other), "ingest", str(ct_dir / "GE")]) == 0
    capsys.readouterr()
    assert (other / "casebook.sqlite").exists() and not library_dir.exists()


def test_empty_library_and_corrupt_file(library_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a missing library is refused alike by every command that reads it (exit 2, one line naming
    # the place and how to create one) and none of them creates it
    for cmd in (["info"], ["ls"], ["search", "--text", "nodule"], ["embed"]):
        assert main(cmd) == 2, cmd
        out, err = capsys.readouterr()
        assert err.count("\n") == 1 and f"casebook {cmd[0]}: no library at {library_dir}" in err
        assert "casebook ingest PATH" in err and "Traceback" not in err
        assert not library_dir.exists(), cmd
    assert main(["info"]) == 2
    assert str(library_dir) in capsys.readouterr().out  # info still says where it looked
    library_dir.mkdir(parents=True)
    db = library_dir / "casebook.sqlite"
    db.write_bytes(os.urandom(8192))
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    for cmd in (["info"], ["ls"], ["ingest", str(library_dir)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err
        assert str(db) in err and "not an SQLite database" in err
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(library_dir: Path, need_shared, tmp_path: Path) -> None:
    """SIGINT to a running ``casebook ingest``: it stops at a series boundary, exit 130; a rerun finishes."""
    src = need_shared("dicom", "dcm_qa_ct", "In")
    env = {**os.environ, "CASEBOOK_LIBRARY": str(library_dir), "CASEBOOK_CONFIG": str(tmp_path / "s.toml")}
    exe = [sys.executable, "-m", "casebook.viewer.cli"]
    # slow the store down so there is time to interrupt it (a real, if small, archive is fast)
    hook = tmp_path / "sitecustomize.py"
    hook.write_text(
        "import time\n"
        "from casebook.index.case_store import store as _s\n"
        "_orig = _s.CaseStore.add_stacks\n"
        "def _slow(self, stacks):\n"
        "    time.sleep(0.4)\n"
        "    return _orig(self, stacks)\n"
        "_s.CaseStore.add_stacks = _slow\n")
    env["PYTHONPATH"] = str(tmp_path) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen([*exe, "ingest", str(src), "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    db = library_dir / "casebook.sqlite"
    import sqlite3

    while time.monotonic() < deadline:  # wait for the first stored series
        time.sleep(0.1)
        if db.exists():
            try:
                with sqlite3.connect(db) as con:
                    if con.execute("SELECT count(*) FROM series").fetchone()[0] > 0:
                        break
            except sqlite3.Error:
                pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    first = json.loads(out)
    assert first["cancelled"] and first["series_stored"] >= 1
    done = subprocess.run([*exe, "ingest", str(src), "--json"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    second = json.loads(done.stdout)
    assert not second["cancelled"] and second["series_stored"] >= 1
    assert second["files_unchanged"] == first["files_stored"]
