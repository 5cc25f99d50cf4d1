"""Sample files with quirks real archives have: inferred transfer syntax, 16-bit palette LUTs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import apply_color_lut

from casebook.viewer.core.dicom import load_volume, scan



def test_palette_file_without_transfer_syntax_loads_as_rgb(sample_file):
    """OT-PAL-8-face.dcm: no (0002,0010) in its file meta; 8-bit indices into 16-bit LUTs."""
    path = sample_file("OT-PAL-8-face.dcm")
    res = scan([path])
    (stack,) = res.stacks
    vol = load_volume(stack)
    assert vol.photometric == "RGB" and vol.meta["bad_files"] == []
    ds = pydicom.dcmread(path, force=True)
    assert "TransferSyntaxUID" not in ds.file_meta
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian  # what the file is read as
    rgb16 = apply_color_lut(ds.pixel_array, ds)
    assert rgb16.dtype == np.uint16
    assert vol.voxels.shape == (1, 480, 640, 3) and vol.voxels.dtype == np.uint8
    np.testing.assert_array_equal(vol.voxels[0], (rgb16 >> 8).astype(np.uint8))
    assert vol.voxels.max() > 200  # not the black image the low bytes of the entries give
