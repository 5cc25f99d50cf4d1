"""Seeded anatomical phantoms written as real DICOM series, for the demo library.

Why: similar-case search, prior comparison and teaching files need a multi-patient library with
known findings on a machine that has no patient data. Every case here is labelled SYNTHETIC
PHANTOM in its descriptions and carries a ground-truth diagnosis and report text.

Anatomy is an analytic function of patient coordinates (LPS, mm), sampled on any acquisition
grid, so axial, coronal and sagittal series and repositioned follow-ups share one geometry.
Everything (pixels, UIDs, dates) depends only on the seed: same seed, same bytes.
"""
from __future__ import annotations

import hashlib
import logging
import os
import uuid
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from ..progress import ProgressCallback, SupportsCancel, check_cancel

log = logging.getLogger(__name__)

MANUFACTURER = "Casebook phantom"
SYNTH = "SYNTHETIC PHANTOM"

# lesion kinds: (organ, human text)
LESION_KINDS: dict[str, tuple[str, str]] = {
    "lung_nodule_solid": ("lung", "solid pulmonary nodule"),
    "lung_nodule_ggo": ("lung", "ground-glass pulmonary nodule"),
    "lung_nodule_cavitating": ("lung", "cavitating pulmonary nodule"),
    "liver_met_hypo": ("liver", "hypodense liver metastasis"),
    "liver_met_hyper": ("liver", "hyperdense (hypervascular) liver metastasis"),
    "renal_cyst": ("kidney", "simple renal cyst"),
    "bone_lytic": ("bone", "lytic vertebral bone lesion"),
    "bone_sclerotic": ("bone", "sclerotic vertebral bone lesion"),
    "brain_tumour": ("brain", "brain tumour with enhancing rim and surrounding oedema"),
}

# candidate centres (patient mm, LPS) per organ with a location phrase
_PLACES: dict[str, list[tuple[tuple[float, float, float], str]]] = {
    "lung": [((-70.0, -10.0, 70.0), "right upper lobe"), ((75.0, 0.0, 60.0), "left upper lobe"),
             ((-80.0, 20.0, 20.0), "right lower lobe"), ((80.0, 25.0, 15.0), "left lower lobe"),
             ((-45.0, -35.0, 40.0), "right middle lobe")],
    "liver": [((-75.0, -10.0, -45.0), "liver segment VIII"), ((-55.0, -35.0, -70.0), "liver segment IVb"),
              ((-95.0, 10.0, -75.0), "liver segment VI")],
    "kidney": [((-62.0, 42.0, -85.0), "right kidney"), ((62.0, 42.0, -85.0), "left kidney")],
    "bone": [((0.0, 68.0, 30.0), "thoracic vertebral body"), ((0.0, 68.0, -60.0), "lumbar vertebral body")],
    "brain": [((-35.0, -20.0, 25.0), "right frontal lobe"), ((40.0, 10.0, 20.0), "left parietal lobe"),
              ((-40.0, 30.0, 5.0), "right temporo-occipital region")],
}


@dataclass(frozen=True)
class LesionSpec:
    kind: str
    centre: tuple[float, float, float]  # patient mm at baseline positioning
    diameter_mm: float
    place: str


@dataclass(frozen=True)
class SeriesPlan:
    description: str
    plane: str  # "axial" | "coronal" | "sagittal"
    contrast: str  # CT: "ct"; MR: "t1", "t1c", "t2"
    size: int  # rows = columns
    slices: int
    pixel_mm: float
    slice_mm: float


@dataclass(frozen=True)
class StudyPlan:
    patient_index: int
    patient_id: str
    patient_name: str
    sex: str
    birth_date: date
    study_date: date
    timepoint: int
    region: str  # "chest_abdomen" | "brain"
    lesions: tuple[LesionSpec, ...]
    shift_mm: tuple[float, float, float]
    series: tuple[SeriesPlan, ...]
    change: str  # "baseline" | "grew" | "shrank" | "stable"
    seed: int

    @property
    def modality(self) -> str:
        return "MR" if self.region == "brain" else "CT"

    @property
    def age_years(self) -> int:
        b, d = self.birth_date, self.study_date
        return d.year - b.year - ((d.month, d.day) < (b.month, b.day))


@dataclass
class GeneratedSeries:
    series_uid: str
    description: str
    plane: str
    files: list[Path]


@dataclass
class GeneratedStudy:
    """What the demo library stores next to the pixels: ground truth and report text."""
    study_uid: str
    patient_id: str
    study_date: date
    modality: str
    description: str
    diagnosis: str
    findings: str
    impression: str
    tags: list[str]
    lesion_kinds: list[str]
    lesion_volumes_ml: list[float]
    change: str
    timepoint: int
    series: list[GeneratedSeries] = field(default_factory=list)


@dataclass(frozen=True)
class PhantomOptions:
    """Size knobs: ``size`` pixels per side, ``slices`` per axial CT series, ``big_slices`` for the
    one long series (viewer benchmark; 0 = none)."""
    patients: int = 24
    seed: int = 20240601
    size: int = 256
    slices: int = 48
    big_slices: int = 300
    follow_up_share: float = 0.5


# ---------------------------------------------------------------------------- deterministic UIDs
def _uid(seed: int, *parts: object) -> str:
    """Deterministic UID: a name-based (v5-style) UUID of the parts under the 2.25 root.

    ``generate_uid(prefix=None, ...)`` ignores its entropy sources (it returns a random UUID),
    so the UUID is derived here from a SHA-256 of the parts, like ``uuid.uuid5`` does."""
    digest = hashlib.sha256("|".join(["casebook-phantom", str(seed), *map(str, parts)]).encode()).digest()
    u = uuid.UUID(bytes=digest[:16], version=5)
    return f"2.25.{u.int}"


# ---------------------------------------------------------------------------- planning
def plan_library(options: PhantomOptions) -> list[StudyPlan]:
    """The whole demo cohort as plans (cheap; no pixels): patients, studies, lesions, series."""
    rng = np.random.default_rng(options.seed)
    kinds = list(LESION_KINDS)
    body_kinds = [k for k in kinds if k != "brain_tumour"]
    plans: list[StudyPlan] = []
    for p in range(options.patients):
        pseed = int(rng.integers(0, 2**31 - 1))
        prng = np.random.default_rng(pseed)
        brain = p % 4 == 3
        sex = "F" if prng.random() < 0.5 else "M"
        birth = date(1940, 1, 1) + timedelta(days=int(prng.integers(0, 365 * 50)))
        d0 = date(2019, 1, 1) + timedelta(days=int(prng.integers(0, 365 * 3)))
        lesions: list[LesionSpec] = []
        if brain:
            if p % 8 != 7:  # some normal brains
                centre, place = _PLACES["brain"][int(prng.integers(0, len(_PLACES["brain"])))]
                lesions.append(LesionSpec("brain_tumour", centre, float(prng.uniform(14, 34)), place))
        elif p % 6 != 5:  # some normal bodies
            n = 1 + int(prng.random() < 0.35)
            chosen = [body_kinds[(p + 3 * j) % len(body_kinds)] for j in range(n)]
            for kind in dict.fromkeys(chosen):
                organ = LESION_KINDS[kind][0]
                centre, place = _PLACES[organ][int(prng.integers(0, len(_PLACES[organ])))]
                lo, hi = {"lung": (6, 28), "liver": (10, 40), "kidney": (12, 36), "bone": (10, 22)}[organ]
                jitter = tuple(float(c + prng.uniform(-4, 4)) for c in centre)
                lesions.append(LesionSpec(kind, jitter, float(prng.uniform(lo, hi)), place))  # type: ignore[arg-type]
        size = options.size
        # fields of view fixed in mm (384 mm body, 230 mm head): pixel size follows the matrix
        ct_px, mr_px = round(384.0 / size, 4), round(230.0 / size, 4)
        if brain:
            series = (SeriesPlan(f"{SYNTH} MR BRAIN AX T1", "axial", "t1", size, max(24, options.slices * 2 // 3), mr_px, 5.0),
                      SeriesPlan(f"{SYNTH} MR BRAIN AX T2", "axial", "t2", size, max(24, options.slices * 2 // 3), mr_px, 5.0),
                      SeriesPlan(f"{SYNTH} MR BRAIN SAG T1 POST", "sagittal", "t1c", size, max(20, options.slices // 2), mr_px, 5.0))
        else:
            n_ax = options.big_slices if (p == 0 and options.big_slices) else options.slices
            thick = 300.0 / n_ax if p == 0 and options.big_slices else 5.0
            series = (SeriesPlan(f"{SYNTH} CT CHEST ABDOMEN AX", "axial", "ct", size, n_ax, ct_px, thick),)
            if p % 3 == 0:
                series += (SeriesPlan(f"{SYNTH} CT CHEST ABDOMEN COR", "coronal", "ct", size, max(20, options.slices // 2), ct_px, 6.0),)
        follow = prng.random() < options.follow_up_share and bool(lesions)
        timepoints = 2 if follow else 1
        change_cycle = ["grew", "shrank", "stable"]
        change_for_patient = change_cycle[p % 3]
        for t in range(timepoints):
            change = "baseline" if t == 0 else change_for_patient
            factor = {"baseline": 1.0, "grew": 1.45, "shrank": 0.6, "stable": 1.0}[change]
            tl = tuple(replace(l, diameter_mm=round(l.diameter_mm * factor, 1)) for l in lesions)
            shift = (0.0, 0.0, 0.0) if t == 0 else tuple(float(v) for v in prng.uniform(-6, 6, 3))
            sdate = d0 + timedelta(days=int(prng.integers(90, 240)) * t)
            plans.append(StudyPlan(p, f"DEMO{p + 1:04d}", f"DEMO^PATIENT{p + 1:02d}", sex, birth, sdate, t,
                                   "brain" if brain else "chest_abdomen", tl, shift, series, change,  # type: ignore[arg-type]
                                   pseed * 7 + t))
    return plans


# ---------------------------------------------------------------------------- anatomy
def _ell(x: np.ndarray, y: np.ndarray, z: np.ndarray, c: Sequence[float], r: Sequence[float]) -> np.ndarray:
    return ((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2


def _ct_body(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """HU of a chest/abdomen phantom at patient coordinates; also organ masks for lesions."""
    hu = np.full(x.shape, -1000.0, np.float32)
    in_z = np.abs(z) <= 160
    body = (((x / 165) ** 2 + ((y - 5) / 115) ** 2) <= 1) & in_z
    inner = (((x / 150) ** 2 + ((y - 5) / 100) ** 2) <= 1) & in_z
    hu[body] = -100.0  # subcutaneous fat
    hu[inner] = 40.0  # muscle / soft tissue
    lungs = np.zeros(x.shape, bool)
    for sx in (-1, 1):
        lungs |= _ell(x, y, z, (sx * 70, 5, 65), (55, 75, 95)) <= 1
    lungs &= inner & (z > -30)
    hu[lungs] = -850.0
    heart = (_ell(x, y, z, (15, -25, 20), (55, 50, 45)) <= 1) & inner
    hu[heart] = 45.0
    liver = (_ell(x, y, z, (-65, -5, -60), (80, 70, 55)) <= 1) & inner & ~lungs
    hu[liver] = 65.0
    kidneys = np.zeros(x.shape, bool)
    for sx in (-1, 1):
        kidneys |= _ell(x, y, z, (sx * 62, 42, -85), (22, 28, 50)) <= 1
    kidneys &= inner
    hu[kidneys] = 150.0  # portal venous enhancement
    # vessels: aorta + IVC, pulmonary vessels as thin tubes in the lungs
    aorta = ((x - 12) ** 2 + (y - 35) ** 2 <= 13**2) & inner
    ivc = ((x + 22) ** 2 + (y - 30) ** 2 <= 11**2) & inner & (z < 10)
    hu[aorta | ivc] = 180.0
    for sx in (-1, 1):
        for (oy, oz) in ((-25, 70), (0, 40), (20, 90), (30, 20)):
            d2 = (y - oy) ** 2 + (z - oz) ** 2
            hu[lungs & (d2 <= 3.0**2) & (np.abs(x - sx * 60) < 45)] = 60.0
    # spine: vertebral bodies with discs, posterior elements; ribs in the chest
    vert = ((x**2 + (y - 68) ** 2) <= 18**2) & in_z
    disc = (np.mod(z + 160, 30) < 5)
    hu[vert] = np.where(disc[vert], 80.0, 350.0)  # cancellous bone
    cortex = vert & ((x**2 + (y - 68) ** 2) >= 15.5**2)
    hu[cortex & ~disc] = 900.0
    canal = (x**2 + (y - 95) ** 2 <= 8**2) & in_z
    hu[canal] = 20.0
    post = (((np.abs(x) - 12) ** 2 + (y - 100) ** 2) <= 5**2) & in_z & ~disc
    hu[post] = 800.0
    rr = np.sqrt((x / 143) ** 2 + ((y - 5) / 93) ** 2)
    ribs = (np.abs(rr - 1.0) < 0.04) & (np.mod(z + 160, 25) < 9) & (z > -60) & in_z & (np.abs(x) > 15)
    hu[ribs] = 700.0
    bone = vert & ~disc
    return hu, {"lung": lungs, "liver": liver, "kidney": kidneys, "bone": bone, "body": inner}


def _mr_brain(x: np.ndarray, y: np.ndarray, z: np.ndarray, contrast: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """T1/T2-like signal of a brain phantom: scalp fat, skull, CSF, grey and white matter, ventricles."""
    tab = {  # scalp, skull, csf, grey, white, vessels/enhancement
        "t1": (900.0, 60.0, 180.0, 520.0, 760.0, 300.0),
        "t1c": (900.0, 60.0, 180.0, 520.0, 760.0, 1100.0),
        "t2": (700.0, 40.0, 1600.0, 850.0, 520.0, 150.0),
    }[contrast]
    sig = np.zeros(x.shape, np.float32)
    e = _ell(x, y, z, (0, 0, 0), (78, 98, 75))
    head = e <= 1
    sig[head] = tab[0]
    skull = _ell(x, y, z, (0, 0, 0), (73, 93, 70)) <= 1
    sig[skull] = tab[1]
    csf = _ell(x, y, z, (0, 0, 0), (67, 87, 64)) <= 1
    sig[csf] = tab[2]
    brain = _ell(x, y, z, (0, 0, 0), (64, 84, 61)) <= 1
    # grey matter cortex with gyral folding, white matter core
    ang = np.arctan2(y, x)
    fold = 1.0 + 0.06 * np.sin(9 * ang) * np.cos(z / 9.0)
    white = _ell(x, y, z, (0, 0, 0), (52 * fold, 70 * fold, 48 * fold)) <= 1
    sig[brain] = tab[3]
    sig[brain & white] = tab[4]
    deep_gm = np.zeros(x.shape, bool)
    for sx in (-1, 1):
        deep_gm |= _ell(x, y, z, (sx * 20, 0, 0), (8, 14, 10)) <= 1
    sig[deep_gm & brain] = tab[3]
    vent = np.zeros(x.shape, bool)
    for sx in (-1, 1):
        vent |= _ell(x, y, z, (sx * 9, -5, 12), (6, 28, 9)) <= 1
    sig[vent] = tab[2]
    falx = (np.abs(x) < 1.2) & brain & ~vent & (z > 0)
    sig[falx] = tab[2]
    if contrast == "t1c":
        sinus = ((x**2 + (y - 88) ** 2) <= 4**2) & (z > -30) & head
        sig[sinus] = tab[5]
    return sig, {"brain": brain & ~vent, "head": head}


def _lesion(values: np.ndarray, masks: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, z: np.ndarray,
            les: LesionSpec, contrast: str) -> np.ndarray:
    """Paint one lesion into ``values``; returns the lesion's core mask."""
    r = les.diameter_mm / 2.0
    c = les.centre
    d = np.sqrt((x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2)
    core = d <= r
    k = les.kind
    organ = masks.get(LESION_KINDS[k][0])
    if k == "lung_nodule_solid":
        lobul = 1.0 + 0.12 * np.sin(5 * np.arctan2(y - c[1], x - c[0]))
        core = d <= r * lobul
        values[core] = 35.0
    elif k == "lung_nodule_ggo":
        values[core] = -520.0
    elif k == "lung_nodule_cavitating":
        values[core] = 30.0
        values[d <= r * 0.55] = -950.0
    elif k in ("liver_met_hypo", "liver_met_hyper"):
        assert organ is not None
        core = core & organ if organ.any() else core
        inner = d <= r * 0.8
        values[core] = 25.0 if k == "liver_met_hypo" else 120.0
        values[core & ~inner] = 45.0 if k == "liver_met_hypo" else 95.0  # soft transition zone
    elif k == "renal_cyst":
        values[core] = 5.0
    elif k == "bone_lytic":
        assert organ is not None
        core = core & organ if organ.any() else core
        values[core] = 40.0
    elif k == "bone_sclerotic":
        assert organ is not None
        core = core & organ if organ.any() else core
        values[core] = 1250.0
    elif k == "brain_tumour":
        oedema = (d <= r * 1.9) & masks["brain"]
        rim = core & (d > r * 0.65)
        necrosis = d <= r * 0.65
        t = {"t1": (430.0, 480.0, 300.0), "t1c": (430.0, 1250.0, 300.0), "t2": (1350.0, 1100.0, 1700.0)}[contrast]
        values[oedema] = t[0]
        values[rim] = t[1]
        values[necrosis] = t[2]
    return core


def lesion_volume_ml(les: LesionSpec) -> float:
    """Nominal lesion volume (sphere of the stated diameter), in millilitres."""
    return float(4.0 / 3.0 * np.pi * (les.diameter_mm / 2.0) ** 3 / 1000.0)


# ---------------------------------------------------------------------------- acquisition grids
_PLANES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    # (row direction = along a row, i.e. column index increases; column direction)
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}


def series_geometry(sp: SeriesPlan, shift: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(row_dir, col_dir, normal, origin of slice 0) in scanner coordinates; the grid is centred
    on the scanner isocentre, the patient lies ``shift`` mm away from the baseline position."""
    rdir, cdir = (np.asarray(v) for v in _PLANES[sp.plane])
    normal = np.cross(rdir, cdir)
    half_in = (sp.size - 1) / 2.0 * sp.pixel_mm
    half_n = (sp.slices - 1) / 2.0 * sp.slice_mm
    origin = -half_in * rdir - half_in * cdir - half_n * normal
    if sp.plane == "axial":
        origin = origin.copy()
    return rdir, cdir, normal, origin


def lesion_voxel(plan: StudyPlan, centre: Sequence[float], series: int = 0) -> tuple[float, float, float]:
    """Continuous voxel index (k, j, i) of a patient-space point (a lesion centre, mm) in one of a
    study's series, with the patient's shift on the table: where checks look for a lesion."""
    sp = plan.series[series]
    rdir, cdir, normal, origin = series_geometry(sp, plan.shift_mm)
    p = np.asarray(centre, float) + np.asarray(plan.shift_mm, float) - origin
    return float(p @ normal / sp.slice_mm), float(p @ cdir / sp.pixel_mm), float(p @ rdir / sp.pixel_mm)


def render_slice(plan: StudyPlan, sp: SeriesPlan, k: int, rng: np.random.Generator | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Values (CT HU or MR signal) of slice ``k`` and the union mask of lesion cores."""
    rdir, cdir, normal, origin = series_geometry(sp, plan.shift_mm)
    j, i = np.mgrid[0:sp.size, 0:sp.size].astype(np.float32)
    pts = [origin[a] + i * sp.pixel_mm * rdir[a] + j * sp.pixel_mm * cdir[a] + k * sp.slice_mm * normal[a]
           for a in range(3)]
    # anatomy lives in patient coordinates: scanner position minus the patient's shift
    x, y, z = (pts[a] - plan.shift_mm[a] for a in range(3))
    if plan.region == "brain":
        vals, masks = _mr_brain(x, y, z, sp.contrast)
    else:
        vals, masks = _ct_body(x, y, z)
    lmask = np.zeros(vals.shape, bool)
    for les in plan.lesions:
        lmask |= _lesion(vals, masks, x, y, z, les, sp.contrast)
    if rng is not None:
        if plan.region == "brain":
            noise = rng.normal(0.0, 18.0, vals.shape).astype(np.float32)
            vals = np.sqrt((vals + noise) ** 2 + rng.normal(0.0, 18.0, vals.shape).astype(np.float32) ** 2)  # Rician
            # smooth receive-coil bias field
            vals = vals * (1.0 + 0.08 * (pts[0] / 100.0) - 0.05 * (pts[1] / 100.0))
        else:
            vals = vals + rng.normal(0.0, 10.0, vals.shape).astype(np.float32)
            # mild correlation of CT noise: average with the 4-neighbours
            v = vals
            vals = (4 * v + np.roll(v, 1, 0) + np.roll(v, -1, 0) + np.roll(v, 1, 1) + np.roll(v, -1, 1)) / 8.0
    return vals.astype(np.float32), lmask


# ---------------------------------------------------------------------------- DICOM writing
def _report(plan: StudyPlan, prior: StudyPlan | None) -> tuple[str, str, str, list[str]]:
    region_text = "CT chest and abdomen with contrast" if plan.region != "brain" else "MR brain T1, T2 and post-contrast T1"
    if not plan.lesions:
        return ("normal", f"Synthetic phantom. {region_text}: no focal abnormality.",
                "Synthetic phantom. Normal study.", ["synthetic", "normal"])
    parts, kinds = [], []
    for n, les in enumerate(plan.lesions):
        what = LESION_KINDS[les.kind][1]
        s = f"{les.diameter_mm:.0f} mm {what}, {les.place}"
        if prior is not None and n < len(prior.lesions):
            before = prior.lesions[n].diameter_mm
            verb = {"grew": "increased", "shrank": "decreased", "stable": "unchanged"}[plan.change]
            s += f" ({verb} from {before:.0f} mm on {prior.study_date.isoformat()})"
        parts.append(s)
        kinds.append(les.kind)
    findings = f"Synthetic phantom. {region_text}. " + "; ".join(parts) + "."
    diag = "; ".join(f"{LESION_KINDS[l.kind][1]} ({l.place})" for l in plan.lesions)
    if prior is not None:
        impression = {"grew": "Progression", "shrank": "Partial response", "stable": "Stable disease"}[plan.change]
        impression = f"Synthetic phantom. {impression} compared with {prior.study_date.isoformat()}."
    else:
        impression = f"Synthetic phantom. {diag[0].upper() + diag[1:]}."
    tags = ["synthetic", *dict.fromkeys(kinds)]
    if plan.change != "baseline":
        tags.append(f"follow-up-{plan.change}")
    return diag, findings, impression, tags


def _base_dataset(plan: StudyPlan, sp: SeriesPlan, series_uid: str, study_uid: str, for_uid: str,
                  series_number: int) -> Dataset:
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if sp.plane == "axial" else "OTHER"]
    ds.SOPClassUID = MRImageStorage if plan.modality == "MR" else CTImageStorage
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = plan.study_date.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{9 + plan.patient_index % 8:02d}{(7 * series_number) % 60:02d}00"
    ds.AccessionNumber = f"DEMOACC{plan.patient_index + 1:04d}{plan.timepoint}"
    ds.Modality = plan.modality
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "Casebook synthetic phantom generator"
    ds.InstitutionName = "Casebook demo (synthetic)"
    ds.ReferringPhysicianName = ""
    region = "CT CHEST ABDOMEN" if plan.region != "brain" else "MR BRAIN"
    ds.StudyDescription = f"{SYNTH} {region}" + (" FOLLOW-UP" if plan.timepoint else "")
    ds.SeriesDescription = sp.description
    ds.PatientName = plan.patient_name
    ds.PatientID = plan.patient_id
    ds.PatientBirthDate = plan.birth_date.strftime("%Y%m%d")
    ds.PatientSex = plan.sex
    ds.PatientAge = f"{plan.age_years:03d}Y"
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic data: no real patient"
    ds.BodyPartExamined = "HEAD" if plan.region == "brain" else "CHEST"
    ds.SliceThickness = f"{sp.slice_mm:g}"
    ds.PatientPosition = "HFS"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = f"{plan.timepoint + 1}"
    ds.SeriesNumber = series_number
    ds.FrameOfReferenceUID = for_uid
    ds.PositionReferenceIndicator = ""
    rdir, cdir, _, _ = series_geometry(sp, plan.shift_mm)
    ds.ImageOrientationPatient = [f"{v:g}" for v in (*rdir, *cdir)]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = sp.size
    ds.PixelSpacing = [f"{sp.pixel_mm:g}", f"{sp.pixel_mm:g}"]
    ds.BitsAllocated = 16
    ds.BitsStored = 16 if plan.modality == "CT" else 12
    ds.HighBit = ds.BitsStored - 1
    if plan.modality == "CT":
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = "-1024"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.KVP = "120"
        ds.ConvolutionKernel = "STANDARD"
        ds.WindowCenter, ds.WindowWidth = ["40", "-600"], ["400", "1500"]
        ds.WindowCenterWidthExplanation = ["MEDIASTINUM", "LUNG"]
    else:
        ds.PixelRepresentation = 0
        ds.MagneticFieldStrength = "1.5"
        ds.ScanningSequence = "SE"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.RepetitionTime, ds.EchoTime = {"t1": ("500", "12"), "t1c": ("500", "12"), "t2": ("4000", "95")}[sp.contrast]
        ds.EchoNumbers = 1
        ds.WindowCenter, ds.WindowWidth = ("900", "1800") if sp.contrast == "t2" else ("600", "1200")
    return ds


def write_study(plan: StudyPlan, out_dir: Path, *, prior: StudyPlan | None = None, seed: int = 0,
                cancel: SupportsCancel | None = None, on_slice: Callable[[], None] | None = None) -> GeneratedStudy:
    """Write every series of ``plan`` under ``out_dir`` (one file per slice); return its ground truth."""
    study_uid = _uid(seed, plan.patient_id, plan.timepoint, "study")
    for_uid = _uid(seed, plan.patient_id, plan.timepoint, "for")
    diag, findings, impression, tags = _report(plan, prior)
    gs = GeneratedStudy(study_uid, plan.patient_id, plan.study_date, plan.modality,
                        f"{SYNTH} {'MR BRAIN' if plan.region == 'brain' else 'CT CHEST ABDOMEN'}",
                        diag, findings, impression, tags, [l.kind for l in plan.lesions],
                        [round(lesion_volume_ml(l), 3) for l in plan.lesions], plan.change, plan.timepoint)
    sdir = out_dir / plan.patient_id / f"{plan.study_date:%Y%m%d}_{plan.modality}"
    for sn, sp in enumerate(plan.series, start=1):
        check_cancel(cancel)
        series_uid = _uid(seed, plan.patient_id, plan.timepoint, "series", sn)
        base = _base_dataset(plan, sp, series_uid, study_uid, for_uid, sn)
        rdir, cdir, normal, origin = series_geometry(sp, plan.shift_mm)
        d = sdir / f"S{sn:02d}_{sp.plane}_{sp.contrast}"
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([plan.seed, sn])
        files: list[Path] = []
        for k in range(sp.slices):
            check_cancel(cancel)
            vals, _ = render_slice(plan, sp, k, rng)
            ds = Dataset()
            ds.update(base)
            ds.SOPInstanceUID = _uid(seed, plan.patient_id, plan.timepoint, "series", sn, "inst", k)
            ds.InstanceNumber = k + 1
            pos = origin + k * sp.slice_mm * normal
            ds.ImagePositionPatient = [f"{v:.4f}" for v in pos]
            ds.SliceLocation = f"{float(np.dot(pos, normal)):.4f}"
            if plan.modality == "CT":
                stored = np.clip(np.rint(vals + 1024.0), -1024, 4000).astype(np.int16)
            else:
                stored = np.clip(np.rint(vals), 0, 4095).astype(np.uint16)
            ds.PixelData = stored.tobytes()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = ds.SOPClassUID
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            ds.file_meta = meta
            path = d / f"IM{k + 1:04d}.dcm"
            tmp = path.with_suffix(".tmp")
            ds.save_as(tmp, enforce_file_format=True)
            tmp.replace(path)
            files.append(path)
            if on_slice is not None:
                on_slice()
        gs.series.append(GeneratedSeries(series_uid, sp.description, sp.plane, files))
    return gs


def _write_job(job: tuple[StudyPlan, Path, StudyPlan | None, int]) -> GeneratedStudy:
    plan, out_dir, prior, seed = job
    return write_study(plan, out_dir, prior=prior, seed=seed)


def generate_library(out_dir: Path, options: PhantomOptions, *, progress: ProgressCallback | None = None,
                     cancel: SupportsCancel | None = None, workers: int = 0) -> list[GeneratedStudy]:
    """Write the whole phantom cohort; ``progress(done, total, message)`` counts slices.

    Studies are written in parallel (``workers`` processes, 0 = one per CPU core); each study has
    its own seeds, so the files do not depend on the number of workers."""
    plans = plans_in = plan_library(options)
    total = sum(sp.slices for p in plans for sp in p.series)
    prior_of: dict[str, StudyPlan] = {}
    jobs = []
    for plan in plans_in:
        jobs.append((plan, out_dir, prior_of.get(plan.patient_id), options.seed))
        prior_of[plan.patient_id] = plan
    n_workers = workers or os.cpu_count() or 1
    out: list[GeneratedStudy | None] = [None] * len(jobs)
    done = 0
    if progress is not None:
        progress(0, total, "phantom slices")
    if n_workers <= 1 or len(jobs) <= 1:
        for n, job in enumerate(jobs):
            check_cancel(cancel)
            out[n] = _write_job(job)
            done += sum(sp.slices for sp in job[0].series)
            if progress is not None:
                progress(done, total, "phantom slices")
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # "spawn", never fork: the caller may hold threads (GUI workers, pytest-qt, onnxruntime),
        # and a forked child inherits their locks in whatever state they were: a deadlock seen here.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(n_workers, len(jobs)), mp_context=ctx) as pool:
            futs = {pool.submit(_write_job, job): n for n, job in enumerate(jobs)}
            try:
                for fut in as_completed(futs):
                    n = futs[fut]
                    out[n] = fut.result()
                    done += sum(sp.slices for sp in jobs[n][0].series)
                    if progress is not None:
                        progress(done, total, "phantom slices")
                    check_cancel(cancel)
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
    log.info("phantom: %d studies, %d slices written", len(out), total)
    return [o for o in out if o is not None]


def iter_lesion_masks(plan: StudyPlan, sp: SeriesPlan) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Noise-free (values, lesion mask) per slice: the ground truth tests and teaching use."""
    for k in range(sp.slices):
        yield render_slice(plan, sp, k, None)


__all__ = ["LESION_KINDS", "MANUFACTURER", "SYNTH", "GeneratedSeries", "GeneratedStudy", "LesionSpec",
           "PhantomOptions", "SeriesPlan", "StudyPlan", "generate_library", "iter_lesion_masks",
           "lesion_volume_ml", "lesion_voxel", "plan_library", "render_slice", "series_geometry", "write_study"]
