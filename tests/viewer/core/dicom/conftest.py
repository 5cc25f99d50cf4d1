"""Fixtures for the DICOM core tests: dcm2niix reference conversions (cached per session)."""
from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def dcm2niix_outputs(tmp_path_factory: pytest.TempPathFactory):
    """``convert(folder)`` -> folder of NIfTIs written by dcm2niix, one run per folder per session.

    File names start with the SeriesInstanceUID (``%j``) so that each Casebook stack finds the
    reference for its own series. ``-p n`` keeps Philips display scaling (RescaleSlope), the same
    values Casebook shows.
    """
    exe = shutil.which("dcm2niix")
    if exe is None:
        pytest.skip("dcm2niix is not installed (apt-get install dcm2niix)")
    cache: dict[Path, Path] = {}

    def convert(folder: Path) -> Path:
        if folder not in cache:
            out = tmp_path_factory.mktemp("dcm2niix")
            gz = sorted(folder.rglob("*.dcm.gz"))
            if gz:
                # dcm2niix does not read gzip-compressed DICOM: give it plain copies.
                plain = tmp_path_factory.mktemp("gunzip")
                for i, g in enumerate(gz):
                    with gzip.open(g) as f:
                        (plain / f"{i:05d}_{g.name[:-3]}").write_bytes(f.read())
                folder_in = plain
            else:
                folder_in = folder
            subprocess.run([exe, "-z", "n", "-b", "y", "-ba", "n", "-p", "n", "-f", "%j_%s_%z",
                            "-o", str(out), str(folder_in)], check=True, capture_output=True, timeout=300)
            cache[folder] = out
        return cache[folder]

    return convert


def nifti_volumes_in_casebook_order(img, vol) -> tuple[list[np.ndarray], np.ndarray]:
    """Map a (3D or 4D) NIfTI onto the Volume's (k, j, i) index order.

    Returns the list of 3D arrays (one per NIfTI volume) and the 4x4 matrix taking Casebook
    (i, j, k) to NIfTI (i, j, k). Raises AssertionError when the grids are not the same lattice
    up to axis permutation and flips.
    """
    a_n = np.asarray(img.affine, dtype=np.float64)
    m = np.linalg.inv(a_n) @ vol.affine_ras
    r = np.round(m[:3, :3])
    assert np.allclose(m[:3, :3], r, atol=2e-3), f"not the same voxel lattice:\n{m}"
    assert all(sorted(np.abs(r[:, a]).tolist()) == [0.0, 0.0, 1.0] for a in range(3)), f"not a permutation:\n{r}"
    data = np.asanyarray(img.dataobj)  # nibabel applies scl_slope/scl_inter here
    if data.dtype.names:  # RGB NIfTI: structured (R, G, B) voxels -> trailing channel axis
        data = np.stack([data[n] for n in data.dtype.names], axis=-1)
        return [_reorder(data, r)], m
    if data.ndim == 3:
        data = data[..., None]
    data = data.reshape(data.shape[:3] + (-1,))
    return [_reorder(data[..., t], r) for t in range(data.shape[3])], m


def _reorder(d: np.ndarray, r: np.ndarray) -> np.ndarray:
    axes = [int(np.argmax(np.abs(r[:, a]))) for a in range(3)]  # nifti axis of casebook i, j, k
    d = np.transpose(d, axes + list(range(3, d.ndim)))  # now indexed (i, j, k) of casebook
    for a in range(3):
        if r[axes[a], a] < 0:
            d = np.flip(d, axis=a)
    return np.ascontiguousarray(np.transpose(d, (2, 1, 0) + tuple(range(3, d.ndim))))


@pytest.fixture(scope="session")
def nifti_order():
    """The NIfTI-to-Volume index mapping helper (test modules cannot import conftest)."""
    return nifti_volumes_in_casebook_order
