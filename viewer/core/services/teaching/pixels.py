"""Burned-in text: which objects an export holds back, and blanking a confirmed mask on every frame.

Header de-identification cannot see a name written into the pixels. Objects that say they carry
burned-in annotation, and modalities where it is common (ultrasound, secondary captures, and
angiography/radiography unless the header says there is none), are held back until the author
confirms a mask rectangle for their series, or leaves the series out.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from ...errors import CasebookError

ALWAYS_HELD = ("US", "IVUS", "SC", "XC", "ES", "GM", "SM", "OT", "DOC")  # text on the image is the rule
HELD_UNLESS_NO = ("XA", "RF", "CR", "DX", "MG", "IO", "PX")  # held unless Burned In Annotation = NO
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


class MaskError(CasebookError):
    """A mask cannot be applied to a file (the message names the file and why)."""


def burned_in_risk(ds: Dataset) -> str | None:
    """Why ``ds`` may show burned-in text (held back until masked), or None when it may go."""
    flag = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    modality = str(ds.get("Modality", "") or "").strip().upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if flag == "YES":
        return "Burned In Annotation = YES"
    if modality in ALWAYS_HELD:
        return f"{modality}: burned-in text is common in this modality"
    if sop_class.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture: burned-in text is common"
    if modality in HELD_UNLESS_NO and flag != "NO":
        return f"{modality} without Burned In Annotation = NO"
    return None


def apply_mask(ds: Dataset, rects: Sequence[Sequence[int]], *, path: str = "") -> int:
    """Blank ``rects`` ([row0, col0, row1, col1], end-exclusive, image pixels) on every frame.

    The pixel data is decoded, blanked to the darkest value the image displays and written back
    uncompressed (Explicit VR Little Endian); returns the number of pixels blanked per frame.
    """
    where = path or "the file"
    if "PixelData" not in ds:
        raise MaskError(f"{where}: has no pixel data to mask")
    try:
        arr = ds.pixel_array.copy()
    except Exception as exc:  # pydicom raises many kinds for undecodable data
        raise MaskError(f"{where}: pixel data cannot be decoded to apply the mask ({exc})") from exc
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    view = arr.reshape((frames, rows, cols, spp) if spp > 1 else (frames, rows, cols))
    photometric = str(ds.PhotometricInterpretation)
    if photometric.startswith("YBR") and spp == 3:
        photometric = "RGB"  # pydicom's pixel_array already converted YBR to RGB
    if photometric == "MONOCHROME1":
        black = view.max()
    elif spp == 1 and np.issubdtype(view.dtype, np.signedinteger):
        black = view.min()
    else:
        black = 0
    blanked = 0
    for r in rects:
        r0, c0, r1, c1 = (int(v) for v in r)
        r0, c0, r1, c1 = max(0, r0), max(0, c0), min(rows, r1), min(cols, c1)
        if r0 >= r1 or c0 >= c1:
            raise MaskError(f"{where}: mask {list(r)} lies outside the {rows}×{cols} image")
        view[:, r0:r1, c0:c1, ...] = black
        blanked += (r1 - r0) * (c1 - c0)
    out = view if frames > 1 else view[0]
    if "PALETTE" in photometric:
        ds.PixelData = np.ascontiguousarray(out).tobytes()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    else:
        ds.set_pixel_data(np.ascontiguousarray(out), photometric, int(ds.BitsStored), generate_instance_uid=False)
    ds.LossyImageCompression = ds.get("LossyImageCompression", "00") or "00"
    return blanked


__all__ = ["ALWAYS_HELD", "HELD_UNLESS_NO", "MaskError", "apply_mask", "burned_in_risk"]
