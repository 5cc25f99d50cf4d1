"""True MPR in the headless model: real tilted, oblique and straight shared series.

The geometry is checked against the DICOM headers read here with pydicom (not through the
loader): every stored pixel of a gantry-tilted CT sits where its ImagePositionPatient and
PixelSpacing say, and the crosshair is a patient point that survives turning the planes.
"""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from casebook.viewer.core.dicom import load_volume, scan
from casebook.viewer.core.viewstate import Measurement, ViewerState, ViewStateError
from casebook.viewer.core.viewstate.geometry import MprGeometry, rotation_about


def _load(folder):
    stacks = [s for s in scan([folder]).stacks if len(s.instances) > 1]
    return load_volume(max(stacks, key=lambda s: len(s.instances)))


@pytest.fixture(scope="module")
def tilted_ct(request):
    from tests.conftest import require_shared

    return _load(require_shared("dicom", "dcm_qa_ct", "In", "GE"))


@pytest.fixture(scope="module")
def straight_ct(request):
    from tests.conftest import require_shared

    return _load(require_shared("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010"))


def test_tilted_ct_pixels_sit_where_their_headers_say(tilted_ct):
    vol = tilted_ct
    g = MprGeometry(vol)
    assert g.is_resliced and g.reslice_reason == "gantry tilt 18.5°"
    s = g.sampler
    rng = np.random.default_rng(7)
    for k, path in enumerate(vol.source_files):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ipp = np.array([float(x) for x in ds.ImagePositionPatient])
        iop = np.array([float(x) for x in ds.ImageOrientationPatient])
        dr, dc = (float(x) for x in ds.PixelSpacing)  # row spacing, column spacing
        r = rng.integers(0, int(ds.Rows), 20)
        c = rng.integers(0, int(ds.Columns), 20)
        pts = ipp + c[:, None] * dc * iop[:3] + r[:, None] * dr * iop[3:]
        ijk = s.lps_to_ijk(pts)
        np.testing.assert_allclose(ijk, np.column_stack([c, r, np.full(20, k)]), atol=1e-6)
        np.testing.assert_allclose(s.ijk_to_lps(ijk), pts, atol=1e-6)
        # sampling on a voxel centre returns the stored voxel (to float32 rounding of the weights)
        np.testing.assert_allclose(s.sample(pts), vol.voxels[k, r, c].astype(np.float32), atol=0.05)


def test_tilted_ct_axial_is_a_true_axial_plane(tilted_ct):
    st = ViewerState(tilted_ct)
    g = st.geometry
    o, rs, cs, rows, cols = g.plane_frame("axial", st.slice_index("axial"))
    # every pixel of the shown axial image has the same S coordinate (a tilted slice would not)
    assert abs(float(rs[2])) < 1e-12 and abs(float(cs[2])) < 1e-12
    assert g.markers("axial") == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
    # a stored slice is found in the axial view nearest its centre
    k = tilted_ct.shape[0] // 2
    view, idx = g.k_to_view(k)
    centre = g.sampler.ijk_to_lps(np.array([255.5, 255.5, k]))
    assert view == "axial"
    assert abs(float(g.canon_to_lps(g.image_to_canon("axial", idx, 0, 0))[2] - centre[2])) <= g.spacing[0] / 2 + 1e-9


def test_straight_series_is_not_resampled(straight_ct):
    g = MprGeometry(straight_ct)
    assert not g.is_resliced and g.reslice_reason is None
    img = g.slice_array("axial", 3)
    assert np.shares_memory(img, straight_ct.voxels)  # a view: the stored pixels, nothing interpolated


def test_crosshair_is_a_world_point_through_rotation(straight_ct):
    st = ViewerState(straight_ct)
    planes = []
    st.events.plane.connect(lambda rotation: planes.append(rotation))
    st.set_crosshair_canon(st.crosshair_canon + np.array([2.0, 30.0, -40.0]))
    p = st.crosshair_lps
    assert st.rotate_plane("axial", 25.0)
    assert len(planes) == 1 and st.plane_angle_deg == pytest.approx(25.0)
    np.testing.assert_allclose(st.crosshair_lps, p, atol=1e-9)  # the patient point did not move
    g = st.geometry
    assert g.is_resliced and g.reslice_reason == "oblique planes"
    # the axial plane keeps its normal; coronal and sagittal turned 25° about S
    np.testing.assert_allclose(g.plane_normal("axial"), [0.0, 0.0, 1.0], atol=1e-12)
    assert float(g.plane_normal("coronal") @ [0.0, 1.0, 0.0]) == pytest.approx(np.cos(np.radians(25.0)))
    assert len(g.markers("coronal")["left"]) == 2  # an oblique coronal: combined letters
    # scrolling the turned coronal view moves the crosshair along its own normal, one step
    before = st.crosshair_lps
    st.scroll("coronal", 1)
    step = st.crosshair_lps - before
    n = g.plane_normal("coronal")
    assert float(np.linalg.norm(np.cross(step, n))) < 1.0 and float(step @ n) > 0
    # the same rotation again changes nothing and emits nothing
    assert not st.set_plane_rotation(st.plane_rotation)
    assert len(planes) == 1
    assert st.reset_plane_rotation()
    assert not st.geometry.is_resliced and st.plane_angle_deg == 0.0 and len(planes) == 2


def test_rotation_is_refused_where_there_are_no_planes(straight_ct):
    st = ViewerState(straight_ct)
    with pytest.raises(ViewStateError, match="rotation"):
        st.set_plane_rotation(np.diag([1.0, 1.0, -1.0]))  # a mirror, not a rotation
    one = load_volume(next(s for s in scan([straight_ct.source_files[0]]).stacks))
    single = ViewerState(one)
    assert not single.can_rotate_planes and not single.rotate_plane("axial", 10.0)
    with pytest.raises(ViewStateError, match="oblique planes"):
        single.set_plane_rotation(rotation_about([0, 0, 1], 10.0))


def test_measurements_stay_on_the_planes_they_were_drawn_on(straight_ct):
    st = ViewerState(straight_ct)
    st.rotate_plane("axial", 30.0)
    m = st.add_measurement(Measurement("ellipse", "coronal", st.slice_index("coronal"), (10.0, 200.0), (14.0, 240.0)))
    assert m.values["n"] > 0 and st.measurement_on_planes(m)
    st.reset_plane_rotation()
    assert not st.measurement_on_planes(m)  # not drawn on the true coronal plane it would not fit
    st.go_to_measurement(m)  # the list's jump turns the planes back to where it was drawn
    assert st.plane_angle_deg == pytest.approx(30.0) and st.measurement_on_planes(m)


def test_refined_volume_keeps_the_rotation(straight_ct):
    st = ViewerState(straight_ct)
    st.rotate_plane("sagittal", 15.0)
    p = st.crosshair_lps
    st.set_volume(straight_ct, keep_view=True)  # the progressive load delivering the full series
    assert st.plane_angle_deg == pytest.approx(15.0)
    np.testing.assert_allclose(st.crosshair_lps, p, atol=1e-9)
    st.set_volume(straight_ct)  # a new series opens on true planes
    assert st.plane_angle_deg == 0.0


def test_box_on_a_resliced_plane_is_the_stored_slice_through_its_centre(tilted_ct):
    """Find similar's box on a true axial plane of the tilted CT: one stored slice deep, the one
    the box's centre lies in, cut to the box's footprint."""
    st = ViewerState(tilted_ct)
    g = st.geometry
    idx = st.slice_index("axial")
    p0, p1 = (150.0, 160.0), (330.0, 350.0)
    k0, k1, j0, j1, i0, i1 = g.image_box_to_ijk_box("axial", idx, p0, p1)
    centre = g.sampler.lps_to_ijk(g.canon_to_lps(g.image_to_canon("axial", idx, 240.0, 255.0)))
    assert (k0, k1) == (round(float(centre[2])), round(float(centre[2])) + 1)
    assert i0 <= centre[0] <= i1 and j0 <= centre[1] <= j1
    assert 150 < i1 - i0 < 230 and 150 < j1 - j0 < 230  # ~190 columns, ~180 rows of 0.49 mm


def test_missing_slice_keeps_acquired_slices_until_the_planes_turn(straight_ct, tmp_path):
    """A straight CT with one file missing: its axial view still shows the acquired slices; once
    the planes turn, the gap is sampled where the slices really are (piecewise map, no affine)."""
    import shutil

    files = sorted(straight_ct.source_files, key=lambda p: float(pydicom.dcmread(p, stop_before_pixels=True)
                                                                   .ImagePositionPatient[2]))
    gone = files[len(files) // 2]
    for f in files:
        if f != gone:
            shutil.copy(f, tmp_path / f.name)
    vol = _load(tmp_path)
    assert not vol.geometry.uniform_spacing and vol.geometry.missing_slices == 1
    st = ViewerState(vol)
    assert not st.geometry.is_resliced
    assert np.shares_memory(st.geometry.slice_array("axial", 0), vol.voxels)
    st.rotate_plane("axial", 10.0)
    s = st.geometry.sampler
    assert s is not None and s.lps_to_ijk_affine is None
    after = files[len(files) // 2 + 1]
    ipp = np.array([float(x) for x in pydicom.dcmread(after, stop_before_pixels=True).ImagePositionPatient])
    k = [p.name for p in vol.source_files].index(after.name)
    np.testing.assert_allclose(s.lps_to_ijk(ipp), [0.0, 0.0, k], atol=1e-6)


def test_transform_link_maps_the_world_point_on_resliced_and_turned_planes(tilted_ct):
    """The crosshair is a patient point: a registration link maps it through its matrix exactly,
    whatever grid each side shows (the tilted CT resliced beside itself moved by a known
    transform and shown with turned planes)."""
    from casebook.viewer.core.viewstate import StateLink

    a, b = ViewerState(tilted_ct), ViewerState(tilted_ct)
    b.rotate_plane("coronal", 12.0)
    m = np.eye(4)
    m[:3, :3] = rotation_about([0.0, 0.0, 1.0], 3.0)
    m[:3, 3] = (1.25, -0.5, 0.75)
    link = StateLink(a, b, transform=m, zoom=False, window=False)
    a.set_crosshair_canon(a.crosshair_canon + np.array([0.3, 7.6, -11.2]))
    np.testing.assert_allclose(b.crosshair_lps, m[:3, :3] @ a.crosshair_lps + m[:3, 3], atol=1e-9)  # not snapped
    b.scroll("axial", 2)  # and back: a follows b's point through the inverse
    inv = np.linalg.inv(m)
    np.testing.assert_allclose(a.crosshair_lps, inv[:3, :3] @ b.crosshair_lps + inv[:3, 3], atol=1e-9)
    link.unlink()
