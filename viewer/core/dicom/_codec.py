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
from typing import Any

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
    """
    return _FIRST_PLUGIN.get(ts)


# ------------------------------------------------------------------------------ process pool

_POOL: ProcessPoolExecutor | None = None
_POOL_WORKERS = 0
_POOL_LOCK = threading.Lock()
_POOL_BROKEN = False
_POOL_FAILURES = 0
_MAX_POOL_FAILURES = 3  # a worker killed once (out of memory, a crashing codec) is not a verdict


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
    # Pay the imports once per worker, not on the first slice.
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


def pool_failed(exc: BaseException) -> None:
    """Drop a pool that broke (a worker died, spawning is impossible here). The next large load
    starts a fresh pool; after a few failures in one session, threads only from then on."""
    global _POOL, _POOL_BROKEN, _POOL_FAILURES
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.shutdown(wait=False, cancel_futures=True)
        _POOL = None
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
