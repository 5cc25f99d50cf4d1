"""Headless behaviour behind the reading window (issue 16): position/physical-size links, the
layout a single image opens in, the Find-similar box that stays, sizes without pixel spacing."""
from __future__ import annotations

import numpy as np
import pytest

from casebook.viewer.core.dicom.volume import GeometryReport, Volume
from casebook.viewer.core.viewstate import (Drag, Measurement, PhysicalCameraLink, PositionLink, StateLink, ViewerState,
                                            analogue_links, begin_drag, is_single_image, set_strict)


@pytest.fixture(autouse=True)
def _strict():
    set_strict(True)
    yield
    set_strict(None)


def _vol(shape=(10, 20, 30), spacing=(2.0, 0.5, 0.7), modality="CT", origin=(10.0, -20.0, 30.0),
         geometry: GeometryReport | None = None) -> Volume:
    vox = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    return Volume(vox, spacing, origin, np.eye(3), modality=modality, geometry=geometry or GeometryReport())


def _z(st: ViewerState) -> float:
    return float(st.crosshair_lps[2])


def test_position_link_moves_the_same_millimetres_not_the_same_slice_count():
    thin = ViewerState(_vol(shape=(100, 20, 30), spacing=(1.0, 0.5, 0.7)))
    thick = ViewerState(_vol(shape=(30, 20, 30), spacing=(5.0, 0.5, 0.7), origin=(0.0, 0.0, -200.0)))
    thin.set_slice("axial", 40)
    thick.set_slice("axial", 12)
    link = StateLink(thin, thick, links=[PositionLink()])
    z_thin, z_thick = _z(thin), _z(thick)
    for _ in range(5):  # five wheel clicks in the 5 mm series: 25 mm
        thick.scroll("axial", 1)
    assert _z(thick) - z_thick == pytest.approx(25.0)
    assert _z(thin) - z_thin == pytest.approx(25.0)  # 25 slices of the 1 mm series, not 5
    assert thin.slice_index("axial") == 65
    for _ in range(3):  # 3 mm in the thin series: the thick one goes to the nearest slice (+0 or +5 mm)
        thin.scroll("axial", 1)
    assert abs((_z(thick) - z_thick) - 28.0) <= 2.5
    link.unlink()
    thin.scroll("axial", 10)
    assert thick.slice_index("axial") == 12 + 5 + round(3 / 5)


def test_position_link_realigns_on_a_new_volume_and_clamps():
    a = ViewerState(_vol(shape=(40, 20, 30), spacing=(1.0, 0.5, 0.7)))
    b = ViewerState(_vol(shape=(10, 20, 30), spacing=(3.0, 0.5, 0.7)))
    b.set_slice("axial", 2)
    StateLink(a, b, links=[PositionLink()])
    a.set_volume(_vol(shape=(60, 20, 30), spacing=(1.0, 0.5, 0.7)))  # a new series: b stays put
    assert b.slice_index("axial") == 2
    a.scroll("axial", 6)
    assert b.slice_index("axial") == 4
    a.set_slice("axial", 59)
    assert b.slice_index("axial") == 9  # clamped at the last slice


def test_physical_camera_link_matches_mm_per_pixel_not_the_zoom_factor():
    big = ViewerState(_vol(shape=(10, 400, 400), spacing=(2.0, 1.0, 1.0)))  # 40 cm field of view
    small = ViewerState(_vol(shape=(10, 200, 200), spacing=(2.0, 1.0, 1.0)))  # 20 cm
    link = PhysicalCameraLink(lambda st, o: (500.0, 500.0))
    StateLink(big, small, links=[link])
    assert small.zoom["axial"] == pytest.approx(0.5)  # linked at once: 20 cm shown at the 40 cm scale
    big.set_zoom("axial", 3.0)
    assert small.zoom["axial"] == pytest.approx(1.5)
    small.set_zoom("axial", 2.0)
    assert big.zoom["axial"] == pytest.approx(4.0)
    big.set_pan("axial", (12.0, -4.0))
    assert small.pan["axial"] == (12.0, -4.0)  # pan is in mm already

    def mm_per_px(st, vh=500.0):
        return 2.0 * st.geometry.fit_half_height_mm("axial", 500.0, vh) / st.zoom["axial"] / vh

    assert mm_per_px(big) == pytest.approx(mm_per_px(small))
    # views of different heights: still the same mm per pixel
    tall = ViewerState(_vol(shape=(10, 200, 200), spacing=(2.0, 1.0, 1.0)))
    sizes = {id(big): (500.0, 500.0), id(tall): (500.0, 300.0)}
    StateLink(big, tall, links=[PhysicalCameraLink(lambda st, o: sizes[id(st)])])
    big.set_zoom("axial", 2.0)
    assert 2.0 * big.geometry.fit_half_height_mm("axial", 500, 500) / big.zoom["axial"] / 500 == pytest.approx(
        2.0 * tall.geometry.fit_half_height_mm("axial", 500, 300) / tall.zoom["axial"] / 300)
    assert [type(x).__name__ for x in analogue_links()] == ["PositionLink", "PhysicalCameraLink", "WindowLink"]


def test_single_images_open_in_one_view_and_the_reader_layout_comes_back():
    st = ViewerState(_vol())
    assert st.layout == "2x2"
    st.set_layout("1x2")
    cr = _vol(shape=(1, 200, 180), spacing=(1.0, 0.2, 0.2), modality="CR")
    assert is_single_image(cr) and is_single_image(_vol(shape=(30, 20, 30), modality="US"))
    assert not is_single_image(_vol())
    st.set_volume(cr)
    assert st.layout == "1x1" and st.active_view == "axial"
    # a one-slice coronal image opens on the coronal view (its own plane)
    cor = Volume(np.zeros((1, 50, 60), np.float32), (1.0, 0.5, 0.5), (0.0, 0.0, 0.0),
                 np.column_stack([[1, 0, 0], [0, 0, -1], [0, 1, 0]]).astype(float), modality="DX")
    st.set_volume(cor)
    assert st.layout == "1x1" and st.active_view == "coronal"
    st.set_volume(_vol())
    assert st.layout == "1x2"  # the layout the reader had before the single images


def test_search_box_stays_until_the_next_box_is_drawn():
    st = ViewerState(_vol(shape=(10, 200, 200)))
    st.set_tool("box")
    seen = []
    st.events.search_box.connect(lambda measurement: seen.append(measurement))
    d = begin_drag(st, "axial", "left", 10, 10, (10.0, 10.0))
    d.move(st, 60, 60, (60.0, 60.0))
    box = d.release(st, 60, 60, (60.0, 60.0))
    assert box is not None and st.search_box is box and st.preview is None and seen == [box]
    assert box not in st.measurements  # a query, not a measurement
    click = begin_drag(st, "axial", "left", 5, 5, (5.0, 5.0))
    assert click.release(st, 5, 5, (5.0, 5.0)) is None and st.search_box is box  # a click keeps it
    d2: Drag = begin_drag(st, "axial", "left", 20, 20, (20.0, 20.0))
    d2.move(st, 40, 40, (40.0, 40.0))
    assert st.search_box is None  # drawing the next one
    box2 = d2.release(st, 40, 40, (40.0, 40.0))
    assert st.search_box is box2 and seen == [box, None, box2]
    st.set_volume(_vol(shape=(12, 200, 200)))
    assert st.search_box is None and seen[-1] is None


def test_without_pixel_spacing_sizes_are_in_pixels():
    rep = GeometryReport(pixel_spacing_known=False, patient_geometry_known=False)
    st = ViewerState(_vol(shape=(1, 100, 100), spacing=(1.0, 1.0, 1.0), modality="US", geometry=rep))
    d = st.add_measurement(Measurement("distance", "axial", 0, (10.0, 10.0), (10.0, 40.0)))
    assert d.label() == "30.0 px"
    e = st.add_measurement(Measurement("ellipse", "axial", 0, (10.0, 10.0), (30.0, 30.0)))
    assert "px²" in e.label() and "mm" not in e.label()
    st2 = ViewerState(_vol())
    assert st2.add_measurement(Measurement("distance", "axial", 0, (0.0, 0.0), (0.0, 10.0))).label() == "7.0 mm"
