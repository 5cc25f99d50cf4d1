"""Fast decoding of compressed single-frame slices, in this process or in a spawned worker pool.

Why: decoding a compressed CT slice costs 7-18 ms of CPU in GDCM/OpenJPEG and none of the codec
bindings release the GIL, so a thread pool decodes on one core, and ``pydicom.dcmread`` adds
~1 ms per file on top. Here the encapsulated Pixel Data is cut straight from the file bytes (its
offset is known from the header scan, PS3.5 A.4 items) and handed to pydicom's decoder with the
Image Pixel values of the header, which runs the same plugins and the same corrections as
``Dataset.pixel_array`` (so the voxels are bit-identical), without parsing the dataset again.
Large compressed stacks are decoded by a pool of *spawned* worker processes (one per core,
created on first use and reused) writing straight into a shared-memory volume.

Anything unusual (multi-frame, colour, broken item structure, a decoder error) returns ``None``
or reports the slice as failed, and the caller falls back to the full pydicom path, which
produces the per-file error message.
"""
from __future__ import annotations

import logging
import mmap
import os
import struct
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import env_key
from ..errors import ConfigError
from . import _io

log = logging.getLogger(__name__)

_ITEM, _SEQ_END = (0xFFFE, 0xE000), (0xFFFE, 0xE0DD)
_ITEM_HDR = struct.Struct("<HHI")
_J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
# Encapsulated syntaxes pydicom has a decoder for (JPEG family, JPEG-LS, JPEG 2000, RLE).
_ENCAPSULATED = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5",
}
_UNDEFINED = 0xFFFFFFFF

# Environment override of the worker count: 0 or 1 switches the process pool off.
ENV_PROCESSES = "CASEBOOK_DECODE_PROCESSES"
# Below this much work a cold pool (0.3-0.5 s to spawn and import on 2 cores) costs more than it
# saves: ~64 JPEG-LS slices of 512x512 (8 ms each) or ~32 JPEG 2000 ones (17 ms, counted double).
_COLD_MIN_PIXELS = 64 * 512 * 512
_SLOW_CODECS = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}


def decode_cost(h: Any) -> int:
    """Relative decode work of slice ``h`` (pixels, JPEG 2000 counted double)."""
    return h.rows * h.columns * (2 if h.transfer_syntax_uid in _SLOW_CODECS else 1)
_WARM_MIN_SLICES = 4


def eligible(h: Any) -> bool:
    """True when slice header ``h`` (an ``InstanceHeader``) can take the fast compressed path."""
    return (
        h.pixel_offset is not None
        and h.pixel_length == _UNDEFINED
        and h.transfer_syntax_uid in _ENCAPSULATED
        and h.number_of_frames == 1
        and h.frame_index is None
        and h.samples_per_pixel == 1
        and h.photometric in ("MONOCHROME1", "MONOCHROME2")
        and not h.float_pixels
        and h.rows > 0
        and h.columns > 0
        and h.bits_allocated in (8, 16, 32)
        and 0 < h.bits_stored <= h.bits_allocated
    )


def encapsulated_value(data: bytes | memoryview) -> bytes | None:
    """The encapsulated Pixel Data value (offset table item + fragments, no delimiter) at the start
    of ``data``, or ``None`` when the item structure is not intact (truncated, corrupt)."""
    pos, end = 0, len(data)
    count = 0
    while pos + 8 <= end:
        g, e, length = _ITEM_HDR.unpack_from(data, pos)
        if (g, e) == _SEQ_END:
            return bytes(data[:pos]) if count >= 2 else None
        if (g, e) != _ITEM or length == _UNDEFINED or pos + 8 + length > end:
            return None
        pos += 8 + length
        count += 1
    return None  # no sequence delimiter: truncated


# ------------------------------------------------------------------ checks before a decoder runs

_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_JPEG_SYNTAXES = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                  "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
                 "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
_RLE = "1.2.840.10008.1.2.5"
# Most decoded bytes one RLE byte can stand for (PackBits: two bytes repeat one up to 128 times).
_RLE_MAX_RATIO = 64


def jpeg_frame_size(stream: bytes | memoryview) -> tuple[int, int, int, int] | None:
    """(rows, columns, components, precision) from a JPEG / JPEG-LS start-of-frame, or None."""
    data = bytes(stream[:65536])
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if marker in _JPEG_SOF:
            if pos + 10 > len(data):
                return None
            precision = data[pos + 4]
            y, x = struct.unpack_from(">HH", data, pos + 5)
            return y, x, data[pos + 9], precision
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        pos += 2 + length
    return None


def j2k_frame_size(stream: bytes | memoryview) -> tuple[int, int, int, int] | None:
    """(rows, columns, components, precision) from a JPEG 2000 SIZ marker (raw or JP2), or None."""
    data = bytes(stream[:65536])
    at = data.find(b"\xff\x4f\xff\x51")
    if at < 0 or at + 4 + 38 + 3 > len(data):
        return None
    siz = at + 4
    xsiz, ysiz, xo, yo = struct.unpack_from(">IIII", data, siz + 4)
    (csiz,) = struct.unpack_from(">H", data, siz + 36)
    precision = (data[siz + 38] & 0x7F) + 1
    return ysiz - yo, xsiz - xo, csiz, precision


def check_frame(path: Path | str, ts: str, fragment: bytes | memoryview, frame_bytes: int, opts: dict[str, Any]) -> None:
    """Refuse to decode a frame whose codestream disagrees with the header it is decoded for.

    Why: decoders allocate what the stream or the header says, and GDCM aborts the process on a
    stream whose size differs from Rows/Columns/BitsStored. Checked here, before any decoder runs:
    the codestream's own frame header (JPEG SOF, JPEG-LS SOF55, JPEG 2000 SIZ) against Rows,
    Columns and SamplesPerPixel, and for RLE the most bytes its segments can expand to.
    """
    from ..errors import DicomReadError

    rows, cols = int(opts["rows"]), int(opts["columns"])
    spp, ba = int(opts.get("samples_per_pixel", 1)), int(opts.get("bits_allocated", 16))
    info = None
    kind = ""
    if ts in _JPEG_SYNTAXES:
        info, kind = jpeg_frame_size(fragment), "JPEG"
    elif ts in _J2K_SYNTAXES:
        _check_jp2_boxes(path, fragment)
        info, kind = j2k_frame_size(fragment), "JPEG 2000"
    elif ts == _RLE:
        if len(fragment) < 64:
            raise DicomReadError(path, f"RLE fragment of {len(fragment)} bytes has no segment header")
        (segments,) = struct.unpack_from("<I", fragment, 0)
        if not 1 <= segments <= 15:
            raise DicomReadError(path, f"RLE fragment declares {segments} segments (1 to 15 allowed)")
        if len(fragment) * _RLE_MAX_RATIO < frame_bytes:
            raise DicomReadError(path, f"RLE fragment of {len(fragment)} bytes cannot hold a frame of {rows}x{cols}"
                                       f"x{spp} at {ba} bits ({frame_bytes} bytes)")
        return
    else:
        return
    if info is None:
        raise DicomReadError(path, f"pixel data fragment is not a {kind} codestream (no frame header found)")
    y, x, comps, precision = info
    if (y != 0 and y != rows) or x != cols or comps != spp:
        raise DicomReadError(path, f"the {kind} stream holds {y}x{x} pixels with {comps} component(s), the header "
                                   f"declares {rows}x{cols} with {spp}")
    if precision > max(ba, 8) or precision == 0:
        raise DicomReadError(path, f"the {kind} stream has {precision}-bit samples, the header allocates {ba} bits")


def _check_jp2_boxes(path: Path | str, stream: bytes | memoryview) -> None:
    """Refuse a JP2-wrapped stream whose boxes do not lead to its codestream box.

    Why: pydicom walks these boxes to find the codestream and loops forever on a box of length 0
    (measured: a hung load); a box shorter than its own header cannot be right before ``jp2c``.
    """
    from ..errors import DicomReadError

    data = bytes(stream[:1 << 20])
    if not data.startswith(b"\x00\x00\x00\x0c\x6a\x50\x20\x20"):
        return
    pos = 12
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        if data[pos + 4:pos + 8] == b"jp2c":
            return
        if length < 8:
            raise DicomReadError(path, f"JPEG 2000 (JP2) box of length {length} at byte {pos}: corrupt box structure")
        pos += length
    raise DicomReadError(path, "JPEG 2000 (JP2) stream without a codestream box")


def fragments(value: bytes | memoryview) -> list[memoryview]:
    """The fragments (after the basic offset table) of an encapsulated Pixel Data value."""
    mv = memoryview(value)
    out: list[memoryview] = []
    pos, end, first = 0, len(mv), True
    while pos + 8 <= end:
        g, e, length = _ITEM_HDR.unpack_from(mv, pos)
        if (g, e) != _ITEM or length == _UNDEFINED or pos + 8 + length > end:
            break
        if not first:
            out.append(mv[pos + 8:pos + 8 + length])
        first = False
        pos += 8 + length
    return out


def frame_starts(ts: str, frags: list[memoryview]) -> list[memoryview]:
    """The fragments that begin a frame's codestream (each frame starts with one)."""
    if ts in _JPEG_SYNTAXES:
        return [f for f in frags if bytes(f[:2]) == b"\xff\xd8"]
    if ts in _J2K_SYNTAXES:
        return [f for f in frags if bytes(f[:4]) == b"\xff\x4f\xff\x51" or bytes(f[4:8]) == b"jP  "]
    return frags


def check_encapsulated(path: Path | str, ts: str, value: bytes | memoryview, frames: int, opts: dict[str, Any],
                       frame_bytes: int) -> None:
    """Refuse encapsulated pixel data that cannot hold ``frames`` frames matching the header."""
    from ..errors import DicomReadError

    frags = fragments(value)
    if not frags:
        raise DicomReadError(path, "encapsulated pixel data holds no fragments (truncated or corrupt item lengths)")
    if frames > len(frags):
        raise DicomReadError(path, f"declares {frames} frames but the pixel data holds only {len(frags)} fragment(s)")
    starts = frame_starts(ts, frags) if frames > 1 else frags[:1]
    if frames > 1 and ts in (_JPEG_SYNTAXES | _J2K_SYNTAXES) and len(starts) < frames:
        raise DicomReadError(path, f"declares {frames} frames but the pixel data holds {len(starts)} codestream(s)")
    if ts == _RLE and frames > 1:
        starts = frags[:frames]
    for f in starts[:frames]:
        check_frame(path, ts, f, frame_bytes, opts)


def count_fragments(path: Path, offset: int, limit: int = 1 << 24) -> int | None:
    """Fragments (after the offset table) of the encapsulated Pixel Data at ``offset`` of ``path``,
    counted from the item headers alone (8 bytes read per item); None when unreadable."""
    try:
        with open(path, "rb") as fp:
            fp.seek(0, os.SEEK_END)
            size = fp.tell()
            pos, count = offset, -1
            while pos + 8 <= size and count < limit:
                fp.seek(pos)
                head = fp.read(8)
                if len(head) < 8:
                    break
                g, e, length = _ITEM_HDR.unpack(head)
                if (g, e) != _ITEM or length == _UNDEFINED:
                    break
                count += 1
                pos += 8 + length
            return max(0, count)
    except OSError:
        return None


def _read_value(path: Path, offset: int) -> bytes | None:
    fp = _io.open_binary(path)
    try:
        fp.seek(offset)
        data = fp.read()
    finally:
        fp.close()
    return encapsulated_value(data)


def pixel_options(h: Any) -> dict[str, Any]:
    """The Image Pixel values pydicom's decoder needs (what ``as_pixel_options(ds)`` gives)."""
    return {
        "rows": h.rows,
        "columns": h.columns,
        "samples_per_pixel": 1,
        "bits_allocated": h.bits_allocated,
        "bits_stored": h.bits_stored,
        "pixel_representation": h.pixel_representation,
        "photometric_interpretation": h.photometric,
        "number_of_frames": 1,
    }


def decode(path: Path, offset: int, ts: str, opts: dict[str, Any]) -> np.ndarray | None:
    """Decode the single frame at ``offset`` of ``path``; ``None`` means "use the pydicom path"."""
    value = _read_value(path, offset)
    if value is None:
        return None
    from pydicom.pixels.decoders.base import get_decoder

    from .limits import frame_bytes as _frame_bytes

    check_encapsulated(path, ts, value, 1, opts, _frame_bytes(int(opts["rows"]), int(opts["columns"]),
                                                             int(opts.get("samples_per_pixel", 1)),
                                                             int(opts.get("bits_allocated", 16))))
    protect_process()
    decoder = get_decoder(ts)
    first = first_plugin(ts)
    if first:
        try:
            return decoder.as_array(value, decoding_plugin=first, **opts)[0]
        except Exception:  # noqa: BLE001 - plugin missing or refusing: pydicom's default order decides
            pass
    return decoder.as_array(value, **opts)[0]


# Plugin tried first, by CPU time per 512x512 CT slice (lossless, so every plugin gives the same
# voxels; tests/viewer/core/dicom/test_fast_decode.py checks that on the shared files):
# JPEG-LS: GDCM's CharLS ~7 ms vs pylibjpeg-libjpeg ~19 ms; JPEG 2000 lossless: pylibjpeg-openjpeg
# ~17 ms vs GDCM ~19-20 ms (GDCM also starts OpenJPEG threads, which only contend with the pool).
_FIRST_PLUGIN = {"1.2.840.10008.1.2.4.80": "gdcm", "1.2.840.10008.1.2.4.81": "gdcm", _J2K_LOSSLESS: "pylibjpeg"}


def first_plugin(ts: str) -> str | None:
    """The decoding plugin to try first for transfer syntax ``ts`` (None: pydicom's own order).

    The one plugin-preference table: the fast path here and the pydicom path of the loader share it.
    GDCM is preferred only inside decode worker processes (see :func:`protect_process`).
    """
    first = _FIRST_PLUGIN.get(ts)
    if first in _UNSAFE_PLUGINS and not _IN_WORKER:
        return None
    return first


# Plugins that can abort the whole process on hostile input: GDCM throws C++ exceptions nobody
# catches (``terminate called after throwing an instance of 'gdcm::Exception'``) for JPEG / JPEG-LS
# streams whose size differs from Rows/Columns/BitsStored. They run only in decode worker
# processes, where a crash costs one worker and the slice is reported as unreadable.
_UNSAFE_PLUGINS = ("gdcm",)
_IN_WORKER = False
_PROTECTED = False
_PROTECT_LOCK = threading.Lock()


def protect_process() -> None:
    """Take the plugins that can abort the process out of pydicom's decoders in this (the
    application's) process; a decode worker keeps them. Idempotent and cheap after the first call."""
    global _PROTECTED
    if _PROTECTED or _IN_WORKER:
        return
    with _PROTECT_LOCK:
        if _PROTECTED:
            return
        from pydicom.pixels.decoders.base import get_decoder

        for ts in sorted(_ENCAPSULATED | {"1.2.840.10008.1.2.1.99"}):
            try:
                decoder = get_decoder(ts)
            except (NotImplementedError, ValueError):
                continue
            for label in _UNSAFE_PLUGINS:
                try:
                    decoder.remove_plugin(label)
                except ValueError:
                    pass
            if ts in _J2K_SYNTAXES and "pylibjpeg" in decoder.available_plugins:
                # Pillow decodes JPEG 2000 with the same OpenJPEG that pylibjpeg-openjpeg wraps, so
                # after pylibjpeg refused a stream it only repeats the work, at worst for minutes
                # on a damaged 4-megapixel frame.
                try:
                    decoder.remove_plugin("pillow")
                except ValueError:
                    pass
        _PROTECTED = True


def unsafe_plugin_available(ts: str) -> bool:
    """Could a decode worker try an unsafe plugin (GDCM) on transfer syntax ``ts``? Only for the
    JPEG family and JPEG-LS, where GDCM has decoders of its own: its JPEG 2000 is OpenJPEG, the
    library pylibjpeg-openjpeg already tried."""
    if ts not in _JPEG_SYNTAXES:
        return False
    for label in _UNSAFE_PLUGINS:
        try:
            __import__(label)
            return True
        except ImportError:
            continue
    return False


# ------------------------------------------------------------------------------ process pool

_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()
_POOL_BROKEN = False
_POOL_FAILURES = 0
_MAX_POOL_FAILURES = 3  # a worker killed once (out of memory, a crashing codec) is not a verdict
_POOL_PROVEN = False  # a worker has answered in this session: a later death is the data's fault


def pool_workers() -> int:
    """How many decode processes to use (0: none): one per usable core, ``CASEBOOK_DECODE_PROCESSES``."""
    env = os.environ.get(ENV_PROCESSES, "").strip()
    if env:
        try:  # parsed by the settings table, as the CLI checks it at start-up
            n = env_key(ENV_PROCESSES).parse_env(env)
        except ConfigError as exc:  # a library caller that skipped the start-up check
            log.warning("%s: decode process pool off", exc)
            return 0
        return n if n >= 2 else 0
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return min(cores, 8) if cores >= 2 else 0


def should_use_pool(n_slices: int, cost: int) -> bool:
    """Worth shipping ``n_slices`` compressed slices to worker processes?"""
    if _POOL_BROKEN or pool_workers() == 0:
        return False
    if _POOL is not None:
        return n_slices >= _WARM_MIN_SLICES
    return cost >= _COLD_MIN_PIXELS


def _worker_init() -> None:
    # Pay the imports once per worker, not on the first slice. A worker may use every plugin.
    global _IN_WORKER
    _IN_WORKER = True
    import pydicom.pixels.decoders.base  # noqa: F401

    for mod in ("gdcm", "openjpeg", "libjpeg"):
        try:
            __import__(mod)
        except ImportError:
            pass


def get_pool() -> ProcessPoolExecutor | None:
    """The shared decode pool (spawn start method), created on first use."""
    global _POOL, _POOL_WORKERS
    n = pool_workers()
    if n == 0 or _POOL_BROKEN:
        return None
    with _POOL_LOCK:
        if _POOL is None or _POOL_WORKERS != n:
            import multiprocessing

            if _POOL is not None:
                _POOL.shutdown(wait=False, cancel_futures=True)
            _POOL = ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_worker_init)
            _POOL_WORKERS = n
        return _POOL


def pool_failed(exc: BaseException, *, by_data: bool = False) -> None:
    """Drop a pool that broke (a worker died, spawning is impossible here). The next large load
    starts a fresh pool; after a few failures in one session, threads only from then on.

    ``by_data``: a worker died decoding a file (a codec crash on hostile data), which says
    nothing about the machine, so it does not count towards switching the pool off."""
    global _POOL, _POOL_BROKEN, _POOL_FAILURES
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL = None
        if not by_data:
            _POOL_FAILURES += 1
        _POOL_BROKEN = _POOL_FAILURES >= _MAX_POOL_FAILURES
    log.warning("decode process pool failed (%s, %d in this session): %s", type(exc).__name__, _POOL_FAILURES,
                "decoding in threads from now on" if _POOL_BROKEN else "this load finishes in threads")


def shutdown_pool() -> None:
    """Stop the worker processes (they are restarted on the next large compressed load)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=True, cancel_futures=True)
        _POOL = None


class SharedVolume:
    """A shared-memory block that the workers decode into and the parent's volume keeps.

    Why: copying a 200 MB volume out of shared memory costs a second volume-sized allocation
    (fresh pages are slow to fault in, up to 0.5 s on a VM). Instead the name is unlinked once the
    workers are done and the mapping is handed to the numpy arrays made on it: it is unmapped when
    the last of them is collected. Where ``SharedMemory`` does not expose its mapping (another
    Python), the arrays are made on ``SharedMemory.buf`` and :meth:`finish` copies what must stay.
    """

    def __init__(self, nbytes: int) -> None:
        from multiprocessing import shared_memory

        self._shm = shared_memory.SharedMemory(create=True, size=max(1, nbytes))
        self.name = self._shm.name
        # tmpfs only sets the size: a /dev/shm too small (Docker's default is 64 MB) would kill
        # the first process that writes past the free space with SIGBUS. Reserve the pages now,
        # so a lack of room is an OSError here and the load falls back to threads.
        fd = getattr(self._shm, "_fd", -1)
        if hasattr(os, "posix_fallocate") and isinstance(fd, int) and fd >= 0:
            try:
                os.posix_fallocate(fd, 0, max(1, nbytes))
            except OSError:
                self._shm.close()
                self._shm.unlink()
                raise
        mm = getattr(self._shm, "_mmap", None)
        self._mm = mm if isinstance(mm, mmap.mmap) and hasattr(self._shm, "_buf") else None

    def array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        count = int(np.prod(shape))
        buf = self._mm if self._mm is not None else self._shm.buf
        return np.frombuffer(buf, dtype=dtype, count=count).reshape(shape)  # type: ignore[arg-type]

    def finish(self, result: np.ndarray | None) -> np.ndarray | None:
        """Drop the name; return ``result`` (copied only when it cannot keep the mapping)."""
        try:
            self._shm.unlink()
        except OSError:
            pass
        if self._mm is not None:
            # Detach the mapping from the SharedMemory object: its close() (also run by __del__)
            # would fail while arrays use the mapping. The mapping now lives with those arrays.
            shm = self._shm
            try:
                shm._buf.release()  # type: ignore[attr-defined]
                shm._buf = None  # type: ignore[attr-defined]
                shm._mmap = None  # type: ignore[attr-defined]
                if getattr(shm, "_fd", -1) >= 0:
                    os.close(shm._fd)  # type: ignore[attr-defined]
                    shm._fd = -1  # type: ignore[attr-defined]
                return result
            except (AttributeError, BufferError, OSError) as exc:
                log.debug("shared volume kept attached (%s): copying", exc)
        if result is not None and np.may_share_memory(result, np.frombuffer(self._shm.buf, dtype=np.uint8)):
            result = result.copy()
        try:
            self._shm.close()
        except BufferError:  # a view is still alive (an exception's traceback): freed when collected
            pass
        return result


def decode_file_protected(path: Path, worker: Callable[[str], tuple[bool, Any]]) -> Any:
    """Decode a whole file in a decode worker process, where every plugin (GDCM too) may run.

    For a file the in-process plugins refused: a crash of the codec costs the worker, not the
    application, and becomes a :class:`DicomReadError` for this file. ``worker(path)`` runs in the
    worker and returns (True, frames) or (False, the reason). ``None`` when no worker
    process can be had (the pool is off); the caller reports the in-process failure then.
    """
    from concurrent.futures.process import BrokenProcessPool

    from ..errors import DicomReadError

    pool = get_pool()
    if pool is None:
        return None
    global _POOL_PROVEN
    try:
        fut = pool.submit(worker, str(path))
        ok, result = fut.result()
    except BrokenProcessPool as exc:
        if not _POOL_PROVEN:  # workers that never answered: the machine, not this file
            pool_failed(exc)
            return None
        pool_failed(exc, by_data=True)
        raise DicomReadError(path, "the decoder crashed on this file's pixel data (in a worker process; "
                                   "the file is corrupt or hostile)") from exc
    _POOL_PROVEN = True
    if not ok:
        raise DicomReadError(path, result)
    return result


Task = tuple[int, str, int, str, dict[str, Any]]  # slot, path, pixel offset, transfer syntax, options


def decode_into_shared(shm_name: str, shape: tuple[int, ...], dtype: str, tasks: list[Task]) -> list[int]:
    """Worker entry: decode ``tasks`` into the shared volume; return the slots that failed."""
    from multiprocessing import shared_memory

    shm = shared_memory.SharedMemory(name=shm_name)
    failed: list[int] = []
    try:
        out = np.ndarray(shape, dtype=np.dtype(dtype), buffer=shm.buf)
        for k, path, offset, ts, opts in tasks:
            try:
                arr = decode(Path(path), offset, ts, opts)
                if arr is None or arr.shape != out.shape[1:]:
                    failed.append(k)
                    continue
                out[k] = arr
            except Exception:  # noqa: BLE001 - the parent retries this slice on the pydicom path
                failed.append(k)
        del out
    finally:
        shm.close()
    return failed


def submit(pool: ProcessPoolExecutor, shm_name: str, shape: tuple[int, ...], dtype: np.dtype,
           tasks: list[Task]) -> "Future[list[int]]":
    return pool.submit(decode_into_shared, shm_name, shape, dtype.str, tasks)
