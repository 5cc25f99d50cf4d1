"""The headless view model of the viewer, split by job.

- :mod:`.events`: synchronous emitters and the strict switch for raising subscribers
- :mod:`.geometry`: MPR slices of a volume and orientation labels
- :mod:`.measurements`: distance / ellipse ROI values and their labels
- :mod:`.presets`: window/level presets, read lazily
- :mod:`.gestures`: drag/zoom/pan/wheel arithmetic and tools
- :mod:`.study_info`: the typed study facts the overlay shows
- :mod:`.state`: :class:`ViewerState`, everything one viewer displays
- :mod:`.link`: linking two states (analogue by delta, prior by registration transform)

``from casebook.viewer.core.viewstate import ...`` keeps working for every name that used to
live in the single ``viewstate.py`` module.
"""
from __future__ import annotations

from typing import Any

from .errors import ViewStateError
from .events import EventEmitter, Events, is_strict, set_strict
from .geometry import ORIENTATIONS, MprGeometry, orientation_label
from .gestures import TOOL_LABELS, TOOLS, Drag, begin_drag, tool_label
from .link import (CameraLink, Link, PhysicalCameraLink, PositionLink, ScrollDeltaLink, StateLink, TransformLink,
                   WindowLink, analogue_links)
from .measurements import KIND_LABELS, Measurement, distance_mm, ellipse_stats
from .presets import load_window_presets, preset_label, wl_presets
from .state import EVENT_NAMES, LAYOUTS, PROJECTION_MODALITIES, ViewerState, is_single_image
from .study_info import StudyInfo


def __getattr__(name: str) -> Any:
    if name == "WL_PRESETS":  # was a constant read at import; now read on first use
        return wl_presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CameraLink", "Drag", "PROJECTION_MODALITIES", "PhysicalCameraLink", "PositionLink", "analogue_links",
           "is_single_image", "EVENT_NAMES", "EventEmitter", "Events", "KIND_LABELS", "LAYOUTS", "Link",
           "Measurement", "MprGeometry", "ORIENTATIONS", "ScrollDeltaLink", "StateLink", "StudyInfo", "TOOLS",
           "TOOL_LABELS", "TransformLink", "ViewStateError", "ViewerState", "WindowLink", "begin_drag",
           "distance_mm", "ellipse_stats", "is_strict", "load_window_presets", "orientation_label",
           "preset_label", "set_strict", "tool_label", "wl_presets"]
