"""Authoring a teaching case from the study being read: a draft pre-filled from the store, key images
taken from the view as the reader sees it (slice, window/level, measurements, a marker).

Making a case is the work that keeps teaching files empty, so every field the library already
knows is filled in: title and diagnosis from the report's diagnosis, findings and discussion from
the report, systems from the body part, tags and difficulty from the study.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from casebook.index.case_store.teaching_records import KeyImage, TeachingCase

# DICOM Body Part Examined -> organ system (Radiopaedia's systems); unknown parts give none
BODY_PART_SYSTEMS = {
    "HEAD": "Neuroradiology", "BRAIN": "Neuroradiology", "SKULL": "Neuroradiology", "NECK": "Head & Neck",
    "CSPINE": "Spine", "TSPINE": "Spine", "LSPINE": "Spine", "SPINE": "Spine", "CHEST": "Chest",
    "LUNG": "Chest", "THORAX": "Chest", "HEART": "Cardiac", "BREAST": "Breast", "ABDOMEN": "Gastrointestinal",
    "LIVER": "Hepatobiliary", "PANCREAS": "Hepatobiliary", "KIDNEY": "Urogenital", "PELVIS": "Urogenital",
    "PROSTATE": "Urogenital", "KNEE": "Musculoskeletal", "SHOULDER": "Musculoskeletal", "HIP": "Musculoskeletal",
    "HAND": "Musculoskeletal", "FOOT": "Musculoskeletal", "ANKLE": "Musculoskeletal", "WRIST": "Musculoskeletal",
    "ELBOW": "Musculoskeletal", "EXTREMITY": "Musculoskeletal",
}


def draft_case(store: Any, study_id: int, *, author: str = "") -> TeachingCase:
    """A new case for ``study_id`` pre-filled from what the store has (report, tags, body part)."""
    st = store.get_study(study_id)
    rep = store.get_report(study_id)
    series = store.list_series(study_id=study_id)
    if rep is None:
        for se in series:  # a series report stands in when the study has none
            rep = store.get_report(study_id, se.id)
            if rep is not None:
                break
    diagnosis = (rep.diagnosis if rep else "") or ""
    systems = sorted({BODY_PART_SYSTEMS[p] for p in (se.body_part.upper().replace(" ", "") for se in series)
                      if p in BODY_PART_SYSTEMS})
    return TeachingCase(study_id=int(study_id), title=diagnosis or st.description,
                        findings=(rep.findings if rep else "") or "", diagnosis=diagnosis,
                        discussion=(rep.impression if rep else "") or "", systems=systems,
                        difficulty=st.difficulty, author=author or ((rep.author if rep else "") or ""),
                        tags=list(st.tags))


def annotations_from_state(state: Any, orientation: str, slice_index: int,
                           marker: Sequence[float] | None = None) -> list[dict[str, Any]]:
    """The measurements drawn on this slice of ``state`` (a ViewerState), plus an optional marker."""
    out: list[dict[str, Any]] = []
    for m in getattr(state, "measurements", []):
        if m.orientation == orientation and m.slice_index == slice_index and m.kind in ("distance", "ellipse"):
            out.append({"kind": m.kind, "p0": [float(m.p0[0]), float(m.p0[1])], "p1": [float(m.p1[0]), float(m.p1[1])],
                        "label": m.label().replace("\n", " "), "values": {k: float(v) for k, v in m.values.items()}})
    if marker is not None:
        out.append({"kind": "marker", "p0": [float(marker[0]), float(marker[1])],
                    "p1": [float(marker[0]), float(marker[1])], "label": "finding"})
    return out


def key_image_from_state(state: Any, series_id: int, *, orientation: str | None = None,
                         marker: Sequence[float] | None = None, caption: str = "") -> KeyImage:
    """The slice on screen as a key image: the stored image under the crosshair (its slice in the
    series, so the SOP Instance UID travels with it), the view it was seen in, the window/level
    and what is drawn on that view's slice.

    Without an explicit ``marker`` the crosshair marks the finding when it is shown (where the
    reader last pointed).
    """
    o = orientation or getattr(state, "active_view", "axial") or "axial"
    view_index = int(state.slice_index(o))
    k = view_index
    vol = getattr(state, "volume", None)
    if vol is not None and getattr(state, "geometry", None) is not None:
        ijk = np.asarray(vol.lps_to_index(np.asarray(state.crosshair_lps)), dtype=float)
        k = int(np.clip(round(float(ijk[2])), 0, vol.shape[0] - 1))
    if marker is None and getattr(state, "show_crosshair", False) and getattr(state, "geometry", None) is not None:
        marker = _crosshair_pixel(state, o)
    c, w = state.window
    anns = annotations_from_state(state, o, view_index, marker)
    return KeyImage(series_id=int(series_id), slice_index=k, orientation=o, window_center=float(c),
                    window_width=float(w), annotations=anns, caption=caption,
                    view_index=view_index)


def _crosshair_pixel(state: Any, orientation: str) -> tuple[float, float] | None:
    """The crosshair as (row, col) of the ``orientation`` image (see MprGeometry.slice_array)."""
    c = np.asarray(state.crosshair_canon, dtype=float)
    n_s = state.geometry.shape[0]
    if orientation == "axial":
        return float(c[1]), float(c[2])
    if orientation == "coronal":
        return float(n_s - 1 - c[0]), float(c[2])
    return float(n_s - 1 - c[0]), float(c[1])


def save_key_image(store: Any, series_id: int, key_image: KeyImage, *, author: str = "") -> tuple[int, bool]:
    """Add ``key_image`` to the case of the series' study, creating the pre-filled case first
    when the study is not a case yet; returns (case id, whether the case is new)."""
    se = store.get_series(series_id)
    case_id = store.teaching_case_for_study(se.study_id)
    if case_id is None:
        draft = draft_case(store, se.study_id, author=author)
        draft.key_images = [key_image]
        return store.create_teaching_case(draft), True
    store.add_key_image(case_id, key_image)
    return case_id, False


__all__ = ["BODY_PART_SYSTEMS", "annotations_from_state", "draft_case", "key_image_from_state", "save_key_image"]
