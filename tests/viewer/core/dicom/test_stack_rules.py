"""The rules every caller shares: the loader's slice order, one slice of a stack, the main stack
of a folder, the directory walker, and the middle-slice-first loading service; on real series."""
from __future__ import annotations

import shutil

import numpy as np

from casebook.viewer.core.dicom import load_series, load_volume, main_stack, scan, slice_count, slice_stack
from casebook.viewer.core.dicom.walk import walk_files
from casebook.viewer.core.progress import CancelToken
from casebook.viewer.core.services.loading import folder_stack, load_with_preview

import pytest

from casebook.common.errors import Cancelled


def test_slice_stack_decodes_exactly_the_loaders_slice_k(need_shared) -> None:
    res = scan([need_shared("dicom", "dcm_qa_ct", "In", "GE")])
    stack = main_stack(res.stacks)
    vol = load_volume(stack)
    assert slice_count(stack) == vol.shape[0] > 8
    for k in (0, vol.shape[0] // 2, vol.shape[0] - 1):
        one = load_volume(slice_stack(stack, k))
        assert one.shape[0] == 1
        np.testing.assert_array_equal(one.voxels[0], vol.voxels[k])
    # out of range clips to the ends instead of failing
    np.testing.assert_array_equal(load_volume(slice_stack(stack, 10_000)).voxels[0], vol.voxels[-1])


def test_main_stack_is_the_largest_image_stack_and_honours_a_key(need_shared) -> None:
    folder = need_shared("dicom", "dcm_qa_ct", "In")
    res = scan([folder])
    best = main_stack(res.stacks)
    assert best is not None and not best.is_localizer
    assert slice_count(best) == max(slice_count(s) for s in res.stacks if s.is_image and not s.is_localizer)
    other = next(s for s in res.stacks if s.key != best.key)
    assert main_stack(res.stacks, other.key) is other
    assert main_stack(res.stacks, "no-such-key").key == best.key
    assert main_stack([]) is None
    # load_series and the GUI's folder loader pick the same stack
    assert folder_stack(folder).key == best.key
    assert load_series(folder).meta["stack_key"] == best.key


def test_walker_skips_hidden_and_junk_files_in_a_stable_order(need_shared, tmp_path) -> None:
    src = need_shared("dicom", "dcm_qa_ct", "In", "GE")
    first = sorted(p for p in src.rglob("*") if p.is_file())[0]
    (tmp_path / "b").mkdir()
    (tmp_path / ".hidden").mkdir()
    shutil.copy(first, tmp_path / "b" / "x.dcm")
    shutil.copy(first, tmp_path / ".hidden" / "y.dcm")
    for junk in ("Thumbs.db", "._x.dcm", ".DS_Store", "DICOMDIR"):
        (tmp_path / "b" / junk).write_bytes(b"junk")
    (tmp_path / "a.txt").write_text("not dicom")
    names = [p.relative_to(tmp_path).as_posix() for p in walk_files(tmp_path)]
    assert names == ["a.txt", "b/DICOMDIR", "b/x.dcm"]
    assert [p.name for p in walk_files(tmp_path, skip_names=frozenset({"DICOMDIR"}))] == ["a.txt", "x.dcm"]


def test_load_with_preview_shows_the_middle_slice_first(need_shared) -> None:
    stack = folder_stack(need_shared("dicom", "dcm_qa_ct", "In", "GE"))
    previews = []
    steps = []
    vol = load_with_preview(stack, on_preview=lambda v, s: previews.append((v, s)),
                            progress=lambda d, t, m="": steps.append((d, t)))
    assert len(previews) == 1 and previews[0][1] is stack
    preview = previews[0][0]
    assert preview.shape[0] == 1
    np.testing.assert_array_equal(preview.voxels[0], vol.voxels[vol.shape[0] // 2])
    assert steps and steps[-1] == (vol.shape[0], vol.shape[0])
    token = CancelToken()
    token.cancel()
    with pytest.raises(Cancelled):
        load_with_preview(stack, on_preview=lambda v, s: None, cancel=token)
