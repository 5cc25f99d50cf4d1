"""Measurements a reader draws on a slice: distance (mm) and ellipse ROI (mean/SD in HU, area).

The values are computed from the displayed slice array, in the units a radiologist reports, and
the label text is made here (not in the renderer) so the list panel, the overlay and the tests
all show the same words.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

KIND_LABELS: dict[str, str] = {"distance": "Distance", "ellipse": "Ellipse ROI", "box": "Box"}


@dataclass(eq=False)  # identity, not value: two equal rings drawn twice are two measurements
class Measurement:
    """A distance or ellipse ROI drawn on one slice; points are image (row, col) in pixels."""

    kind: str  # "distance" | "ellipse" | "box"
    orientation: str
    slice_index: int
    p0: tuple[float, float]
    p1: tuple[float, float]
    values: dict[str, float] = field(default_factory=dict)
    unit: str = ""
    number: int = 0  # 1, 2, ... in the order drawn on this state (0: not added yet)
    length_unit: str = "mm"  # "px" when the file gives no pixel spacing (1 mm would be a guess)

    def label(self) -> str:
        """What the overlay shows next to the shape (and the list panel in its Value column)."""
        v = self.values
        lu = self.length_unit
        if self.kind == "distance":
            return f"{v.get('length_mm', 0.0):.1f} {lu}"
        if self.kind == "ellipse":
            u = f" {self.unit}" if self.unit else ""
            if not v.get("n"):
                return f"no pixels\narea {v.get('area_mm2', 0.0):.1f} {lu}²"
            return (f"mean {v.get('mean', 0.0):.1f}{u}  SD {v.get('sd', 0.0):.1f}\n"
                    f"area {v.get('area_mm2', 0.0):.1f} {lu}²")
        return ""

    def title(self) -> str:
        """``"#2 Ellipse ROI"``: the name in the list and in the overlay label's first line."""
        n = f"#{self.number} " if self.number else ""
        return f"{n}{KIND_LABELS.get(self.kind, self.kind)}"

    def label_anchor(self) -> tuple[float, float]:
        """Image (row, col) where the label attaches: the shape's top-right corner.

        Right of the shape so the text never covers what was measured; a distance uses the
        end point furthest right.
        """
        if self.kind == "distance":
            right = self.p0 if self.p0[1] >= self.p1[1] else self.p1
            return float(right[0]), float(right[1])
        return float(min(self.p0[0], self.p1[0])), float(max(self.p0[1], self.p1[1]))


def distance_mm(p0: tuple[float, float], p1: tuple[float, float], spacing: tuple[float, float]) -> float:
    """Length in mm of a segment given in image (row, col) pixels with (row_mm, col_mm) spacing."""
    dr = (p1[0] - p0[0]) * spacing[0]
    dc = (p1[1] - p0[1]) * spacing[1]
    return float(math.hypot(dr, dc))


def ellipse_stats(image: np.ndarray, p0: tuple[float, float], p1: tuple[float, float],
                  spacing: tuple[float, float]) -> dict[str, float]:
    """Mean/SD/min/max and area (mm²) of the pixels inside the ellipse inscribed in box p0-p1.

    Pixel centres inside the ellipse count; the area is the analytic ellipse area so that it
    does not jump by whole pixels while the reader drags.
    """
    r0, r1 = sorted((p0[0], p1[0]))
    c0, c1 = sorted((p0[1], p1[1]))
    cr, cc = (r0 + r1) / 2.0, (c0 + c1) / 2.0
    ar, ac = max((r1 - r0) / 2.0, 1e-6), max((c1 - c0) / 2.0, 1e-6)
    h, w = image.shape[:2]
    rs = slice(max(int(math.floor(r0)), 0), min(int(math.ceil(r1)) + 1, h))
    cs = slice(max(int(math.floor(c0)), 0), min(int(math.ceil(c1)) + 1, w))
    rr, cc_ = np.mgrid[rs, cs]
    inside = ((rr - cr) / ar) ** 2 + ((cc_ - cc) / ac) ** 2 <= 1.0
    vals = np.asarray(image[rs, cs], dtype=np.float64)[inside] if inside.size else np.empty(0)
    area = math.pi * ar * spacing[0] * ac * spacing[1]
    if vals.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan"),
                "n": 0.0, "area_mm2": area}
    return {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1)) if vals.size > 1 else 0.0,
            "min": float(vals.min()), "max": float(vals.max()), "n": float(vals.size), "area_mm2": area}


__all__ = ["KIND_LABELS", "Measurement", "distance_mm", "ellipse_stats"]
