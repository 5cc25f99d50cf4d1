"""True MPR accuracy against SimpleITK on real shared series (no display needed).

    CASEBOOK_SHARED=/work/shared .venv/bin/python benchmarks/reslice_accuracy.py

For the 13° oblique GE MP-RAGE (reference: SimpleITK's own DICOM reading) and the 18.5°
gantry-tilted GE head CT with uneven slice steps (reference: dcm2niix's tilt-corrected NIfTI),
prints how far Casebook's resliced axial/coronal/sagittal planes -- the core's numpy sampler and
the renderer's vtkImageReslice -- are from SimpleITK's linear resampling of the reference onto the
same planes, and the time to cut one plane. The same checks run in
tests/viewer/render/test_reslice_sitk.py.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "viewer" / "render"))


def main() -> int:
    import SimpleITK as sitk

    from casebook.viewer.core.dicom import load_volume, scan
    from casebook.viewer.core.viewstate import ViewerState
    from casebook.viewer.render.reslice import PlaneReslicer
    from test_reslice_sitk import _interior, _sitk_plane

    shared = Path(os.environ.get("CASEBOOK_SHARED", REPO.parent / "shared")) / "data" / "dicom"
    mr = shared / "dcm_qa_ge" / "In" / "05_3D_Ax_T1_MP_RAGE_R22"
    ct = shared / "dcm_qa_ct" / "In" / "GE"
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(mr)))
    cases = [("oblique 13° MR (SimpleITK/GDCM)", mr, reader.Execute())]
    exe = shutil.which("dcm2niix")
    if exe:
        tmp = Path(tempfile.mkdtemp(prefix="casebook-tilt-"))
        subprocess.run([exe, "-z", "n", "-f", "tilt", "-o", str(tmp), str(ct)], check=True, capture_output=True)
        sitk.ProcessObject.SetGlobalWarningDisplay(False)
        cases.append(("tilted 18.5° CT (dcm2niix Tilt_Eq)", ct, sitk.ReadImage(str(next(tmp.glob("tilt*Tilt_Eq*.nii"))))))
    for label, folder, ref in cases:
        (stack,) = scan([folder]).stacks
        st = ViewerState(load_volume(stack))
        g = st.geometry
        cutter = PlaneReslicer()
        print(f"{label}: resliced ({g.reslice_reason}), grid {g.shape}, spacing "
              f"{', '.join(f'{s:.2f}' for s in g.spacing)} mm")
        for o in ("axial", "coronal", "sagittal"):
            idx = st.slice_index(o)
            want = _sitk_plane(ref, g, o, idx)
            m = _interior(want)
            g._cache.clear()
            t = time.perf_counter()
            core = g.slice_array(o, idx)
            t_core = time.perf_counter() - t
            g._cache.clear()  # an uneven stack is displayed from the core's sampler: time it afresh
            t = time.perf_counter()
            shown = cutter.shown_array(g, o, idx)
            t_shown = time.perf_counter() - t
            span = float(np.percentile(want[m], 99) - np.percentile(want[m], 1))
            ec, es = np.abs(core[m] - want[m]), np.abs(shown[m] - want[m])
            print(f"  {o:8s} {core.shape[0]}x{core.shape[1]}: |core - sitk| median {np.median(ec):.3g}, "
                  f"p99.9 {np.percentile(ec, 99.9):.3g} ({np.percentile(ec, 99.9) / span * 100:.3g}% of range), "
                  f"r={np.corrcoef(core[m], want[m])[0, 1]:.4f}; |display - sitk| median {np.median(es):.3g}; "
                  f"cut {t_core * 1e3:.0f} ms numpy, {t_shown * 1e3:.0f} ms display "
                  f"({'vtkImageReslice' if cutter.supports(g) else 'numpy: uneven slice steps'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
