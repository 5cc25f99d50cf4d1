"""Split logic, geometry checks and bad input on small pydicom-written series."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from casebook.viewer.core.dicom import load_series, load_volume, scan
from casebook.viewer.core.errors import DicomReadError
from casebook.viewer.core.progress import CancelToken
from casebook.viewer.core.errors import Cancelled


def _write_slice(path: Path, *, series: str, z: float, n: int, orientation=(1, 0, 0, 0, 1, 0), echo=None,
                 rows=16, cols=16, image_type="ORIGINAL\\PRIMARY\\AXIAL", acq=1, value=None) -> None:
    from pydicom.dataset import Dataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = series
    ds.PatientID = "SYN1"
    ds.Modality = "CT"
    ds.SeriesNumber = 1
    ds.InstanceNumber = n
    ds.AcquisitionNumber = acq
    ds.ImageType = image_type
    ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = [0.0, 0.0, z]
    ds.PixelSpacing = [0.5, 0.5]
    ds.SliceThickness = 9.0  # deliberately wrong: spacing must come from positions
    if echo is not None:
        ds.EchoNumbers = echo
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope = 1
    ds.RescaleIntercept = -1024
    arr = np.full((rows, cols), n if value is None else value, dtype=np.int16)
    arr[0, 0] = 2000
    ds.PixelData = arr.tobytes()
    ds.save_as(path, enforce_file_format=True)


def _series(tmp: Path, zs, uid=None, **kw) -> str:
    uid = uid or generate_uid()
    tmp.mkdir(parents=True, exist_ok=True)
    for n, z in enumerate(zs, start=1):
        _write_slice(tmp / f"{uid[-6:]}_{n:03d}.dcm", series=uid, z=z, n=n, **kw)
    return uid


def test_spacing_from_positions_sorted_along_normal(tmp_path):
    _series(tmp_path, [4.0, 0.0, 2.0, 6.0])  # written out of order
    vol = load_series(tmp_path)
    assert vol.shape == (4, 16, 16)
    assert vol.spacing == pytest.approx((2.0, 0.5, 0.5))
    assert vol.origin == pytest.approx((0.0, 0.0, 0.0))
    assert vol.voxels.dtype == np.int16
    # instance 2 was at z=0: rescale applied (n - 1024)
    assert vol.voxels[0, 5, 5] == 2 - 1024
    assert vol.geometry.uniform_spacing and vol.geometry.missing_slices == 0


def test_missing_slice_is_reported(tmp_path):
    _series(tmp_path, [0.0, 2.0, 4.0, 8.0, 10.0])
    vol = load_series(tmp_path)
    assert not vol.geometry.uniform_spacing
    assert vol.geometry.missing_slices == 1
    assert any("missing" in w for w in vol.geometry.warnings)


def test_split_by_orientation_echo_and_localizer(tmp_path):
    uid = generate_uid()
    _series(tmp_path / "ax", [0, 2, 4], uid=uid)
    _series(tmp_path / "sag", [10, 12], uid=uid, orientation=(0, 1, 0, 0, 0, -1))
    _series(tmp_path / "e2", [0, 2, 4], uid=uid, echo=2)
    _series(tmp_path / "loc", [50], uid=uid, image_type="ORIGINAL\\PRIMARY\\LOCALIZER")
    res = scan([tmp_path])
    assert sorted(len(s.instances) for s in res.stacks) == [1, 2, 3, 3]
    keys = [s.key for s in res.stacks]
    assert len(set(keys)) == 4 and uid in keys and all(k.startswith(uid) for k in keys)
    assert sum(s.is_localizer for s in res.stacks) == 1
    assert all(s.split_reason for s in res.stacks)


def test_repeated_positions_split_into_volumes(tmp_path):
    uid = generate_uid()
    _series(tmp_path / "a", [0, 2, 4], uid=uid, acq=1, value=10)
    _series(tmp_path / "b", [0, 2, 4], uid=uid, acq=2, value=20)
    res = scan([tmp_path])
    assert len(res.stacks) == 2
    vals = sorted(int(load_volume(s).voxels[1, 5, 5]) for s in res.stacks)
    assert vals == [10 - 1024, 20 - 1024]


def test_truncated_slice_is_skipped_and_reported(tmp_path):
    _series(tmp_path, [0, 2, 4, 6])
    victim = sorted(tmp_path.glob("*.dcm"))[2]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 100])
    res = scan([tmp_path])
    vol = load_volume(res.stacks[0])
    assert vol.shape[0] == 3
    assert [Path(p).name for p, _ in vol.meta["bad_files"]] == [victim.name]
    assert "truncated" in vol.meta["bad_files"][0][1]
    assert vol.geometry.missing_slices == 1  # the hole it leaves is reported


def test_single_truncated_file_raises_clear_error(tmp_path):
    _series(tmp_path, [0])
    f = next(tmp_path.glob("*.dcm"))
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DicomReadError) as ei:
        load_series(tmp_path)
    assert f.name in str(ei.value) and "truncated" in str(ei.value)


def test_non_dicom_and_missing_inputs_are_reported(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty.dcm").write_bytes(b"")
    _series(tmp_path / "s", [0, 2])
    res = scan([tmp_path, tmp_path / "nope"])
    reasons = {p.path.name: p.reason for p in res.problems}
    assert "DICM" in reasons["notes.txt"]
    assert reasons["empty.dcm"] == "empty file"
    assert "no such file" in reasons["nope"]
    assert len(res.stacks) == 1 and res.files_seen == 4


def test_cancel_and_progress(tmp_path):
    _series(tmp_path, [0, 2, 4])
    calls = []
    res = scan([tmp_path], progress=lambda d, t, m: calls.append((d, t)))
    assert calls[-1] == (3, 3)
    tok = CancelToken()
    tok.cancel()
    with pytest.raises(Cancelled):
        scan([tmp_path], cancel=tok)
    with pytest.raises(Cancelled):
        load_volume(res.stacks[0], cancel=tok)
