"""Registration benchmark: time and accuracy of prior-to-current rigid registration on 2 cores.

The volume is the GE 3D MPRAGE T1 of the shared data (256x256x~130, the "256³ class" of a brain
or a chest CT at registration resolution), read with Casebook's own loader. Each "prior" is the
same anatomy moved by a known rigid transform in two ways:

* ``moved``: the same voxels placed elsewhere in the patient (no interpolation: the error is the
  registration's alone);
* ``resampled``: the voxels resampled through the transform onto the current grid, edges cut off,
  plus Gaussian noise of 2 % of the intensity range (what a second scan looks like).

Casebook's registration (``services/registration.register_volumes``) is timed against the usual
SimpleITK recipe measured in the same run (centred Euler3D, Mattes MI, 1 % random sampling,
gradient descent with physical-shift scales, a 4-2-1 pyramid on the full-resolution images): the
ratio > 1 means the recipe is slower. Targets: Casebook ≤ 10 s per pair, every known transform
recovered within 1 mm (worst corner of the volume) and 1°.

    .venv/bin/python benchmarks/registration.py [--threads 2] [--json out.json]

The defaults of ``RegistrationOptions`` were chosen with ``benchmarks/registration_tuning.py`` on
other transforms and another noise seed (11; this report uses seed 7 and ``TRANSFORMS``), so the
figures printed here are not the ones the choice was made on.

``--brain-pairs`` instead registers each Brain-Tumor-Progression patient's earlier T1 to the
later one as the collection distributes them (already co-registered by its authors) and prints
the tumour-mask Dice before and after, per patient.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from casebook.viewer.core.dicom import load_volume, scan
from casebook.viewer.core.services.registration import (RegistrationOptions, corner_points, moved_volume,
                                                         register_volumes, rigid_matrix, to_sitk, transform_error,
                                                         volume_from_sitk)

REPO = Path(__file__).resolve().parents[1]
TRANSFORMS = [((0.0, 0.0, 6.0), (8.0, -5.0, 3.0)),
              ((3.0, -2.0, -8.0), (-6.0, 4.0, -7.0)),
              ((-4.0, 5.0, 3.0), (10.0, 9.0, -4.0))]


def shared_root() -> Path:
    env = os.environ.get("CASEBOOK_SHARED")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if (c / "data" / "dicom").is_dir():
            return c / "data"
    sys.exit("shared data not found: set CASEBOOK_SHARED")


def load_mprage():
    """The shared GE 3D MPRAGE (256x256x130) both registration benchmarks move and register."""
    folder = shared_root() / "dicom" / "dcm_qa_ge" / "In" / "05_3D_Ax_T1_MP_RAGE_R22"
    return load_volume(max(scan([folder]).stacks, key=lambda s: len(s.instances)))


def make_prior(current, fixed_img: sitk.Image, how: str, m: np.ndarray, rng: np.random.Generator):
    """(prior, true current -> prior matrix): ``current`` re-positioned by ``m`` ("moved"), or
    resampled through ``m`` with Gaussian noise of 2 % of its range ("resampled")."""
    if how == "moved":
        return moved_volume(current, m), m
    # prior(q) = current(T q): the current -> prior mapping is T^-1
    lo, hi = current.value_range
    img = sitk.Resample(fixed_img, fixed_img, _affine(m), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    arr = sitk.GetArrayFromImage(img) + rng.normal(0, 0.02 * (hi - lo), img.GetSize()[::-1])
    noisy = sitk.GetImageFromArray(arr.astype(np.float32))
    noisy.CopyInformation(img)
    return volume_from_sitk(noisy, modality=current.modality), np.linalg.inv(m)


def recipe(fixed: sitk.Image, moving: sitk.Image) -> np.ndarray:
    """The SimpleITK documentation's rigid recipe, as a baseline (4x4, fixed LPS -> moving LPS)."""
    init = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                             sitk.CenteredTransformInitializerFilter.GEOMETRY)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(0.01, 1)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsGradientDescent(learningRate=1.0, numberOfIterations=100, convergenceMinimumValue=1e-6,
                                      convergenceWindowSize=10)
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetShrinkFactorsPerLevel([4, 2, 1])
    reg.SetSmoothingSigmasPerLevel([2, 1, 0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetInitialTransform(init, inPlace=False)
    out = reg.Execute(fixed, moving).Downcast()
    while isinstance(out, sitk.CompositeTransform):
        out = out.GetNthTransform(out.GetNumberOfTransforms() - 1).Downcast()
    a = np.asarray(out.GetMatrix()).reshape(3, 3)
    t, c = np.asarray(out.GetTranslation()), np.asarray(out.GetCenter())
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = a, t + c - a @ c
    return m


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--cases", type=int, default=len(TRANSFORMS), help="known transforms per kind of prior")
    ap.add_argument("--brain-pairs", action="store_true", help="tumour Dice of the as-distributed MR pairs")
    args = ap.parse_args(argv)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    if args.brain_pairs:
        return brain_pairs(args.threads)
    current = load_mprage()
    print(f"volume: {current.shape[2]}x{current.shape[1]}x{current.shape[0]} voxels, spacing "
          f"{current.spacing[2]:.2f}x{current.spacing[1]:.2f}x{current.spacing[0]:.2f} mm, {args.threads} threads, "
          f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs (times grow with other work)")
    centre = current.index_to_lps(np.array([(n - 1) / 2.0 for n in current.shape[::-1]]))
    corners = corner_points(current)
    fixed_img = to_sitk(current)
    rng = np.random.default_rng(7)
    rows = []
    for how in ("moved", "resampled"):
        for rot, tr in TRANSFORMS[:args.cases]:
            prior, truth = make_prior(current, fixed_img, how, rigid_matrix(rot, tr, centre), rng)
            t0, c0 = time.perf_counter(), time.process_time()
            r = register_volumes(current, prior, RegistrationOptions(threads=args.threads))
            t_cb, cpu_cb = time.perf_counter() - t0, time.process_time() - c0
            e_mm, e_deg = transform_error(r.matrix, truth, corners)
            moving_img = to_sitk(prior)
            t0, c0 = time.perf_counter(), time.process_time()
            mb = recipe(fixed_img, moving_img)
            t_base, cpu_base = time.perf_counter() - t0, time.process_time() - c0
            b_mm, b_deg = transform_error(mb, truth, corners)
            rows.append(dict(prior=how, rotation_deg=rot, translation_mm=tr, casebook_s=t_cb, casebook_cpu_s=cpu_cb, recipe_cpu_s=cpu_base, error_mm=e_mm,
                             error_deg=e_deg, recipe_s=t_base, recipe_error_mm=b_mm, recipe_error_deg=b_deg,
                             nmi=r.quality, metric=r.metric))
            ok = "ok" if (t_cb <= 10 and e_mm <= 1 and e_deg <= 1) else "MISSED"
            print(f"{how:9s} rot {rot} tr {tr}: casebook {t_cb:5.1f} s ({cpu_cb:5.1f} CPU s), {e_mm:.2f} mm / "
                  f"{e_deg:.2f}° | recipe {t_base:5.1f} s ({cpu_base:5.1f} CPU s), {b_mm:.2f} mm / {b_deg:.2f}° | "
                  f"ratio {t_base / t_cb:.2f} [{ok}]")
    med = statistics.median(r["casebook_s"] for r in rows)
    worst_mm = max(r["error_mm"] for r in rows)
    worst_deg = max(r["error_deg"] for r in rows)
    ratio = statistics.median(r["recipe_s"] / r["casebook_s"] for r in rows)
    passed = all(r["casebook_s"] <= 10 and r["error_mm"] <= 1 and r["error_deg"] <= 1 for r in rows)
    cpu = statistics.median(r["casebook_cpu_s"] for r in rows)
    print(f"median CPU time {cpu:.1f} s per pair: on {args.threads} idle cores about {cpu / args.threads:.1f} s")
    print(f"load average now {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"median {med:.1f} s per pair (target <= 10 s), worst error {worst_mm:.2f} mm / {worst_deg:.2f}° "
          f"(target 1 mm / 1°), recipe/casebook time ratio {ratio:.2f}: {'PASS' if passed else 'FAIL'}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "median_s": med, "worst_mm": worst_mm, "worst_deg": worst_deg,
                                         "ratio": ratio, "passed": passed}, indent=1), encoding="utf-8")
    return 0 if passed else 1


def brain_pairs(threads: int) -> int:
    """Per patient: tumour-mask Dice of the later scan's mask with the earlier scan's mask, as the
    files lie and after registering the earlier T1 to the later one."""
    root = shared_root() / "temporal" / "brain_tumor_progression"
    better = 0
    patients = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    for p in patients:
        read = lambda n: sitk.ReadImage(str(root / p / f"{n}.nii.gz"), sitk.sitkFloat32)  # noqa: E731
        post, pre, post_m, pre_m = read("Post_Scan_T1"), read("Pre_Scan_T1"), read("Post_Mask"), read("Pre_Mask")
        r = register_volumes(volume_from_sitk(post, modality="MR"), volume_from_sitk(pre, modality="MR"),
                             RegistrationOptions(threads=threads))
        warped = sitk.Resample(pre_m, post_m, _affine(r.matrix), sitk.sitkNearestNeighbor, 0.0)

        def dice(a: sitk.Image, b: sitk.Image) -> float:
            x, y = sitk.GetArrayFromImage(a) > 0.5, sitk.GetArrayFromImage(b) > 0.5
            return 2.0 * float((x & y).sum()) / max(float(x.sum() + y.sum()), 1.0)

        d0, d1 = dice(pre_m, post_m), dice(warped, post_m)
        better += d1 > d0
        print(f"patient {p}: Dice {d0:.3f} as distributed, {d1:.3f} registered ({d1 - d0:+.3f}); {r.summary()}")
    print(f"better after registration for {better} of {len(patients)} patients")
    return 0


def _affine(m: np.ndarray) -> sitk.AffineTransform:
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(float(x) for x in m[:3, :3].ravel()))
    tx.SetTranslation(tuple(float(x) for x in m[:3, 3]))
    return tx


if __name__ == "__main__":
    raise SystemExit(main())
