"""Casebook volumes against dcm2niix, the converter neuroimaging trusts.

For every image stack of the shared ``dcm_qa*`` sets, the Volume's RAS affine and its voxel
values must equal what dcm2niix writes for the same series (4D NIfTIs: one of its volumes).
Deliberate differences are listed in ``_EXPECTED_DIFFERENCES`` with the reason.
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pydicom
import pytest

from casebook.viewer.core.dicom import load_volume, scan

nib = pytest.importorskip("nibabel")

FOLDERS = ["dcm_qa_ct", "dcm_qa_ge", "dcm_qa_enh", "dcm_qa_nih", "dcm_qa_ts", "dcm_qa_philips_enh",
           "dcm_qa_canon_61"]


def _why_different(stack, vol) -> str | None:
    """Stacks where Casebook and dcm2niix deliberately disagree on geometry, and why."""
    if vol.geometry.gantry_tilt_deg > 0:
        return ("gantry tilt: dcm2niix writes a sheared-in-plane affine (and a resampled _Tilt_Eq "
                "copy); Casebook keeps the acquired slices with the true slice-stacking vector")
    if stack.instances[0].position is None or stack.instances[0].orientation is None:
        return "no ImagePositionPatient/Orientation: dcm2niix invents a geometry, Casebook reports it unknown"
    return None


def _match(vol, niftis, convert_order):
    """Index of the first NIfTI volume equal to ``vol`` (values and lattice), else the reasons."""
    reasons = []
    for path in niftis:
        img = nib.load(str(path))
        try:
            vols, m = convert_order(img, vol)
        except AssertionError as exc:
            reasons.append(f"{path.name}: {str(exc).splitlines()[0]}")
            continue
        # The lattices coincide: the translation must map voxel centres onto voxel centres.
        t = m[:3, 3]
        if not np.allclose(t, np.round(t), atol=2e-3):
            reasons.append(f"{path.name}: origin off by a fraction of a voxel {t}")
            continue
        for x in vols:
            if x.shape == vol.voxels.shape and np.allclose(x, vol.voxels, rtol=1e-5, atol=1e-3):
                return path.name, reasons
        reasons.append(f"{path.name}: no volume with equal values")
    return None, reasons


@pytest.mark.slow
@pytest.mark.parametrize("folder", FOLDERS)
def test_volumes_match_dcm2niix(folder, need_shared, dcm2niix_outputs, nifti_order):
    src = need_shared("dicom", folder, "In")
    out = dcm2niix_outputs(src)
    res = scan([src])
    assert res.stacks, f"no image stacks found in {folder}"
    compared = 0
    failures = []
    for stack in res.stacks:
        vol = load_volume(stack)
        why = _why_different(stack, vol)
        if why is not None:
            continue
        niftis = sorted(out.glob(stack.series_uid + "_*.nii"))
        if not niftis:
            failures.append(f"{stack.key}: dcm2niix wrote nothing for this series")
            continue
        hit, reasons = _match(vol, niftis, nifti_order)
        if hit is None:
            failures.append(f"{stack.key} ({stack.split_reason}): " + "; ".join(reasons))
        compared += 1
    assert not failures, "\n".join(failures)
    if folder not in ("dcm_qa_ts", "dcm_qa_nih"):
        assert compared > 0


def test_gantry_tilt_keeps_acquired_slices(need_shared, dcm2niix_outputs):
    """Tilted GE head CT: values equal dcm2niix's uncorrected output; positions equal the headers."""
    src = need_shared("dicom", "dcm_qa_ct", "In", "GE")
    res = scan([src])
    (stack,) = res.stacks
    vol = load_volume(stack)
    assert vol.geometry.gantry_tilt_deg == pytest.approx(18.5, abs=0.05)
    assert not vol.geometry.uniform_spacing
    # Every slice sits exactly where its header says, in the order of increasing position.
    ipp = {}
    for p in sorted(src.glob("*.dcm")):
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        ipp[p] = np.array([float(x) for x in ds.ImagePositionPatient])
    expected = np.array([ipp[p] for p in vol.source_files])
    np.testing.assert_allclose(vol.slice_positions, expected, atol=1e-4)
    np.testing.assert_allclose(vol.origin, expected[0], atol=1e-4)
    # Same voxel values as dcm2niix's uncorrected NIfTI (same slice order, rows flipped by NIfTI).
    (nii,) = [p for p in dcm2niix_outputs(src).glob(stack.series_uid + "_*.nii") if "Tilt" not in p.name]
    data = np.asanyarray(nib.load(str(nii)).dataobj)  # (x, y, z)
    ref = np.transpose(data, (2, 1, 0))
    candidates = [ref, ref[:, ::-1], ref[:, :, ::-1], ref[:, ::-1, ::-1]]
    for c in (*candidates, *[x[::-1] for x in candidates]):
        if c.shape == vol.voxels.shape and np.array_equal(c, vol.voxels):
            break
    else:
        pytest.fail("no flip of dcm2niix's uncorrected volume equals Casebook's voxels")


def test_transfer_syntaxes_give_identical_pixels(need_shared):
    """dcm_qa_ts: one Siemens slice in 7 transfer syntaxes decodes to the same pixels."""
    src = need_shared("dicom", "dcm_qa_ts", "In")
    res = scan([src])
    vols = [load_volume(s) for s in res.stacks]
    syntaxes = {ts for v in vols for ts in v.meta["transfer_syntaxes"]}
    assert len(syntaxes) >= 7, syntaxes
    ref = vols[0].voxels
    for v in vols[1:]:
        assert np.array_equal(v.voxels, ref), v.meta["transfer_syntaxes"]
        np.testing.assert_allclose(v.affine_ras, vols[0].affine_ras)


def test_canon_classic_and_enhanced_give_same_volumes(need_shared):
    """dcm_qa_canon_61: the classic single-file export and the enhanced multi-frame export agree."""
    src = need_shared("dicom", "dcm_qa_canon_61", "In")
    classic = [s for s in scan([src / "cl"]).stacks]
    enhanced = [s for s in scan([src / "enh"]).stacks if s.series_uid == classic[0].series_uid]
    assert len(classic) == len(enhanced) == 13
    for c, e in zip(classic, enhanced):
        vc, ve = load_volume(c), load_volume(e)
        assert vc.shape == ve.shape == (40, 80, 80)
        np.testing.assert_allclose(vc.affine_ras, ve.affine_ras, atol=1e-3)
        np.testing.assert_array_equal(vc.voxels, ve.voxels)


def test_gzip_files_are_read(need_shared):
    path = next(need_shared("dicom", "dcm_qa_canon_61", "In", "cl").glob("*.dcm.gz"))
    with gzip.open(path) as f:
        assert f.read(132)[128:] == b"DICM"
    res = scan([path])
    assert len(res.stacks) == 1 and not res.problems
    assert load_volume(res.stacks[0]).shape == (1, 80, 80)


@pytest.mark.parametrize("folder", ["dcm_qa_ts", "dcm_qa_nih"])
def test_siemens_mosaics_are_cut_into_slices_like_dcm2niix(folder, need_shared, dcm2niix_outputs, nifti_order):
    """Siemens mosaic EPI: the tiles become slices (count from (0019,100A) / the CSA header), the
    first slice's position is corrected from the mosaic corner, and voxels and affine equal dcm2niix's."""
    src = need_shared("dicom", folder, "In")
    out = dcm2niix_outputs(src)
    mosaics = [s for s in scan([src]).stacks if any("MOSAIC" in t for t in s.instances[0].image_type)]
    assert mosaics, f"no Siemens mosaic in {folder}"
    failures = []
    for stack in mosaics:
        vol = load_volume(stack)
        h = stack.instances[0]
        n = vol.meta["mosaic"]["images"]
        m = vol.meta["mosaic"]["tiles_per_side"]
        assert vol.shape == (n, h.rows // m, h.columns // m) and n > 1
        hit, reasons = _match(vol, sorted(out.glob(stack.series_uid + "_*.nii")), nifti_order)
        if hit is None:
            failures.append(f"{stack.key}: " + "; ".join(reasons))
    assert not failures, "\n".join(failures)
