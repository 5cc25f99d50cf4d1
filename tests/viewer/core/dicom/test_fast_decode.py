"""The fast compressed path (fragments cut from the bytes, no dcmread; worker processes) gives the
same voxels as the full pydicom path, on every shared compressed file it accepts."""
from __future__ import annotations

import importlib.util
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest

from casebook.viewer.core.dicom import _codec, load_volume, scan
from casebook.viewer.core.dicom.pixels import _decode_file


def _pydicom_tests() -> Path | None:
    spec = importlib.util.find_spec("pydicom")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "data" / "test_files"
    return d if d.is_dir() else None


_FAMILY = {
    "1.2.840.10008.1.2.4.50": "jpeg", "1.2.840.10008.1.2.4.51": "jpeg", "1.2.840.10008.1.2.4.57": "jpeg",
    "1.2.840.10008.1.2.4.70": "jpeg", "1.2.840.10008.1.2.4.80": "jpeg-ls", "1.2.840.10008.1.2.4.81": "jpeg-ls",
    "1.2.840.10008.1.2.4.90": "j2k", "1.2.840.10008.1.2.4.91": "j2k", "1.2.840.10008.1.2.5": "rle",
}


@pytest.mark.slow
def test_fast_path_equals_pydicom_path_on_shared_compressed_files(need_shared):
    roots = [need_shared("dicom", "pylibjpeg_data"), need_shared("dicom", "dcm_qa_ts")]
    if (p := _pydicom_tests()) is not None:
        roots.append(p)
    res = scan(roots)
    compared: Counter[str] = Counter()
    declined = 0
    for stack in res.stacks:
        for h in stack.instances:
            if h.transfer_syntax_uid not in _FAMILY or not _codec.eligible(h):
                continue
            try:
                ref = _decode_file(h.path)[0]
            except Exception:  # noqa: BLE001 - pydicom cannot decode it: the fast path must not either
                ref = None
            try:
                got = _codec.decode(h.path, h.pixel_offset, h.transfer_syntax_uid, _codec.pixel_options(h))
            except Exception:  # noqa: BLE001 - the loader falls back to the pydicom path then
                got = None
            if got is None or ref is None:
                declined += 1
                continue
            assert got.dtype == ref.dtype and np.array_equal(got, ref), h.path
            compared[_FAMILY[h.transfer_syntax_uid]] += 1
    # Every family is exercised by real files (as of writing: 10 J2K, 8 JPEG-LS, 7 JPEG, 1 RLE;
    # most RLE samples are colour or multi-frame, which keep the pydicom path).
    for family in ("jpeg", "jpeg-ls", "j2k"):
        assert compared[family] >= 5, compared
    assert compared["rle"] >= 1, compared
    assert sum(compared.values()) >= 25, (compared, declined)


def _write_compressed_series(tmp: Path, syntax: str, n: int) -> Path:
    """``n`` JPEG-LS / JPEG 2000 lossless slices made from a real CT slice (GDCM encodes)."""
    import gdcm

    src = sorted((Path(pydicom.__file__).parent / "data" / "test_files").glob("CT_small.dcm"))[0]
    plain = tmp / "plain"
    plain.mkdir()
    ds = pydicom.dcmread(src)
    series = pydicom.uid.generate_uid()
    for k in range(n):
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, float(k)]
        ds.PixelData = (ds.pixel_array + k).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(plain / f"{k:03d}.dcm", enforce_file_format=True)
    out = tmp / syntax
    out.mkdir()
    ts = {"jpegls": gdcm.TransferSyntax.JPEGLSLossless, "j2k": gdcm.TransferSyntax.JPEG2000Lossless}[syntax]
    for p in sorted(plain.iterdir()):
        r = gdcm.ImageReader()
        r.SetFileName(str(p))
        assert r.Read()
        c = gdcm.ImageChangeTransferSyntax()
        c.SetTransferSyntax(gdcm.TransferSyntax(ts))
        c.SetInput(r.GetImage())
        assert c.Change()
        w = gdcm.ImageWriter()
        w.SetFileName(str(out / p.name))
        w.SetFile(r.GetFile())
        w.SetImage(c.GetOutput())
        assert w.Write()
    return out


@pytest.mark.parametrize("syntax", ["jpegls", "j2k"])
def test_worker_pool_volume_equals_thread_volume(tmp_path, monkeypatch, syntax):
    folder = _write_compressed_series(tmp_path, syntax, 12)
    stack = scan([folder]).stacks[0]
    monkeypatch.setenv(_codec.ENV_PROCESSES, "0")
    threads = load_volume(stack).voxels
    monkeypatch.setenv(_codec.ENV_PROCESSES, "2")
    monkeypatch.setattr(_codec, "_COLD_MIN_PIXELS", 0)  # a small stack: force the pool on
    pooled = load_volume(stack)
    assert _codec._POOL is not None
    assert pooled.voxels.dtype == threads.dtype and np.array_equal(pooled.voxels, threads)
    assert pooled.meta["bad_files"] == []


def test_worker_pool_reports_a_truncated_slice_and_loads_the_rest(tmp_path, monkeypatch):
    folder = _write_compressed_series(tmp_path, "jpegls", 8)
    victim = sorted(folder.iterdir())[3]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) - 4000])
    stack = scan([folder]).stacks[0]
    monkeypatch.setenv(_codec.ENV_PROCESSES, "2")
    monkeypatch.setattr(_codec, "_COLD_MIN_PIXELS", 0)
    vol = load_volume(stack)
    assert vol.voxels.shape[0] == 7
    assert [Path(p).name for p, _ in vol.meta["bad_files"]] == [victim.name]
    assert all(reason for _, reason in vol.meta["bad_files"])


def test_encapsulated_value_rejects_broken_items():
    item = (0xFFFE).to_bytes(2, "little") + (0xE000).to_bytes(2, "little")
    end = (0xFFFE).to_bytes(2, "little") + (0xE0DD).to_bytes(2, "little") + bytes(4)
    bot = item + bytes(4)
    frag = item + (4).to_bytes(4, "little") + b"abcd"
    assert _codec.encapsulated_value(bot + frag + end + b"trailing") == bot + frag
    assert _codec.encapsulated_value(bot + frag) is None  # no delimiter: truncated
    assert _codec.encapsulated_value(bot + frag[:-1]) is None  # fragment cut short
    assert _codec.encapsulated_value(bot + end) is None  # no fragment at all
    assert _codec.encapsulated_value(b"\x10\x00" + frag[2:] + end) is None  # not an item tag


def test_cancel_during_pooled_decode_stops_and_leaves_no_shared_block(tmp_path, monkeypatch):
    from casebook.viewer.core.errors import Cancelled
    from casebook.viewer.core.progress import CancelToken

    folder = _write_compressed_series(tmp_path, "j2k", 24)
    stack = scan([folder]).stacks[0]
    monkeypatch.setenv(_codec.ENV_PROCESSES, "2")
    monkeypatch.setattr(_codec, "_COLD_MIN_PIXELS", 0)
    shm_dir = Path("/dev/shm")
    before = set(shm_dir.iterdir()) if shm_dir.is_dir() else set()
    token = CancelToken()
    seen: list[int] = []

    def progress(done: int, total: int, message: str) -> None:
        seen.append(done)
        token.cancel()  # cancel as soon as the first slices arrive

    with pytest.raises(Cancelled):
        load_volume(stack, progress=progress, cancel=token)
    assert seen and seen[-1] < 24
    if shm_dir.is_dir():
        assert set(shm_dir.iterdir()) == before  # the block's name is gone
    # The pool stays usable for the next load.
    vol = load_volume(stack)
    assert vol.voxels.shape[0] == 24 and vol.meta["bad_files"] == []


_SMALL_SHM = r"""
import os, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
os.environ["CASEBOOK_DECODE_PROCESSES"] = "2"
from casebook.viewer.core.dicom import _codec, load_volume, scan
from test_fast_decode import _write_compressed_series
_codec._COLD_MIN_PIXELS = 0
folder = _write_compressed_series(Path(sys.argv[1]), "jpegls", 40)
vol = load_volume(scan([folder]).stacks[0])
print("loaded", vol.voxels.shape, len(vol.meta["bad_files"]))
"""


def test_too_small_dev_shm_falls_back_to_threads(tmp_path):
    """Docker's /dev/shm is 64 MB: a volume that does not fit must load in threads, not SIGBUS.

    Runs in a private mount namespace with a 256 KiB tmpfs on /dev/shm (needs root, as in CI).
    """
    import shutil
    import subprocess
    import sys

    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) for a private /dev/shm")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"mount namespaces not permitted here: {probe.stderr.decode().strip()}")
    script = tmp_path / "small_shm.py"
    script.write_text(_SMALL_SHM)
    run = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=256k tmpfs /dev/shm && "
                          f"exec {sys.executable} {script} {tmp_path} {Path(__file__).parent}"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    assert "loaded (40, 128, 128) 0" in run.stdout


def test_killed_workers_fall_back_to_threads_and_a_fresh_pool_follows(tmp_path, monkeypatch):
    """A decode worker killed (out of memory, a crashing codec): that load finishes in threads
    with the same voxels, and the next large load gets a fresh pool."""
    import signal
    import time

    folder = _write_compressed_series(tmp_path, "jpegls", 12)
    stack = scan([folder]).stacks[0]
    monkeypatch.setenv(_codec.ENV_PROCESSES, "0")
    reference = load_volume(stack).voxels
    monkeypatch.setenv(_codec.ENV_PROCESSES, "2")
    monkeypatch.setattr(_codec, "_COLD_MIN_PIXELS", 0)
    monkeypatch.setattr(_codec, "_POOL_FAILURES", 0)
    monkeypatch.setattr(_codec, "_POOL_BROKEN", False)
    _codec.shutdown_pool()
    pool = _codec.get_pool()
    assert pool is not None and pool.submit(os.getpid).result(timeout=60) != os.getpid()
    for pid in list(pool._processes):  # the workers die before the next load reaches them
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    vol = load_volume(stack)
    assert np.array_equal(vol.voxels, reference) and vol.meta["bad_files"] == []
    assert _codec._POOL_FAILURES == 1 and not _codec._POOL_BROKEN
    again = load_volume(stack)  # a fresh pool, started for this load
    assert _codec._POOL is not None and _codec._POOL is not pool
    assert np.array_equal(again.voxels, reference)
    _codec.shutdown_pool()
