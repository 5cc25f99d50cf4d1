"""Decoding pixel data into a preallocated volume array: straight reads of native slices at the
offset the scan found, fast decoding of compressed slices (:mod:`._codec`, in worker processes for
large stacks), pydicom for everything else; and the rescale to stored values.
"""
from __future__ import annotations

import logging
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled, DicomReadError, UnsupportedTransferSyntaxError
from ..progress import ProgressCallback, SupportsCancel, check_cancel
from . import _codec, _io
from .limits import LimitExceeded, check_declared, frame_bytes
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


def _pixel_array(ds: Any, ts: str, only: str | None = None) -> np.ndarray:
    if only:
        from pydicom.pixels import pixel_array

        return pixel_array(ds, decoding_plugin=only)
    first = _codec.first_plugin(ts)
    if first:
        from pydicom.pixels import pixel_array

        try:
            return pixel_array(ds, decoding_plugin=first)
        except Exception:  # noqa: BLE001 - GDCM missing or refusing this file: the default order decides
            pass
    return ds.pixel_array


def _decode_file(path: Path, only: str | None = None) -> tuple[np.ndarray, Any]:
    """Decode every frame of one file with pydicom's plugins (pylibjpeg, ...; GDCM only in a
    decode worker process). Every failure is a :class:`DicomReadError` naming the file."""
    try:
        return _decode_file_checked(path, only)
    except DicomReadError as exc:
        if (_codec._IN_WORKER or isinstance(exc, LimitExceeded) or not exc.reason.startswith(_DECODER_FAILED)):
            raise
        ts = exc.ts if isinstance(exc, _DecoderFailed) else ""
        if not _codec.unsafe_plugin_available(ts):
            raise
        # pylibjpeg refused it; GDCM may decode it, but only where its crash cannot take us down
        try:
            arr = _codec.decode_file_protected(path, _decode_file_in_worker)
        except DicomReadError as second:
            if "crashed" in second.reason:
                raise
            raise exc from second  # pylibjpeg's reason says more than GDCM's
        if arr is None:
            raise
        import pydicom

        with _io.open_binary(path) as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True, force=True)
        return arr, ds
    except (Cancelled, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom's encapsulation/value parsing raises many types
        raise DicomReadError(path, f"pixel data cannot be decoded: {type(exc).__name__}: {exc}") from exc


def _decode_file_in_worker(path: str) -> tuple[bool, Any]:
    """(True, frames) or (False, the reason): domain errors do not survive pickling by themselves."""
    try:  # only what the application's process may not run: the others already failed there
        return True, _decode_file(Path(path), only=_codec._UNSAFE_PLUGINS[0])[0]
    except DicomReadError as exc:
        return False, exc.reason
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's problem
        return False, f"pixel data cannot be decoded: {type(exc).__name__}: {exc}"


_DECODER_FAILED = "pixel data cannot be decoded"


class _DecoderFailed(DicomReadError):
    """The in-process plugins failed on a file that passed every check (GDCM may still decode it)."""

    def __init__(self, path: str | Path, reason: str, ts: str) -> None:
        super().__init__(path, reason)
        self.ts = ts


def _check_dataset(ds: Any, ts: str, path: Path) -> None:
    """Refuse before decoding what the header declares but the pixel data cannot hold."""
    from .headers import _i

    rows, cols = _i(ds, "Rows") or 0, _i(ds, "Columns") or 0
    raw_frames = _i(ds, "NumberOfFrames")
    frames = 1 if raw_frames is None or raw_frames == 0 else raw_frames
    spp = _i(ds, "SamplesPerPixel") or 1
    ba = _i(ds, "BitsAllocated") or 0
    if rows <= 0 or cols <= 0:
        raise DicomReadError(path, f"image of {rows}x{cols} pixels: nothing to decode")
    check_declared(path, rows, cols, frames, spp)
    if ba not in (1, 8, 16, 32, 64):
        raise DicomReadError(path, f"BitsAllocated {ba} is not 1, 8, 16, 32 or 64")
    keyword = next(t for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData") if t in ds)
    value = ds[keyword].value
    if value is None:
        raise DicomReadError(path, "empty pixel data")
    nbytes = frame_bytes(rows, cols, spp, ba)
    if getattr(ds[keyword], "is_undefined_length", False) and ts not in (_io.NATIVE_LE | _io.NATIVE_BE | _io.DEFLATED):
        opts = {"rows": rows, "columns": cols, "samples_per_pixel": spp, "bits_allocated": ba}
        _codec.check_encapsulated(path, ts, value, frames, opts, nbytes)
    elif len(value) < (nbytes * frames if ba != 1 else (rows * cols * spp * frames + 7) // 8):
        raise DicomReadError(path, f"truncated pixel data: {len(value)} bytes, the header declares {frames} frame(s) "
                                   f"of {rows}x{cols}x{spp} at {ba} bits")


def _decode_file_checked(path: Path, only: str | None = None) -> tuple[np.ndarray, Any]:
    import pydicom

    _codec.protect_process()
    fp = _io.open_binary(path)
    try:
        ds = pydicom.dcmread(fp, force=True)
        ts = str(getattr(ds, "file_meta", {}).get("TransferSyntaxUID", "")) if hasattr(ds, "file_meta") else ""
        if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            raise DicomReadError(path, "no pixel data")
        if not ts:
            ts = _infer_native_syntax(ds, path)
        _check_dataset(ds, ts, path)
        try:
            arr = _pixel_array(ds, ts, only)
        except NotImplementedError as exc:
            raise UnsupportedTransferSyntaxError(path, f"no installed codec decodes transfer syntax {ts}: {exc}") from exc
        except (RuntimeError, ValueError) as exc:
            msg = str(exc)
            low = msg.lower()
            if "not supported" in low or "no available plugins" in low or "missing required dependencies" in low:
                raise UnsupportedTransferSyntaxError(path, f"cannot decode transfer syntax {ts}: {msg}") from exc
            if "length" in low or "truncat" in low or "short" in low or "buffer" in low or "expected" in low:
                raise DicomReadError(path, f"truncated or corrupt pixel data: {msg}") from exc
            if "all available plugins" in low:  # the plugins ran and refused: GDCM may be tried
                raise _DecoderFailed(path, f"{_DECODER_FAILED}: {msg}", ts) from exc
            raise DicomReadError(path, f"{_DECODER_FAILED}: {msg}") from exc
        except EOFError as exc:
            raise DicomReadError(path, f"truncated pixel data: {exc}") from exc
        except (StopIteration, struct.error, SystemError, MemoryError, KeyError, IndexError, TypeError,
                AttributeError, OverflowError) as exc:  # pydicom's frame and value parsing on broken data
            raise DicomReadError(path, f"corrupt pixel data: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - pydicom's BytesLengthException and other plugin errors
            raise DicomReadError(path, f"pixel data cannot be decoded: {type(exc).__name__}: {exc}") from exc
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
    """Decode each multi-frame file once even when several slots use its frames; a failure is
    kept too, so that a broken 96-frame file is decoded once, not once per frame."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._locks: dict[Path, Any] = {}
        self._data: dict[Path, np.ndarray] = {}
        self._failed: dict[Path, DicomReadError] = {}

    def frames(self, path: Path) -> np.ndarray:
        with self._lock:
            lk = self._locks.setdefault(path, threading.Lock())
        with lk:
            failed = self._failed.get(path)
            if failed is not None:
                raise DicomReadError(failed.path, failed.reason)
            if path not in self._data:
                try:
                    self._data[path] = _decode_file(path)[0]
                except DicomReadError as exc:
                    self._failed[path] = exc
                    raise
            return self._data[path]


def precheck(headers: list[InstanceHeader], color: bool) -> tuple[list[InstanceHeader], list[DicomReadError]]:
    """Headers whose file can hold the frame they declare, and the errors of those that cannot.

    Run before the volume is allocated: native data is checked against the Pixel Data length and
    the file's size, encapsulated data against its item table (a frame per fragment at least).
    Cheap: a stat per file, and a walk over the item headers of encapsulated files.
    """
    good: list[InstanceHeader] = []
    bad: list[DicomReadError] = []
    sizes: dict[Path, int | None] = {}
    items: dict[Path, int | None] = {}
    for h in headers:
        try:
            _precheck_one(h, color, sizes, items)
        except DicomReadError as exc:
            bad.append(exc)
            continue
        good.append(h)
    return good, bad


def _precheck_one(h: InstanceHeader, color: bool, sizes: dict[Path, int | None], items: dict[Path, int | None]) -> None:
    check_declared(h.path, h.rows, h.columns, max(1, h.number_of_frames), max(1, h.samples_per_pixel))
    if h.pixel_offset is None or h.pixel_length is None:
        return
    gz = str(h.path).lower().endswith(".gz")
    if h.path not in sizes:
        try:
            sizes[h.path] = None if gz else h.path.stat().st_size
        except OSError as exc:
            raise DicomReadError(h.path, f"cannot read: {exc.strerror or exc}") from exc
    size = sizes[h.path]
    frame = h.frame_index or 0
    if h.pixel_length != 0xFFFFFFFF and h.transfer_syntax_uid in (_io.NATIVE_LE | _io.NATIVE_BE):
        nbytes = frame_bytes(h.rows, h.columns, h.samples_per_pixel, h.bits_allocated)
        if h.bits_allocated == 1:
            return  # packed bits: pydicom unpacks whole files and names a short one
        need = (frame + 1) * nbytes
        if h.pixel_length < need:
            raise DicomReadError(h.path, f"pixel data too short: {h.pixel_length} bytes for frame {frame + 1} of "
                                         f"{h.rows}x{h.columns} ({need} bytes needed)")
        if size is not None and h.pixel_offset + need > size:
            raise DicomReadError(h.path, f"truncated pixel data: the file has {size} bytes, frame {frame + 1} "
                                         f"ends at byte {h.pixel_offset + need}")
    elif h.pixel_length == 0xFFFFFFFF and not gz:
        if h.path not in items:
            items[h.path] = _codec.count_fragments(h.path, h.pixel_offset)
        count = items[h.path]
        frames = max(1, h.number_of_frames)
        if count is not None and count == 0:
            raise DicomReadError(h.path, "encapsulated pixel data holds no fragments (truncated or corrupt)")
        if count is not None and frames > count:
            raise DicomReadError(h.path, f"declares {frames} frames but the pixel data holds only {count} fragment(s)")


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
                        _codec._POOL_PROVEN = True
                    except BrokenProcessPool as exc:  # a codec crashed a worker: these slices retry in threads
                        _codec.pool_failed(exc, by_data=_codec._POOL_PROVEN)
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
                    except Cancelled:
                        raise
                    except Exception as exc:  # noqa: BLE001 - any third-party failure is this file's problem
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
