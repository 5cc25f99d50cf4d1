"""Decoding pixel data into a preallocated volume array: straight reads of native slices at the
offset the scan found, fast decoding of compressed slices (:mod:`._codec`, in worker processes for
large stacks), pydicom for everything else; and the rescale to stored values.
"""
from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DicomReadError, UnsupportedTransferSyntaxError
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from . import _codec, _io
from .stack import InstanceHeader

log = logging.getLogger(__name__)


@dataclass
class _Slot:
    """One output slice: which file/frame fills it."""

    k: int
    header: InstanceHeader


def _raw_dtype(h: InstanceHeader) -> np.dtype:
    if h.float_pixels:
        return np.dtype(np.float32 if h.bits_allocated == 32 else np.float64)
    ba = h.bits_allocated
    signed = h.pixel_representation == 1
    if ba <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    if ba <= 16:
        return np.dtype(np.int16 if signed else np.uint16)
    if ba <= 32:
        return np.dtype(np.int32 if signed else np.uint32)
    return np.dtype(np.int64 if signed else np.uint64)


def _fast_ok(h: InstanceHeader) -> bool:
    return (
        h.pixel_offset is not None
        and h.pixel_length is not None
        and h.pixel_length != 0xFFFFFFFF
        and h.transfer_syntax_uid in (_io.NATIVE_LE | _io.NATIVE_BE)
        and h.samples_per_pixel == 1
        and h.bits_allocated in (8, 16, 32)
        and h.photometric in ("MONOCHROME1", "MONOCHROME2")
    )


def _fix_bits(a: np.ndarray, h: InstanceHeader) -> np.ndarray:
    """Honour BitsStored < BitsAllocated: mask garbage high bits, sign-extend signed data."""
    if h.float_pixels or h.bits_stored <= 0 or h.bits_stored >= h.bits_allocated or a.dtype.kind not in "iu":
        return a
    shift = h.bits_allocated - h.bits_stored
    if h.pixel_representation == 1:
        np.left_shift(a, shift, out=a)
        np.right_shift(a, shift, out=a)
    else:
        np.bitwise_and(a, (1 << h.bits_stored) - 1, out=a)
    return a


_GZ_CACHE: "dict[Path, bytes]" = {}
_GZ_LOCK = threading.Lock()


def _open_cached(path: Path) -> Any:
    """Plain files are opened directly; gzip files are decompressed once per load call."""
    import io

    if not str(path).lower().endswith(".gz") and not _io.is_gzip(path):
        return open(path, "rb")
    with _GZ_LOCK:
        data = _GZ_CACHE.get(path)
    if data is None:
        with _io.open_binary(path) as f:
            data = f.read()
        with _GZ_LOCK:
            _GZ_CACHE[path] = data
    return io.BytesIO(data)


def _read_native(h: InstanceHeader, out: np.ndarray) -> None:
    """Read one uncompressed frame straight into ``out`` (a view of the volume array)."""
    nbytes = out.nbytes
    frame = h.frame_index or 0
    start = h.pixel_offset + frame * nbytes  # type: ignore[operator]
    if h.pixel_length is not None and (frame + 1) * nbytes > h.pixel_length:
        raise DicomReadError(h.path, f"pixel data too short: {h.pixel_length} bytes for "
                                     f"{h.number_of_frames} frame(s) of {h.rows}x{h.columns}")
    fp = _open_cached(h.path)
    try:
        fp.seek(start)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        got = fp.readinto(buf)
    finally:
        fp.close()
    if got != nbytes:
        raise DicomReadError(h.path, f"truncated pixel data: expected {nbytes} bytes, file has {got or 0}")
    if h.transfer_syntax_uid in _io.NATIVE_BE:
        out.byteswap(inplace=True)
    _fix_bits(out, h)



def clear_gz_cache() -> None:
    """Forget decompressed gzip files at the end of a load (they are only reused within one)."""
    with _GZ_LOCK:
        _GZ_CACHE.clear()


def _pixel_array(ds: Any, ts: str) -> np.ndarray:
    first = _codec.first_plugin(ts)
    if first:
        from pydicom.pixels import pixel_array

        try:
            return pixel_array(ds, decoding_plugin=first)
        except Exception:  # noqa: BLE001 - GDCM missing or refusing this file: the default order decides
            pass
    return ds.pixel_array


def _decode_file(path: Path) -> tuple[np.ndarray, Any]:
    """Decode every frame of one file with pydicom's plugins (pylibjpeg, GDCM, ...)."""
    import pydicom

    fp = _io.open_binary(path)
    try:
        ds = pydicom.dcmread(fp, force=True)
        ts = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
        if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise DicomReadError(path, "no pixel data")
        if not ts:
            ts = _infer_native_syntax(ds, path)
        try:
            arr = _pixel_array(ds, ts)
        except NotImplementedError as exc:
            raise UnsupportedTransferSyntaxError(path, f"no installed codec decodes transfer syntax {ts}: {exc}") from exc
        except (RuntimeError, ValueError) as exc:
            msg = str(exc)
            low = msg.lower()
            if "not supported" in low or "no available plugins" in low or "missing required dependencies" in low:
                raise UnsupportedTransferSyntaxError(path, f"cannot decode transfer syntax {ts}: {msg}") from exc
            if "length" in low or "truncat" in low or "short" in low or "buffer" in low or "expected" in low:
                raise DicomReadError(path, f"truncated or corrupt pixel data: {msg}") from exc
            raise DicomReadError(path, f"pixel data cannot be decoded: {msg}") from exc
        except EOFError as exc:
            raise DicomReadError(path, f"truncated pixel data: {exc}") from exc
        photometric = str(ds.get("PhotometricInterpretation", "")).upper()
        if photometric == "PALETTE COLOR":
            from pydicom.pixels import apply_color_lut

            arr = apply_color_lut(arr, ds)
            if arr.dtype.itemsize > 1 and int(ds.get("BitsAllocated", 8) or 8) <= 8:
                # 16-bit LUT entries for 8-bit indices: the volume is 8-bit RGB, keep the high byte
                # (storing the entries as they are would keep only the low byte: a black image).
                arr = (arr >> 8).astype(np.uint8)
        return arr, ds
    finally:
        fp.close()


_NATIVE_BY_ENCODING = {(True, True): "1.2.840.10008.1.2", (False, True): "1.2.840.10008.1.2.1",
                       (False, False): "1.2.840.10008.1.2.2"}


def _infer_native_syntax(ds: Any, path: Path) -> str:
    """File meta without TransferSyntaxUID (old exports, e.g. pydicom's OT-PAL-8-face.dcm).

    pydicom needs the syntax to decode; when the pixel data is not encapsulated it can only be the
    native syntax the dataset was actually read with (implicit/explicit VR, byte order).
    """
    from pydicom.dataset import FileMetaDataset

    keyword = next(t for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if t in ds)
    if getattr(ds[keyword], "is_undefined_length", False):
        raise UnsupportedTransferSyntaxError(path, "compressed pixel data but no Transfer Syntax UID in the file meta")
    encoding = getattr(ds, "original_encoding", (None, None))
    ts = _NATIVE_BY_ENCODING.get(tuple(encoding))  # type: ignore[arg-type]
    if ts is None:
        raise DicomReadError(path, "no Transfer Syntax UID in the file meta and the encoding is unknown")
    if not hasattr(ds, "file_meta") or ds.file_meta is None:
        ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ts


class _FileCache:
    """Decode each multi-frame file once even when several slots use its frames."""

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._locks: dict[Path, Any] = {}
        self._data: dict[Path, np.ndarray] = {}

    def frames(self, path: Path) -> np.ndarray:
        import threading

        with self._lock:
            lk = self._locks.setdefault(path, threading.Lock())
        with lk:
            if path not in self._data:
                self._data[path] = _decode_file(path)[0]
            return self._data[path]


def _fill_slot(slot: _Slot, raw: np.ndarray, cache: _FileCache, color: bool) -> None:
    h = slot.header
    if not color and _fast_ok(h) and raw.dtype == _raw_dtype(h) and not (
        h.transfer_syntax_uid in _io.NATIVE_BE and h.bits_allocated == 8
    ):
        _read_native(h, raw[slot.k])
        return
    if not color and _codec.eligible(h):
        try:
            fast = _codec.decode(h.path, h.pixel_offset, h.transfer_syntax_uid,  # type: ignore[arg-type]
                                 _codec.pixel_options(h))
        except Exception:  # noqa: BLE001 - the pydicom path below decodes it or names the problem
            fast = None
        if fast is not None and fast.shape == raw.shape[1:]:
            raw[slot.k] = fast
            return
    arr = cache.frames(h.path) if (h.frame_index is not None or h.number_of_frames > 1) else _decode_file(h.path)[0]
    if h.frame_index is not None:
        if arr.ndim == (3 if color else 2):
            if h.frame_index != 0:
                raise DicomReadError(h.path, f"frame {h.frame_index + 1} missing from pixel data")
            frame = arr
        else:
            if h.frame_index >= arr.shape[0]:
                raise DicomReadError(h.path, f"pixel data holds {arr.shape[0]} frames, frame {h.frame_index + 1} missing")
            frame = arr[h.frame_index]
    else:
        frame = arr
    if frame.shape[: raw.ndim - 1] != raw.shape[1:] and frame.shape != raw.shape[1:]:
        raise DicomReadError(h.path, f"image is {frame.shape}, series expects {raw.shape[1:]}")
    raw[slot.k] = frame


def _shared_volume(raw: np.ndarray, headers: list[InstanceHeader], color: bool) -> tuple[Any, list[int], Any]:
    """A shared-memory block for ``raw``, the slots worker processes decode and their pool, when
    worth it. The pool is taken once here: another load may drop a broken pool meanwhile."""
    if color:
        return None, [], None
    fast = [k for k, h in enumerate(headers) if _codec.eligible(h)]
    if not fast or not _codec.should_use_pool(len(fast), sum(_codec.decode_cost(headers[k]) for k in fast)):
        return None, [], None
    proc = _codec.get_pool()
    if proc is None:
        return None, [], None
    try:
        shm = _codec.SharedVolume(raw.nbytes)
    except OSError as exc:  # no /dev/shm room: threads it is
        log.info("no shared memory for the decode workers (%s): decoding in threads", exc)
        return None, [], None
    return shm, fast, proc


def _decode_all(raw: np.ndarray, headers: list[InstanceHeader], color: bool, cache: _FileCache,
                bad: list[tuple[int, DicomReadError]], pooled: list[int], shm: Any, proc: Any, nworkers: int,
                progress: ProgressCallback | None, cancel: SupportsCancel | None) -> None:
    """Fill ``raw``: ``pooled`` slots in the worker processes, the others (and retries) in threads."""
    import queue
    from concurrent.futures.process import BrokenProcessPool

    n = len(headers)
    done = 0
    in_pool = set(pooled)

    def work(k: int) -> None:
        check_cancel(cancel)
        _fill_slot(_Slot(k, headers[k]), raw, cache, color)

    with ThreadPoolExecutor(max_workers=nworkers, thread_name_prefix="dicom-load") as tpool:
        slot_of: dict[Any, int] = {tpool.submit(work, k): k for k in range(n) if k not in in_pool}
        chunk_of: dict[Any, list[int]] = {}
        if pooled:
            per = max(1, -(-len(pooled) // (max(1, _codec.pool_workers()) * 10)))
            try:
                for i in range(0, len(pooled), per):
                    ks = pooled[i:i + per]
                    tasks = [(k, str(headers[k].path), int(headers[k].pixel_offset), headers[k].transfer_syntax_uid,  # type: ignore[arg-type]
                              _codec.pixel_options(headers[k])) for k in ks]
                    chunk_of[_codec.submit(proc, shm.name, raw.shape, raw.dtype, tasks)] = ks  # type: ignore[arg-type]
            except (BrokenProcessPool, RuntimeError, OSError) as exc:
                _codec.pool_failed(exc)
                queued = {k for ks in chunk_of.values() for k in ks}
                slot_of.update({tpool.submit(work, k): k for k in pooled if k not in queued})
        # Finished futures arrive on a queue (wait() on hundreds of futures per step is quadratic);
        # the timeout keeps the cancel token checked while a long chunk runs.
        finished: queue.SimpleQueue[Any] = queue.SimpleQueue()
        outstanding = len(slot_of) + len(chunk_of)
        for fut in list(slot_of) + list(chunk_of):
            fut.add_done_callback(finished.put)
        try:
            while outstanding:
                try:
                    fut = finished.get(timeout=0.2)
                except queue.Empty:
                    check_cancel(cancel)
                    continue
                outstanding -= 1
                check_cancel(cancel)
                if fut in chunk_of:
                    ks = chunk_of[fut]
                    try:
                        failed = fut.result()
                    except BrokenProcessPool as exc:
                        _codec.pool_failed(exc)
                        failed = ks
                    except Exception as exc:  # noqa: BLE001 - e.g. a pickling problem: retry in threads
                        log.warning("decode worker failed (%s): retrying its slices in threads", type(exc).__name__)
                        failed = ks
                    for k in failed:  # the pydicom path decodes these or names the problem
                        f2 = tpool.submit(work, k)
                        slot_of[f2] = k
                        outstanding += 1
                        f2.add_done_callback(finished.put)
                    done += len(ks) - len(failed)
                else:
                    k = slot_of[fut]
                    try:
                        fut.result()
                    except DicomReadError as exc:
                        bad.append((k, exc))
                    except (OSError, ValueError, RuntimeError, TypeError, IndexError, KeyError, AttributeError,
                            EOFError, MemoryError) as exc:
                        bad.append((k, DicomReadError(headers[k].path, "pixel data cannot be decoded: "
                                                                       f"{type(exc).__name__}: {exc}")))
                    done += 1
                if progress is not None:
                    progress(done, n, "decoding slices")
        except BaseException:
            for f in list(slot_of) + list(chunk_of):
                f.cancel()
            raise
    check_cancel(cancel)


def _rescale(raw: np.ndarray, headers: list[InstanceHeader]) -> np.ndarray:
    """Apply per-slice slope/intercept; keep int16 when that is exact, else float32.

    May reuse (and overwrite) ``raw``'s memory for the result.
    """
    slopes = np.array([h.rescale_slope for h in headers], dtype=np.float64)
    inters = np.array([h.rescale_intercept for h in headers], dtype=np.float64)
    identity = bool(np.all(slopes == 1.0) and np.all(inters == 0.0))
    if raw.dtype.kind == "f":
        if identity:
            return raw.astype(np.float32, copy=False)
        out = raw.astype(np.float32)
        out *= slopes[:, None, None].astype(np.float32)
        out += inters[:, None, None].astype(np.float32)
        return out
    integral = bool(np.all(slopes == np.round(slopes)) and np.all(inters == np.round(inters)))
    if identity and raw.dtype in (np.int16, np.uint8, np.int8):
        return raw
    lo, hi = int(raw.min()), int(raw.max())
    if integral:
        cand = [lo * s + b for s, b in zip(slopes, inters)] + [hi * s + b for s, b in zip(slopes, inters)]
        vmin, vmax = min(cand), max(cand)
        if -32768 <= vmin and vmax <= 32767:
            if raw.dtype == np.uint16 and hi <= 32767:
                # Same values as int16: rescale in place through an int16 view, with no second
                # volume-sized allocation (fresh pages cost up to 0.5 s per 200 MB on a VM).
                raw = raw.view(np.int16)
            if identity:
                return raw if raw.dtype == np.int16 else raw.astype(np.int16)
            if raw.dtype == np.int16 and np.all(slopes == 1.0):
                if len(set(inters.tolist())) == 1:
                    raw += np.int16(inters[0])
                else:
                    raw += inters.astype(np.int16)[:, None, None]
                return raw
            out = np.empty(raw.shape, dtype=np.int16)
            if np.all(slopes == 1.0) and len(set(inters.tolist())) == 1:
                np.add(raw, np.int32(inters[0]), out=out, casting="unsafe")
                return out
            for k in range(raw.shape[0]):
                np.add(raw[k].astype(np.int32) * int(slopes[k]), int(inters[k]), out=out[k], casting="unsafe")
            return out
        if identity and raw.dtype in (np.uint16, np.int32, np.uint32):
            return raw  # exact integers outside int16: keep the stored type
    out = raw.astype(np.float32)
    out *= slopes[:, None, None].astype(np.float32)
    out += inters[:, None, None].astype(np.float32)
    return out
