"""Window/level presets, read from the shipped JSON the first time they are needed.

Lazy on purpose: importing the view model (a CLI command, a worker process) must not read
resource files, and a broken presets file is reported once, when the reader first needs it.
"""
from __future__ import annotations

import copy
import json
import logging
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)

# (center, width) in HU; "auto" is computed from the data. The shipped
# resources/presets/window_presets.json is the source of truth; these are its fallback copy.
_BUILTIN_WL: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


@lru_cache(maxsize=1)
def _read_presets() -> tuple[dict[str, Any], ...]:
    try:
        from casebook.resources import PRESETS_DIR

        data = json.loads((PRESETS_DIR / "window_presets.json").read_text(encoding="utf-8"))
        return tuple(dict(p) for p in data["presets"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("window presets file unreadable (%s); using built-in presets", exc)
        return tuple({"name": k, "label": k.capitalize(), "center": c, "width": w} for k, (c, w) in _BUILTIN_WL.items())


def load_window_presets() -> list[dict[str, Any]]:
    """Presets with label and PACS function key (a copy: callers may not edit the cache)."""
    return copy.deepcopy(list(_read_presets()))


@lru_cache(maxsize=1)
def _wl_table() -> dict[str, tuple[float, float]]:
    table = {p["name"]: (float(p["center"]), float(p["width"])) for p in _read_presets() if "center" in p}
    return table or dict(_BUILTIN_WL)


def wl_presets() -> dict[str, tuple[float, float]]:
    """Fixed (center, width) presets by name; ``auto`` and ``default`` come from the data."""
    return dict(_wl_table())


def preset_label(name: str) -> str:
    """The name a reader sees for a preset ("custom" after a drag, the header "default")."""
    for p in _read_presets():
        if p.get("name") == name:
            return str(p.get("label", name))
    return {"custom": "Custom", "default": "Default", "auto": "Auto"}.get(name, name)


def __getattr__(name: str) -> Any:
    if name == "WL_PRESETS":  # the old module constant, now read on first use
        return wl_presets()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["load_window_presets", "preset_label", "wl_presets"]
