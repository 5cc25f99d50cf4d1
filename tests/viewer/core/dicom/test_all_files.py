"""Every file of the shared data and of the DICOM sample packages loads or fails clearly."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from casebook.viewer.core.dicom import load_volume, scan
from casebook.viewer.core.errors import DicomReadError, SeriesGeometryError


def _package_dir(name: str, *sub: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*sub)


def _check_tree(paths: list[Path]) -> tuple[int, int, int]:
    res = scan(paths)
    assert res.files_seen > 0
    for p in res.problems:
        assert p.reason and str(p.path), p  # each skipped file names itself and why
    loaded = failed = 0
    for stack in res.stacks:
        try:
            vol = load_volume(stack)
        except (DicomReadError, SeriesGeometryError) as exc:
            # A clear, per-stack error: it names a file (or the series) and a reason.
            assert str(exc) and (getattr(exc, "path", None) or getattr(exc, "series", None)), exc
            failed += 1
            continue
        assert vol.voxels.shape[0] >= 1 and vol.voxels.size > 0
        for path, reason in vol.meta["bad_files"]:
            assert path and reason
        loaded += 1
    return loaded, failed, len(res.problems)


@pytest.mark.slow
def test_every_shared_file_loads_or_fails_clearly(need_shared):
    root = need_shared()
    loaded, failed, skipped = _check_tree([root])
    assert loaded > 100  # the shared sets hold well over a hundred image stacks
    # Only the deliberately broken files may fail.
    assert failed <= 3, failed


@pytest.mark.slow
def test_every_package_sample_file_loads_or_fails_clearly():
    roots = [d for d in (_package_dir("pydicom", "data", "test_files"), _package_dir("data_store", "data"),
                         _package_dir("deid_data"), _package_dir("nibabel", "tests", "data"),
                         _package_dir("nibabel", "nicom", "tests", "data")) if d is not None and d.is_dir()]
    if not roots:
        pytest.skip("no DICOM sample packages installed")
    loaded, failed, skipped = _check_tree(roots)
    assert loaded > 50
