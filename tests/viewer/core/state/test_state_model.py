"""The view model headless: setters emit exactly on change, strict events, gestures, links, study info."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from casebook.viewer.core.dicom.volume import Volume
from casebook.viewer.core.viewstate import (EVENT_NAMES, Measurement, StateLink, StudyInfo, TransformLink,
                                            ViewerState, ViewStateError, begin_drag, is_strict, set_strict,
                                            tool_label, wl_presets)
from casebook.viewer.core.viewstate import gestures
from casebook.common.errors import CasebookError


def _vol(shape=(10, 20, 30), spacing=(2.0, 0.5, 0.7), modality="CT", origin=(10.0, -20.0, 30.0)) -> Volume:
    vox = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(vox, spacing, origin, np.eye(3), modality=modality)


class Recorder:
    """Counts every event of a state by name, with its keyword arguments."""

    def __init__(self, st: ViewerState) -> None:
        self.seen: list[tuple[str, dict]] = []
        for name in EVENT_NAMES:
            getattr(st.events, name).connect(lambda name=name, **kw: self.seen.append((name, kw)))

    def names(self) -> list[str]:
        out = [n for n, _ in self.seen]
        self.seen.clear()
        return out


@pytest.fixture(autouse=True)
def _strict():
    set_strict(True)
    yield
    set_strict(None)


def test_every_setter_emits_once_on_change_and_never_without_one():
    st = ViewerState(_vol())
    rec = Recorder(st)
    calls = [
        (lambda: st.set_window(100, 300), ["window"]),
        (lambda: st.set_invert(True), ["invert"]),
        (lambda: st.set_zoom("axial", 2.0), ["zoom"]),
        (lambda: st.set_pan("coronal", (3.0, 4.0)), ["pan"]),
        (lambda: st.set_layout("1x2"), ["layout"]),
        (lambda: st.set_active_view("sagittal"), ["active_view"]),
        (lambda: st.set_tool("distance"), ["tool"]),
        (lambda: st.set_overlay_visible(False), ["overlay"]),
        (lambda: st.set_crosshair_visible(False), ["crosshair_visible"]),
        (lambda: st.set_loading_fraction(0.25), ["loading"]),
        (lambda: st.set_cine(True), ["cine"]),
        (lambda: st.set_highlight("axial", {3}), ["highlight"]),
        (lambda: st.set_study_info(StudyInfo(patient_name="A^B")), ["study_info"]),
        (lambda: st.set_slice("axial", 2), ["slice", "crosshair"]),
    ]
    for call, expected in calls:
        call()
        assert rec.names() == expected, expected
        call()  # the same value again: nothing changed, nothing is emitted
        assert rec.names() == [], expected


def test_window_event_carries_the_preset_and_a_preset_change_alone_emits():
    st = ViewerState(_vol())
    rec = Recorder(st)
    c, w = wl_presets()["lung"]
    st.set_window(c, w)
    assert st.preset == "custom" and rec.seen[-1] == ("window", {"center": c, "width": w, "preset": "custom"})
    rec.seen.clear()
    st.apply_preset("lung")  # same numbers, now named: the overlay's preset label must update
    assert st.preset == "lung" and rec.names() == ["window"]
    st.apply_preset("lung")
    assert rec.names() == []
    with pytest.raises(ViewStateError):
        st.apply_preset("nonsense")


def test_loading_fraction_is_clamped_and_cine_fps_change_emits():
    st = ViewerState(_vol())
    rec = Recorder(st)
    st.set_loading_fraction(1.7)
    assert st.loading_fraction == 1.0 and rec.names() == []  # already complete
    st.set_loading_fraction(float("nan"))
    assert st.loading_fraction == 0.0 and rec.names() == ["loading"]
    st.set_cine(False, fps=200)
    assert st.cine_fps == 60.0 and rec.seen[-1] == ("cine", {"playing": False, "fps": 60.0})


def test_wrong_names_raise_the_casebook_error_family():
    st = ViewerState(_vol())
    for bad in (lambda: st.set_tool("laser"), lambda: st.set_layout("3x3"), lambda: st.set_zoom("oblique", 2),
                lambda: st.set_active_view("3d"), lambda: tool_label("laser")):
        with pytest.raises(ViewStateError) as info:
            bad()
        assert isinstance(info.value, CasebookError) and isinstance(info.value, ValueError)


@pytest.mark.allows_error_log  # production mode logs the raising subscriber at ERROR: that is what it checks
def test_strict_events_reraise_and_production_logs_and_continues(caplog, monkeypatch):
    st = ViewerState(_vol())
    after = []

    def broken(**_):
        raise TypeError("adapter bug")

    st.events.zoom.connect(broken)
    st.events.zoom.connect(lambda **kw: after.append(kw["zoom"]))
    with pytest.raises(TypeError, match="adapter bug"):
        st.set_zoom("axial", 2.0)
    set_strict(False)
    with caplog.at_level(logging.ERROR, logger="casebook"):
        st.set_zoom("axial", 3.0)
    assert after[-1] == 3.0  # the other subscriber still ran
    rec = [r for r in caplog.records if r.levelno == logging.ERROR and r.name.startswith("casebook.")]
    assert len(rec) == 1 and "zoom" in rec[0].getMessage() and rec[0].exc_info[0] is TypeError
    set_strict(None)  # follow the environment
    monkeypatch.setenv("CASEBOOK_STRICT_EVENTS", "1")
    assert is_strict()
    with pytest.raises(TypeError):
        st.set_zoom("axial", 4.0)
    monkeypatch.setenv("CASEBOOK_STRICT_EVENTS", "0")
    assert not is_strict()


def test_gesture_arithmetic():
    assert gestures.window_drag((40.0, 400.0), 250, 0) == (40.0, 800.0)  # 250 px doubles the width
    assert gestures.window_drag((40.0, 400.0), 0, 125) == (240.0, 400.0)  # down raises the level
    assert gestures.window_drag((40.0, 4.0), 25, 0)[1] == pytest.approx(5.0)  # narrow windows still move
    assert gestures.zoom_drag(1.0, -100) == pytest.approx(1.01 ** 100)
    assert gestures.pan_drag((1.0, 2.0), 10, -4, 0.5) == (6.0, 0.0)
    assert gestures.wheel_scroll(-3) == 3 and gestures.wheel_scroll(0.2) == -1 and gestures.wheel_scroll(-0.2) == 1
    assert gestures.wheel_zoom(2.0, 2) == pytest.approx(2.42)
    assert gestures.button_tool("distance", "left") == "distance" and gestures.button_tool("wl", "right") == "zoom"
    assert gestures.button_tool("wl", "middle") == "pan"
    assert tool_label("wl") == "Window/level" and tool_label("ellipse") == "Ellipse ROI"


def test_drags_change_the_state_and_draw_measurements():
    st = ViewerState(_vol())
    w0 = st.window
    d = begin_drag(st, "axial", "left", 100, 100)
    d.move(st, 150, 100)
    d.move(st, 200, 100)  # from the press, not cumulative per move
    assert st.window == gestures.window_drag(w0, 100, 0)
    assert d.release(st, 200, 100) is None
    z = begin_drag(st, "coronal", "right", 0, 0)
    z.move(st, 0, -50)
    assert st.active_view == "coronal" and st.zoom["coronal"] == pytest.approx(1.01 ** 50)
    st.set_tool("distance")
    previews = []
    st.events.preview.connect(lambda measurement: previews.append(measurement))
    m = begin_drag(st, "axial", "left", 10, 10, (2.0, 2.0))
    m.move(st, 40, 50, (5.0, 6.0))
    assert st.preview is previews[-1] and st.preview.values["length_mm"] == pytest.approx(np.hypot(3 * 0.5, 4 * 0.7))
    added = m.release(st, 40, 50, (5.0, 6.0))
    assert st.preview is None and previews[-1] is None
    assert st.measurements == [added] and added.number == 1
    assert added.values["length_mm"] == pytest.approx(np.hypot(3 * 0.5, 4 * 0.7))
    click = begin_drag(st, "axial", "left", 10, 10, (2.0, 2.0))
    assert click.release(st, 11, 11, (2.1, 2.1)) is None and len(st.measurements) == 1  # a click draws nothing
    st.set_tool("box")
    box = begin_drag(st, "axial", "left", 0, 0, (1.0, 1.0))
    drawn = box.release(st, 30, 30, (6.0, 8.0))
    assert drawn.kind == "box" and drawn not in st.measurements  # for Find similar, not a measurement
    st.set_tool("crosshair")
    begin_drag(st, "axial", "left", 0, 0, (7.0, 9.0))
    assert st.slice_index("coronal") == 7 and st.slice_index("sagittal") == 9


def test_measurements_numbered_selected_jumped_to_and_removed():
    st = ViewerState(_vol())
    rec = Recorder(st)
    a = st.add_measurement(Measurement("distance", "axial", 1, (0, 0), (3, 4)))
    b = st.add_measurement(Measurement("distance", "axial", 1, (0, 0), (3, 4)))  # same points: still two
    assert (a.number, b.number) == (1, 2) and len(st.measurements) == 2 and a.label() == b.label() == "3.2 mm"
    rec.seen.clear()
    st.go_to_measurement(b)
    assert st.selected is b and st.slice_index("axial") == 1
    assert rec.names()[:1] == ["selection"]
    st.remove_measurement(b)
    assert st.selected is None and st.measurements == [a]
    assert rec.names() == ["selection", "measurements"]
    with pytest.raises(ViewStateError):
        st.select_measurement(b)
    e = st.add_measurement(Measurement("ellipse", "axial", 1, (2, 2), (8, 12)))
    assert e.number == 3 and "HU" in e.label() and "area" in e.label()
    st.set_volume(_vol(modality="MR"))
    assert st.measurements == [] and rec.seen[-2][0] == "measurements" and rec.seen[-2][1]["action"] == "cleared"
    mr = st.add_measurement(Measurement("ellipse", "axial", 1, (2, 2), (8, 12)))
    assert mr.number == 1 and mr.unit == "" and "HU" not in mr.label()


def test_transform_link_follows_the_anatomy_through_a_registration():
    a = ViewerState(_vol())
    b = ViewerState(_vol(shape=(30, 20, 30), origin=(10.0, -20.0, 0.0)))
    shift = np.eye(4)
    shift[2, 3] = -10.0  # the prior sits 10 mm lower in its scanner's frame
    link = StateLink(a, b, transform=shift)
    assert isinstance(link.links[0], TransformLink)
    np.testing.assert_allclose(b.crosshair_lps, a.crosshair_lps + [0, 0, -10.0])
    a.scroll("axial", 2)  # 4 mm up in a: 4 mm up in b, which has its own slice numbering
    np.testing.assert_allclose(b.crosshair_lps, a.crosshair_lps + [0, 0, -10.0])
    b.set_crosshair_from_image("axial", 5.0, 6.0)
    np.testing.assert_allclose(a.crosshair_lps, b.crosshair_lps + [0, 0, 10.0])
    a.set_zoom("axial", 2.5)
    assert b.zoom["axial"] == 2.5  # the camera and window links still come with it
    link.unlink()
    a.scroll("axial", 1)
    np.testing.assert_allclose(b.crosshair_lps, a.crosshair_lps + [0, 0, -10.0 - 2.0])
    with pytest.raises(ViewStateError):
        TransformLink(np.eye(3))


def test_delta_link_ignores_the_slice_events_of_a_new_volume():
    a, b = ViewerState(_vol()), ViewerState(_vol(shape=(30, 20, 30)))
    b.set_slice("axial", 20)
    StateLink(a, b)
    a.set_volume(_vol(shape=(40, 20, 30)))  # a new series in a: b stays where the reader put it
    assert b.slice_index("axial") == 20
    a.scroll("axial", 1)
    assert b.slice_index("axial") == 21


def test_study_info_from_a_stack():
    class Stack:
        patient_name = "DOE^JANE"
        patient_id = "123"
        study_description = "CT CHEST"
        study_date = "20240131"

    info = StudyInfo.from_stack(Stack())
    assert info.overlay_lines() == ["DOE^JANE 123", "CT CHEST", "2024-01-31"]
    assert StudyInfo.from_stack({"study_date": "2024"}).overlay_lines() == ["2024"]
    assert StudyInfo.from_stack(object()) == StudyInfo()
