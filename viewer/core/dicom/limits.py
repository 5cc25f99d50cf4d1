"""Caps on what one file may declare, and the byte counts a header implies, checked before any
pixel memory is allocated.

Why: a file from the outside world can declare 16 x 65535 x 65535 pixels in a few hundred bytes,
and the loader must not believe it (a 64 GiB allocation, a MemoryError, or a machine swapping
during a reading session). The caps are settings (``[limits]`` in settings.toml,
``CASEBOOK_MAX_DIMENSION`` / ``CASEBOOK_MAX_FRAMES`` / ``CASEBOOK_MAX_VOXELS``), read once per
process; every refusal names the file, what it declares and the setting that refused it.
"""
from __future__ import annotations

import logging
import threading
from pathlib import Path

from ..config import LimitSettings, load_settings
from ..errors import ConfigError, DicomReadError

__all__ = ["LimitExceeded", "check_declared", "configure", "current", "frame_bytes"]

log = logging.getLogger(__name__)

_LOCK = threading.Lock()
_CURRENT: LimitSettings | None = None


class LimitExceeded(DicomReadError):
    """A file declares more pixels, frames or voxels than the configured limits allow."""


def current() -> LimitSettings:
    """The limits in force: set by :func:`configure`, else read once from the settings."""
    global _CURRENT
    with _LOCK:
        if _CURRENT is None:
            try:
                _CURRENT = load_settings().limits
            except ConfigError as exc:  # the CLI refuses this at start-up; a library caller gets defaults
                log.warning("%s: default limits in force", exc)
                _CURRENT = LimitSettings()
        return _CURRENT


def configure(limits: LimitSettings | None) -> None:
    """Use ``limits`` from now on in this process (``None``: read the settings again on next use)."""
    global _CURRENT
    with _LOCK:
        _CURRENT = limits


def frame_bytes(rows: int, columns: int, samples: int, bits_allocated: int) -> int:
    """Bytes of one native frame (1-bit data is packed, PS3.5 8.1.1)."""
    pixels = max(0, rows) * max(0, columns) * max(1, samples)
    if bits_allocated == 1:
        return (pixels + 7) // 8
    return pixels * max(1, (bits_allocated + 7) // 8)


def check_declared(path: str | Path, rows: int, columns: int, frames: int, samples: int = 1,
                   limits: LimitSettings | None = None) -> None:
    """Refuse a header whose image size, frame count or voxel count is beyond the limits (or not a
    size at all), before anything is allocated for it."""
    lim = limits or current()
    if frames < 1:
        raise DicomReadError(path, f"NumberOfFrames {frames} is not a frame count")
    if samples < 1 or samples > 4:
        raise DicomReadError(path, f"SamplesPerPixel {samples} is not 1 or 3")
    if rows > lim.max_dimension or columns > lim.max_dimension:
        raise LimitExceeded(path, f"image of {rows}x{columns} pixels exceeds the limit of {lim.max_dimension} "
                                  "(setting limits.max_dimension, CASEBOOK_MAX_DIMENSION)")
    if frames > lim.max_frames:
        raise LimitExceeded(path, f"{frames} frames exceed the limit of {lim.max_frames} "
                                  "(setting limits.max_frames, CASEBOOK_MAX_FRAMES)")
    voxels = rows * columns * frames * samples
    if voxels > lim.max_voxels:
        raise LimitExceeded(path, f"{frames} frame(s) of {rows}x{columns}x{samples} = {voxels} voxels exceed the "
                                  f"limit of {lim.max_voxels} (setting limits.max_voxels, CASEBOOK_MAX_VOXELS)")


def check_volume(where: str | Path, slices: int, rows: int, columns: int, samples: int = 1,
                 limits: LimitSettings | None = None) -> None:
    """Refuse a stack whose volume would exceed ``limits.max_voxels`` (many files, each under it)."""
    lim = limits or current()
    voxels = slices * rows * columns * samples
    if voxels > lim.max_voxels:
        raise LimitExceeded(where, f"a volume of {slices} slices of {rows}x{columns}x{samples} = {voxels} voxels "
                                   f"exceeds the limit of {lim.max_voxels} (setting limits.max_voxels, "
                                   "CASEBOOK_MAX_VOXELS)")
