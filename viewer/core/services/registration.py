"""Registering a prior series to the current one with SimpleITK, in patient (LPS) millimetres.

Why these choices: Mattes mutual information compares intensity *distributions*, so CT/CT, MR T1
against T2 and contrast against non-contrast all register with one metric; a centred Euler3D
start (image centres on top of each other) brings two studies from different frames of reference
within the optimiser's reach; a three-level pyramid with random sampling keeps a 256³ pair to a
few seconds on two cores. The result is a 4x4 matrix from the current study's LPS to the prior's,
which is what the linked views and the difference view use; an optional B-spline on top of the
rigid result is only for the subtraction view (measurements stay rigid, the way readers expect).

Failures are not silent: too little overlap, a single-slice or colour series, or an optimiser
that ended far from anything plausible raise :class:`RegistrationError` naming the series and
why, and the caller shows the pair side by side unlinked.
"""
from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from casebook.common.errors import Cancelled, CasebookError
from casebook.common.progress import ProgressCallback, SupportsCancel, check_cancel, no_progress

from ..dicom.volume import Volume

log = logging.getLogger(__name__)

KINDS = ("rigid", "affine")
MIN_OVERLAP = 0.25  # fraction of the current volume's foreground the prior must cover
MIN_SLICES = 3  # fewer than this is not a volume to register in 3D


class RegistrationError(CasebookError):
    """Two series cannot be registered (what and why in the message); show them unlinked."""


def software_version() -> str:
    """What made a transform, stored with it: a new SimpleITK may give another answer."""
    import SimpleITK as sitk

    try:
        from importlib.metadata import version

        cb = version("casebook")
    except Exception:  # noqa: BLE001 - running from a source tree without metadata
        cb = "dev"
    return f"SimpleITK {sitk.Version.VersionString()}; casebook {cb}"


@dataclass
class RegistrationOptions:
    """How to register; the defaults are the ones the benchmark and the tests hold to."""

    kind: str = "rigid"  # rigid | affine
    deformable: bool = False  # add a B-spline for the difference view
    levels: tuple[int, ...] = (4, 2, 1)  # shrink factors of the pyramid
    # Gaussian sigma (mm) per level, both images. The finest level is smoothed too (1.5 mm, not 0): with
    # tens of thousands of random samples the Mattes estimate of a noisy image has its minimum
    # wherever that sample set puts it (unsmoothed, the same noisy pair ended 0.4-2.1 mm off over
    # three sampling seeds while the dense metric's minimum sat on the truth); smoothing lowers the
    # noise the samples see and took it to 0.11-0.41 mm (benchmarks/registration_tuning.py; README, Priors)
    smoothing_mm: tuple[float, ...] = (3.0, 1.5, 1.5)
    # voxels sampled at random per iteration and level: MI needs a few tens of thousands, however
    # large the volume (a fixed count, not a fraction, keeps a 512² CT as fast as a 256² MR)
    samples: tuple[int, ...] = (20000, 40000, 80000)  # per level, coarse to fine
    bins: int = 32
    iterations: int = 200
    # voxels finer than this are averaged in whole bins first (a 0.5 mm CT becomes 1.5 mm, nine
    # times fewer voxels per slice); at 2 mm a resampled, noisy 1 mm MR ended 1.7 mm off, at 1.5 mm 0.6 mm
    max_resolution_mm: float = 1.5
    # each image's intensities clipped to these percentiles first, e.g. (0.5, 99.5): the bins then
    # span the anatomy, not a few bright outliers. Off by default: on the benchmark's MR (99 % of
    # voxels in the first of 32 bins) it took re-positioned copies from 0.4 to 0.04 mm but noisy
    # resampled ones from 0.8 to 1.1-1.4 mm (benchmarks/registration_tuning.py; README, Priors)
    clip_percentiles: tuple[float, float] | None = None
    min_step: float = 1e-3  # regular-step gradient descent stops when its step (mm-scaled) falls below this
    bspline_iterations: int = 50  # L-BFGS-B iterations per level of the optional B-spline
    threads: int | None = None  # None: SimpleITK's default (all cores)
    seed: int = 20261201

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RegistrationError(f"registration kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if not (len(self.levels) == len(self.smoothing_mm) == len(self.samples)):
            raise RegistrationError("registration levels, smoothing_mm and samples must have the same length")


@dataclass
class RegistrationResult:
    """A prior registered to a current series. ``matrix``: current LPS mm -> prior LPS mm."""

    matrix: np.ndarray
    kind: str
    metric: float  # final Mattes MI (negative; lower is better)
    metric_before: float  # at the centred start, for comparison
    quality: float  # normalised mutual information after (1 = unrelated, 2 = identical)
    overlap: float  # fraction of the current foreground inside the prior after registration
    iterations: int
    seconds: float
    software: str
    stop: str = ""
    deformable: str = ""  # ITK text of the B-spline (fixed -> moving, after ``matrix``), or ""
    warnings: list[str] = field(default_factory=list)

    @property
    def rotation_deg(self) -> float:
        """The rotation angle of the rigid part (degrees), for the summary line."""
        r = self.matrix[:3, :3]
        u, _s, vt = np.linalg.svd(r)
        c = (np.trace(u @ vt) - 1.0) / 2.0
        return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))

    @property
    def translation_mm(self) -> np.ndarray:
        return self.matrix[:3, 3].copy()

    def summary(self) -> str:
        t = self.translation_mm
        return (f"{self.kind}: MI {self.metric:.4f} (start {self.metric_before:.4f}), NMI {self.quality:.3f}, "
                f"overlap {self.overlap:.0%}, rotation {self.rotation_deg:.1f}°, translation "
                f"({t[0]:.1f}, {t[1]:.1f}, {t[2]:.1f}) mm, {self.iterations} iterations, {self.seconds:.1f} s")


# ------------------------------------------------------------------------------------------------
# Volume <-> SimpleITK


def _describe(v: Volume, role: str) -> str:
    return f"{role} series ({v.modality or '?'} {v.description or 'no description'}, {v.shape[0]} slices)"


def check_registrable(v: Volume, role: str) -> None:
    """Refuse what cannot be registered in 3D, with a message the reader understands."""
    if v.is_color:
        raise RegistrationError(f"{_describe(v, role)} is a colour image: registration needs greyscale volumes")
    if min(v.shape) < MIN_SLICES:
        raise RegistrationError(f"{_describe(v, role)} is a single slice (or too thin): it cannot be registered "
                                "in 3D; shown side by side, not linked")
    if not v.geometry.patient_geometry_known:
        raise RegistrationError(f"{_describe(v, role)} has no position in the patient (no Image Position/"
                                "Orientation): it cannot be registered")


def to_sitk(v: Volume) -> Any:
    """The volume as a float32 SimpleITK image in LPS mm (the voxels are shared, not copied twice)."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(v.voxels, dtype=np.float32))
    sk, sj, si = v.spacing
    img.SetSpacing((float(si), float(sj), float(sk)))
    img.SetOrigin(tuple(float(x) for x in v.origin))
    d = np.asarray(v.direction, dtype=np.float64)
    # ITK wants unit columns; a gantry-tilted stack keeps its (non-orthogonal) slice direction
    d = d / np.linalg.norm(d, axis=0, keepdims=True)
    img.SetDirection(tuple(float(x) for x in d.ravel()))
    return img


def volume_from_sitk(img: Any, *, modality: str = "", description: str = "") -> Volume:
    """A SimpleITK image (e.g. a NIfTI read by SimpleITK, which converts it to LPS) as a Volume."""
    import SimpleITK as sitk

    vox = sitk.GetArrayFromImage(img)
    if vox.ndim != 3:
        raise RegistrationError(f"expected a 3-D greyscale image, got {vox.ndim} dimensions")
    si, sj, sk = img.GetSpacing()
    return Volume(voxels=vox.astype(np.float32, copy=False), spacing=(float(sk), float(sj), float(si)),
                  origin=tuple(float(x) for x in img.GetOrigin()),
                  direction=np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3),
                  modality=modality, description=description)


def _linear_matrix(tx: Any) -> np.ndarray:
    """The 4x4 of a SimpleITK matrix-offset transform (Euler3D, Affine)."""
    a = np.asarray(tx.GetMatrix(), dtype=np.float64).reshape(3, 3)
    t = np.asarray(tx.GetTranslation(), dtype=np.float64)
    c = np.asarray(tx.GetCenter(), dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = a
    m[:3, 3] = t + c - a @ c
    return m


def affine_from_matrix(m: np.ndarray) -> Any:
    """A SimpleITK AffineTransform for a 4x4 matrix (to resample with a stored registration)."""
    import SimpleITK as sitk

    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(float(x) for x in np.asarray(m)[:3, :3].ravel()))
    tx.SetTranslation(tuple(float(x) for x in np.asarray(m)[:3, 3]))
    return tx


def _foreground_mask(img: Any) -> Any:
    """Body, not air: Otsu on the image (so MI is not spent on the empty field around the patient)."""
    import SimpleITK as sitk

    try:
        mask = sitk.OtsuThreshold(img, 0, 1)
        if sitk.GetArrayViewFromImage(mask).mean() < 0.02:
            return None
        return mask
    except RuntimeError:
        return None


def _resolution_image(img: Any, max_mm: float) -> Any:
    """Average voxels in whole bins up to ``max_mm`` per voxel where finer (never finer than given):
    a bin average is the cheapest anti-aliased reduction."""
    import SimpleITK as sitk

    sp = np.asarray(img.GetSpacing())
    size = np.asarray(img.GetSize())
    f = np.maximum(np.floor(max_mm / sp + 1e-6), 1).astype(int)
    f = np.minimum(f, np.maximum(size // 12, 1))  # a thin slab keeps its slices
    if np.all(f == 1):
        return img
    return sitk.BinShrink(img, [int(x) for x in f])


def _clip_intensities(img: Any, percentiles: tuple[float, float] | None) -> Any:
    """``img`` with its intensities clamped to the given percentiles (estimated on about a million
    voxels: the exact percentile does not matter, the range of the histogram does)."""
    import SimpleITK as sitk

    if percentiles is None:
        return img
    arr = sitk.GetArrayViewFromImage(img).ravel()
    step = max(1, arr.size // 1_000_000)
    lo, hi = (float(x) for x in np.percentile(arr[::step], percentiles))
    if not hi > lo:
        return img
    return sitk.Clamp(sitk.Cast(img, sitk.sitkFloat32), sitk.sitkFloat32, lo, hi)


def _intensities(img: Any, opt: "RegistrationOptions") -> Any:
    return _clip_intensities(img, opt.clip_percentiles)


def _level_image(img: Any, factor: int, sigma_mm: float) -> Any:
    """One pyramid level: smoothed by ``sigma_mm`` and ``factor`` times coarser per axis, but never
    below 12 voxels along an axis (a 24-slice slab keeps its slices)."""
    import SimpleITK as sitk

    smoothed = sitk.SmoothingRecursiveGaussian(img, float(sigma_mm)) if sigma_mm > 0 else img
    if factor <= 1:
        return smoothed
    size = np.asarray(img.GetSize())
    f = np.maximum(np.minimum(float(factor), size / 12.0), 1.0)
    if np.all(f < 1.25):
        return smoothed
    sp = np.asarray(img.GetSpacing())
    new_sp = sp * f
    new_size = [max(int(round(n / k)), 1) for n, k in zip(size, f)]
    origin = np.asarray(img.GetOrigin()) + np.asarray(img.GetDirection()).reshape(3, 3) @ ((new_sp - sp) / 2.0)
    return sitk.Resample(smoothed, new_size, sitk.Transform(), sitk.sitkLinear, tuple(origin), tuple(new_sp),
                         img.GetDirection(), 0.0, sitk.sitkFloat32)


def _method(opt: "RegistrationOptions", mask: Any, learning_rate: float, voxels: int, samples: int) -> Any:
    """One level's Mattes MI registration with random sampling (the pyramid is built outside)."""
    import SimpleITK as sitk

    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=opt.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(min(1.0, samples / max(voxels, 1)), opt.seed)
    # the gradient at the sampled points only, not a gradient image of the whole volume per level
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetShrinkFactorsPerLevel([1])
    reg.SetSmoothingSigmasPerLevel([0.0])
    if mask is not None:
        reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(learningRate=learning_rate, minStep=opt.min_step,
                                                 numberOfIterations=opt.iterations,
                                                 relaxationFactor=0.7, gradientMagnitudeTolerance=1e-7)
    reg.SetOptimizerScalesFromPhysicalShift()
    return reg


def normalised_mi(a: np.ndarray, b: np.ndarray, bins: int = 48) -> float:
    """Studholme's normalised mutual information (H(A)+H(B))/H(A,B): 1 unrelated, 2 identical."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 16:
        return 1.0
    h, _, _ = np.histogram2d(a, b, bins=bins)
    p = h / max(h.sum(), 1.0)
    px, py = p.sum(1), p.sum(0)

    def ent(q: np.ndarray) -> float:
        q = q[q > 0]
        return float(-(q * np.log(q)).sum())

    hab = ent(p.ravel())
    return (ent(px) + ent(py)) / hab if hab > 0 else 2.0


def _evaluate(fixed: Any, moving: Any, tx: Any, mask: Any) -> tuple[float, float]:
    """NMI over the current foreground, and the fraction of it the prior covers, after ``tx``."""
    import SimpleITK as sitk

    small_f = _resolution_image(fixed, 3.0)
    small_m = _resolution_image(moving, 3.0)  # both averaged alike: NMI compares anatomy, not blur
    inside = sitk.Resample(sitk.Cast(small_m * 0 + 1, sitk.sitkUInt8), small_f, tx, sitk.sitkNearestNeighbor, 0)
    warped = sitk.Resample(small_m, small_f, tx, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    f = sitk.GetArrayViewFromImage(small_f)
    w = sitk.GetArrayViewFromImage(warped)
    ins = sitk.GetArrayViewFromImage(inside).astype(bool)
    if mask is not None:
        fg = sitk.GetArrayViewFromImage(sitk.Resample(mask, small_f, sitk.Transform(), sitk.sitkNearestNeighbor,
                                                      0)).astype(bool)
    else:
        fg = np.ones(f.shape, dtype=bool)
    n = int(fg.sum())
    overlap = float((fg & ins).sum()) / n if n else 0.0
    both = fg & ins
    return normalised_mi(f[both], w[both]), overlap


# ------------------------------------------------------------------------------------------------
# the registration


def register_volumes(current: Volume, prior: Volume, options: RegistrationOptions | None = None, *,
                     progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None,
                     initial: np.ndarray | None = None) -> RegistrationResult:
    """Register ``prior`` (moving) to ``current`` (fixed); the matrix maps current LPS to prior LPS.

    ``initial`` (4x4) starts from a known alignment instead of the centred one (a stored nudge).
    Raises :class:`RegistrationError` when the pair cannot be registered or the result does not
    overlap, :class:`Cancelled` when ``cancel`` is set (checked every iteration).
    """
    import SimpleITK as sitk

    opt = options or RegistrationOptions()
    progress = progress or no_progress
    check_registrable(current, "current")
    check_registrable(prior, "prior")
    check_cancel(cancel, "registration")
    t0 = time.perf_counter()
    threads_before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    if opt.threads:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(opt.threads))
    try:
        fixed_full, moving_full = to_sitk(current), to_sitk(prior)
        fixed = _intensities(_resolution_image(fixed_full, opt.max_resolution_mm), opt)
        moving = _intensities(_resolution_image(moving_full, opt.max_resolution_mm), opt)
        mask = _foreground_mask(fixed)

        if initial is not None:
            init_tx: Any = affine_from_matrix(initial) if opt.kind == "affine" else _euler_from_matrix(initial)
            centre = fixed.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2.0 for n in fixed.GetSize()])
            _recentre(init_tx, np.asarray(centre))
        else:
            base = sitk.Euler3DTransform() if opt.kind == "rigid" else sitk.AffineTransform(3)
            init_tx = sitk.CenteredTransformInitializer(fixed, moving, base,
                                                        sitk.CenteredTransformInitializerFilter.GEOMETRY)
        before_tx = sitk.Transform(init_tx)

        total = opt.iterations * len(opt.levels)
        state = {"it": 0, "level": 0, "cancelled": False}
        tx: Any = init_tx
        # the metric at the start, on the finest level (the one the final value is measured on)
        f_fine = _level_image(fixed, opt.levels[-1], opt.smoothing_mm[-1])
        m_fine = _level_image(moving, opt.levels[-1], opt.smoothing_mm[-1])
        fine_mask = None if mask is None else sitk.Resample(mask, f_fine, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
        probe = _method(opt, fine_mask, 1.0, int(np.prod(f_fine.GetSize())), opt.samples[-1])
        probe.SetInitialTransform(init_tx, inPlace=False)
        try:
            metric_before = float(probe.MetricEvaluate(f_fine, m_fine))
        except RuntimeError as exc:
            raise RegistrationError(f"the {_describe(prior, 'prior')} and the {_describe(current, 'current')} do not "
                                    f"overlap at the start: {_first_line(exc)}") from None
        stop = ""
        metric = float("nan")
        for level, (factor, sigma) in enumerate(zip(opt.levels, opt.smoothing_mm)):
            state["level"] = level
            f_img = _level_image(fixed, factor, sigma)
            m_img = _level_image(moving, factor, sigma)
            f_mask = None if mask is None else sitk.Resample(mask, f_img, sitk.Transform(),
                                                             sitk.sitkNearestNeighbor, 0)
            n_vox = int(np.prod(f_img.GetSize()))
            if f_mask is not None:
                n_vox = max(int(sitk.GetArrayViewFromImage(f_mask).sum()), 1)
            reg = _method(opt, f_mask, learning_rate=1.0 * factor, voxels=n_vox, samples=opt.samples[level])
            reg.SetInitialTransform(tx, inPlace=False)

            def on_iteration(reg: Any = reg, level: int = level) -> None:
                state["it"] += 1
                done = level * opt.iterations + reg.GetOptimizerIteration()
                progress(min(done, total), total, f"registering (level {level + 1} of {len(opt.levels)})")
                if cancel is not None and cancel.is_set():
                    state["cancelled"] = True
                    reg.StopRegistration()

            reg.AddCommand(sitk.sitkIterationEvent, on_iteration)
            try:
                out_tx = reg.Execute(f_img, m_img)
            except RuntimeError as exc:
                raise RegistrationError(f"registering the {_describe(prior, 'prior')} to the "
                                        f"{_describe(current, 'current')} failed: {_first_line(exc)}") from None
            if state["cancelled"]:
                break
            metric = float(reg.GetMetricValue())
            stop = reg.GetOptimizerStopConditionDescription()
            tx = _unwrap(out_tx)
        if state["cancelled"]:
            raise Cancelled("registration cancelled")
        final = tx
        matrix = _linear_matrix(final)
        quality, overlap = _evaluate(fixed, moving, final, mask)
        _nmi0, overlap0 = _evaluate(fixed, moving, before_tx, mask)
        warnings: list[str] = []
        if overlap < MIN_OVERLAP:
            raise RegistrationError(
                f"the {_describe(prior, 'prior')} hardly overlaps the {_describe(current, 'current')} after "
                f"registration ({overlap:.0%} of the current anatomy covered): not the same region? "
                "Shown side by side, not linked")
        if not math.isfinite(metric) or metric > -1e-3:
            raise RegistrationError(f"registration of the {_describe(prior, 'prior')} found no common structure "
                                    f"(mutual information {metric:.4f}); shown side by side, not linked")
        if overlap < overlap0 * 0.5:
            warnings.append(f"overlap fell from {overlap0:.0%} to {overlap:.0%}: check the alignment")
        deformable = ""
        if opt.deformable:
            check_cancel(cancel, "registration")
            deformable = _bspline(fixed, moving, final, mask, opt, progress, cancel)
        seconds = time.perf_counter() - t0
        result = RegistrationResult(matrix=matrix, kind=opt.kind, metric=metric, metric_before=metric_before,
                                    quality=quality, overlap=overlap, iterations=state["it"], seconds=seconds,
                                    software=software_version(), stop=stop, deformable=deformable,
                                    warnings=warnings)
        progress(total, total, "registered")
        log.info("registration done: %s", result.summary())
        return result
    finally:
        if opt.threads:
            sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads_before)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    # ITK messages end with the description after the file/line preamble
    for line in reversed(text):
        if line.strip() and not line.strip().startswith("sitk::ERROR") and "itk::" not in line:
            return line.strip()[:200]
    return (text[-1] if text else type(exc).__name__)[:200]


def _euler_from_matrix(m: np.ndarray) -> Any:
    """An Euler3D transform for a (near-)rigid 4x4 (the nearest rotation of its linear part)."""
    import SimpleITK as sitk

    u, _s, vt = np.linalg.svd(np.asarray(m)[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:
        raise RegistrationError("the starting transform mirrors the image: not a rigid transform")
    tx = sitk.Euler3DTransform()
    tx.SetMatrix(tuple(float(x) for x in r.ravel()))
    tx.SetTranslation(tuple(float(x) for x in np.asarray(m)[:3, 3]))
    return tx


def _unwrap(tx: Any) -> Any:
    """The one matrix-offset transform inside what ``Execute`` returns (it may be a composite)."""
    import SimpleITK as sitk

    t = tx.Downcast() if hasattr(tx, "Downcast") else tx
    while isinstance(t, sitk.CompositeTransform):
        t = t.GetNthTransform(t.GetNumberOfTransforms() - 1).Downcast()
    return t


def _recentre(tx: Any, centre: np.ndarray) -> None:
    """Move a matrix-offset transform's centre of rotation without changing the mapping."""
    a = np.asarray(tx.GetMatrix(), dtype=np.float64).reshape(3, 3)
    m = _linear_matrix(tx)
    tx.SetCenter(tuple(float(x) for x in centre))
    # p' = a (p - c) + c + t  must equal  a p + offset  =>  t = offset - c + a c
    tx.SetTranslation(tuple(float(x) for x in m[:3, 3] - centre + a @ centre))


def _bspline(fixed: Any, moving: Any, linear: Any, mask: Any, opt: RegistrationOptions,
             progress: ProgressCallback, cancel: SupportsCancel | None) -> str:
    """A coarse B-spline after the linear transform (for the subtraction view), as ITK text."""
    import SimpleITK as sitk

    phys = [sz * sp for sz, sp in zip(fixed.GetSize(), fixed.GetSpacing())]
    mesh = [max(int(p / 50.0), 1) for p in phys]  # one control point per 5 cm
    bs = sitk.BSplineTransformInitializer(fixed, mesh)
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=opt.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(min(1.0, 2 * opt.samples[-1] / max(int(np.prod(fixed.GetSize())), 1)), opt.seed)
    if mask is not None:
        reg.SetMetricFixedMask(mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=int(opt.bspline_iterations))
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    reg.SetMovingInitialTransform(linear)
    reg.SetInitialTransform(bs, inPlace=True)
    n = {"it": 0}

    def on_iteration() -> None:
        n["it"] += 1
        progress(min(n["it"], 100), 100, "deformable registration")
        if cancel is not None and cancel.is_set():
            reg.StopRegistration()

    reg.AddCommand(sitk.sitkIterationEvent, on_iteration)
    try:
        reg.Execute(fixed, moving)
    except RuntimeError as exc:
        raise RegistrationError(f"deformable registration failed: {_first_line(exc)}") from None
    check_cancel(cancel, "registration")
    with tempfile.TemporaryDirectory(prefix="casebook-bspline-") as d:
        p = Path(d) / "bspline.tfm"
        sitk.WriteTransform(bs, str(p))
        return p.read_text(encoding="utf-8")


def read_deformable(text: str) -> Any:
    """The B-spline transform stored as ITK text (see :func:`register_volumes`)."""
    import SimpleITK as sitk

    fd, name = tempfile.mkstemp(suffix=".tfm", prefix="casebook-bspline-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return sitk.ReadTransform(name)
    finally:
        os.unlink(name)


# ------------------------------------------------------------------------------------------------
# known rigid transforms (tests, benchmark, the reader's nudge)


def rigid_matrix(rotation_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 translation_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
                 center: tuple[float, float, float] | np.ndarray = (0.0, 0.0, 0.0)) -> np.ndarray:
    """A 4x4 rotating about LPS x, y, z (degrees, in that order) around ``center``, then translating."""
    ax, ay, az = np.radians(rotation_deg)
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    r = rz @ ry @ rx
    c = np.asarray(center, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c - r @ c + np.asarray(translation_mm, dtype=np.float64)
    return m


def axis_rotation(axis: np.ndarray, angle_deg: float, center: np.ndarray) -> np.ndarray:
    """A 4x4 rotating by ``angle_deg`` about ``axis`` (LPS) through ``center`` (the reader's nudge)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / (np.linalg.norm(a) or 1.0)
    t = math.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    r = np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)
    c = np.asarray(center, dtype=np.float64)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c - r @ c
    return m


def moved_volume(v: Volume, m: np.ndarray) -> Volume:
    """The same voxels placed elsewhere in the patient: every point p of ``v`` moves to ``m`` p.

    Registering the result (as prior) to ``v`` (as current) must recover ``m`` exactly; no
    interpolation touches the voxels, so the check measures the registration alone.
    """
    from dataclasses import replace

    m = np.asarray(m, dtype=np.float64)
    return replace(v, origin=tuple(float(x) for x in m[:3, :3] @ np.asarray(v.origin) + m[:3, 3]),
                   direction=m[:3, :3] @ v.direction, meta=dict(v.meta))


def transform_error(found: np.ndarray, truth: np.ndarray, points: np.ndarray) -> tuple[float, float]:
    """(largest distance in mm over ``points``, rotation angle difference in degrees)."""
    pts = np.c_[np.asarray(points, dtype=np.float64), np.ones(len(points))]
    d = np.linalg.norm((pts @ found.T)[:, :3] - (pts @ truth.T)[:, :3], axis=1)
    r = found[:3, :3] @ truth[:3, :3].T
    c = (np.trace(r) - 1.0) / 2.0
    return float(d.max()), float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def corner_points(v: Volume) -> np.ndarray:
    """The eight corners of the volume in LPS mm (the worst case for a transform error)."""
    nk, nj, ni = v.shape
    ijk = np.array([[i, j, k] for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)], dtype=np.float64)
    return v.index_to_lps(ijk)


__all__ = ["KINDS", "RegistrationError", "axis_rotation", "RegistrationOptions", "RegistrationResult", "affine_from_matrix",
           "check_registrable", "corner_points", "moved_volume", "normalised_mi", "read_deformable",
           "register_volumes", "rigid_matrix", "software_version", "to_sitk", "transform_error", "volume_from_sitk"]
