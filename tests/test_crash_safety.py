"""Crash safety, proven by killing: ``casebook ingest``, ``casebook embed`` and an index merge are
SIGKILLed at seeded random points over real shared DICOM, then run again; afterwards
``casebook check`` passes and the library equals a clean reference ingest of the same files.

Each kill is a real ``kill -9`` of a real process writing a real SQLite file and real hnswlib
files; the delays are drawn between the process start and the duration a clean run took, so the
kills land in start-up, in the scan, in the store transactions and in the index writes.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

_SEED = 15
_INGEST_KILLS = 5
_EMBED_KILLS = 2
_MERGE_KILLS = 4


def _env(lib: Path, cfg: Path) -> dict[str, str]:
    return dict(os.environ, CASEBOOK_LIBRARY=str(lib), CASEBOOK_CONFIG=str(cfg), CASEBOOK_DECODE_PROCESSES="0")


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "casebook.viewer.cli", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def _timed(env: dict[str, str], *args: str) -> float:
    t0 = time.monotonic()
    r = _cli(env, *args)
    assert r.returncode in (0, 1), r.stderr[-3000:]
    return time.monotonic() - t0


def _kill_at(env: dict[str, str], delay: float, *args: str) -> bool:
    """Start the command, SIGKILL it after ``delay`` s; True when it was still running then."""
    proc = subprocess.Popen([sys.executable, "-m", "casebook.viewer.cli", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay)
        return False
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True


def _library_state(lib: Path) -> dict[str, object]:
    """What a library holds, independent of row ids and timestamps."""
    con = sqlite3.connect(f"file:{lib / 'casebook.sqlite'}?mode=ro", uri=True)
    try:
        series = sorted(con.execute("SELECT stack_key, series_uid, modality, slice_count, file_count, state, rows, "
                                    "columns, split_reason FROM series WHERE deleted = 0").fetchall())
        inst = sorted(con.execute("SELECT s.stack_key, i.sop_instance_uid, i.frame_index, i.path, i.slice_index "
                                  "FROM instance i JOIN series s ON s.id = i.series_id").fetchall())
        files = sorted(con.execute("SELECT path, size, status FROM source_file").fetchall())
        studies = sorted(con.execute("SELECT study_uid, accession_number FROM study").fetchall())
        emb = con.execute("SELECT s.stack_key, e.slice_index, e.vector FROM embedding e JOIN series s "
                          "ON s.id = e.series_id ORDER BY s.stack_key, e.slice_index").fetchall()
    finally:
        con.close()
    return {"series": series, "instances": inst, "files": files, "studies": studies, "embeddings": emb}


def _same_embeddings(a: list, b: list) -> None:
    assert [(k, s) for k, s, _ in a] == [(k, s) for k, s, _ in b]
    for (_, _, va), (_, _, vb) in zip(a, b):
        assert np.allclose(np.frombuffer(va, "<f4"), np.frombuffer(vb, "<f4"), atol=1e-5)


_MERGE_SCRIPT = r"""
import sys
import numpy as np
from casebook.index.vector_index import IndexParams, VectorIndex
from casebook.viewer.core.config import load_settings
from casebook.viewer.core.services.library import open_store
if __name__ == "__main__":
    settings = load_settings()
    store = open_store(settings, create=False)
    rec = store.list_models()[0]
    source = store.embedding_source(rec.id)
    params = IndexParams(delta_min_merge=8, delta_fraction=0.01)
    idx = VectorIndex.open(settings.index_dir, rec.key, rec.dim, source, params=params)
    labels = np.asarray(source.labels(), dtype=np.int64)
    rng = np.random.default_rng(int(sys.argv[1]))
    print("READY", flush=True)
    while True:  # replace random vectors by themselves: every committed save is the whole set
        pick = np.sort(rng.choice(labels, size=min(40, len(labels)), replace=False))
        vecs = source.vectors(pick)
        idx.mark_deleted(pick)
        idx.add(pick, vecs)
        idx.save()  # a delta past 8 additions is merged into a new base generation
"""


def test_sigkill_at_random_points_then_check_passes_and_equals_a_clean_ingest(need_shared, tmp_path):
    rng = random.Random(_SEED)
    src = tmp_path / "dicom"
    shutil.copytree(need_shared("dicom", "dcm_qa_ts", "In"), src / "ts")
    shutil.copytree(need_shared("dicom", "dcm_qa_ct", "In", "GE"), src / "ct")
    ref_env = _env(tmp_path / "ref", tmp_path / "s.toml")
    env = _env(tmp_path / "lib", tmp_path / "s.toml")

    # the clean reference: one ingest, one embed, never interrupted
    t_ingest = _timed(ref_env, "ingest", str(src))
    t_embed = _timed(ref_env, "embed")

    kills = 0
    for _ in range(_INGEST_KILLS):
        kills += _kill_at(env, rng.uniform(0.1, 1.0) * t_ingest, "ingest", str(src))
    assert _cli(env, "ingest", str(src)).returncode in (0, 1)
    for _ in range(_EMBED_KILLS):
        kills += _kill_at(env, rng.uniform(0.2, 1.0) * t_embed, "embed")
    r = _cli(env, "embed")
    assert r.returncode == 0, r.stderr[-3000:]
    assert _cli(env, "check", "--repair").returncode == 0  # builds the index the merges work on

    script = tmp_path / "merge.py"
    script.write_text(_MERGE_SCRIPT)
    for k in range(_MERGE_KILLS):
        proc = subprocess.Popen([sys.executable, str(script), str(k)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        assert proc.stdout.readline().strip() == "READY"
        time.sleep(rng.uniform(0.05, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
    assert kills >= _MERGE_KILLS + 3, "too few kills landed while the work was running"

    r = _cli(env, "check")
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    got, want = _library_state(tmp_path / "lib"), _library_state(tmp_path / "ref")
    for key in ("series", "instances", "files", "studies"):
        assert got[key] == want[key], key
    _same_embeddings(got["embeddings"], want["embeddings"])  # type: ignore[arg-type]
