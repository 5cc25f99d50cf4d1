"""Grouping scanned headers into displayable stacks: one per series, split where a series mixes
orientations, echoes, acquisitions, image sizes, 4D volumes or localizers (each split named)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .headers import _FileRecord, _sop_class_name
from .stack import FileProblem, InstanceHeader, SeriesStack


def _normal(o: tuple[float, ...]) -> np.ndarray:
    r = np.asarray(o[:3], dtype=np.float64)
    c = np.asarray(o[3:], dtype=np.float64)
    n = np.cross(r, c)
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _inst_sort_key(h: InstanceHeader) -> tuple:
    return (h.instance_number if h.instance_number is not None else 1 << 30,
            h.frame_index if h.frame_index is not None else -1, str(h.path))


def _positions_repeat(insts: list[InstanceHeader]) -> bool:
    seen: set[tuple[float, float, float]] = set()
    for h in insts:
        if h.position is None:
            continue
        k = tuple(round(x, 2) for x in h.position)
        if k in seen:
            return True
        seen.add(k)  # type: ignore[arg-type]
    return False


def _partition(insts: list[InstanceHeader], keyf: Callable[[InstanceHeader], Any]) -> list[list[InstanceHeader]]:
    groups: dict[Any, list[InstanceHeader]] = {}
    for h in insts:
        groups.setdefault(keyf(h), []).append(h)
    return list(groups.values())


def _orientation_groups(insts: list[InstanceHeader]) -> list[list[InstanceHeader]]:
    reps: list[tuple[float, ...] | None] = []
    out: list[list[InstanceHeader]] = []
    for h in insts:
        o = h.orientation
        for i, r in enumerate(reps):
            if (o is None and r is None) or (
                o is not None and r is not None and max(abs(a - b) for a, b in zip(o, r)) < 1e-3
            ):
                out[i].append(h)
                break
        else:
            reps.append(o)
            out.append([h])
    return out


def _echo_key(h: InstanceHeader) -> Any:
    if h.echo_number is not None:
        return h.echo_number
    return round(h.echo_time, 2) if h.echo_time is not None else None


def _volume_order_key(h: InstanceHeader) -> tuple:
    """Order of the volumes of a 4D acquisition at any one slice position."""
    return (
        "\\".join(h.image_type[2:]),
        h.acquisition_number if h.acquisition_number is not None else -1,
        h.temporal_index if h.temporal_index is not None else -1,
        h.acquisition_datetime or "",
        _inst_sort_key(h),
    )


def _split_repeats(insts: list[InstanceHeader]) -> list[tuple[list[InstanceHeader], int | None]]:
    """Split a group whose slice positions repeat (4D: time, diffusion, magnitude/phase, ...).

    The n-th occurrence of each position (in acquisition order) goes to volume n, which is how
    converters such as dcm2niix build 4D data; returns ``(instances, volume index or None)``.
    """
    if not _positions_repeat(insts):
        return [(insts, None)]
    counts: dict[tuple, int] = {}
    vols: dict[int, list[InstanceHeader]] = {}
    for h in sorted(insts, key=_volume_order_key):
        k = tuple(round(x, 2) for x in h.position) if h.position is not None else ("nopos", id(h))
        n = counts.get(k, 0)
        counts[k] = n + 1
        vols.setdefault(n, []).append(h)
    return [(v, i + 1) for i, v in sorted(vols.items())]


_LABEL_ATTRS: list[tuple[str, Callable[[InstanceHeader], Any]]] = [
    ("type", lambda h: "\\".join(h.image_type[2:]) if len(h.image_type) > 2 else ""),
    ("acquisition", lambda h: h.acquisition_number),
    ("b", lambda h: round(h.b_value, 1) if h.b_value is not None else None),
    ("temporal position", lambda h: h.temporal_index),
]


def _image_parts(images: list[_FileRecord]) -> list[tuple[list[InstanceHeader], str, bool]]:
    """Split the image instances of one series into 3D stacks, each with a short reason."""
    raw: list[tuple[list[InstanceHeader], dict[str, Any], bool]] = []
    single: list[InstanceHeader] = []
    loc_paths = {r.instances[0].path for r in images if r.is_localizer}
    for r in images:
        if not r.enhanced and r.instances[0].number_of_frames > 1:
            # Classic multi-frame files (cine, US, XA, NM...) are each a stack of their own.
            raw.append((r.instances, {"multi-frame": r.instances[0].path.name}, r.is_localizer))
        else:
            single.extend(r.instances)
    for is_loc in (False, True):
        group = [h for h in single if (h.path in loc_paths) == is_loc]
        for by_class in _partition(group, lambda h: h.sop_class_uid):
            for sized in _partition(by_class, lambda h: (h.rows, h.columns, h.samples_per_pixel)):
                for oriented in _orientation_groups(sized):
                    for echo in _partition(oriented, _echo_key):
                        for sub, vol in _split_repeats(echo):
                            h = sub[0]
                            d = {"class": h.sop_class_uid, "size": f"{h.rows}x{h.columns}",
                                 "orientation": _orientation_label(h.orientation),
                                 "orient_key": tuple(round(x, 3) for x in h.orientation) if h.orientation else None,
                                 "echo": _echo_key(h), "volume": vol}
                            raw.append((sub, d, is_loc))
    if len(raw) == 1:
        insts, d, is_loc = raw[0]
        return [(insts, "localizer" if is_loc else "", is_loc)]

    def varies(name: str) -> bool:
        return len({d.get(name) for _, d, _ in raw}) > 1

    out: list[tuple[list[InstanceHeader], str, bool]] = []
    for insts, d, is_loc in raw:
        bits: list[str] = ["localizer"] if is_loc else []
        if "multi-frame" in d:
            bits.append(f"multi-frame {d['multi-frame']}")
        if varies("class"):
            bits.append(_sop_class_name(d.get("class") or ""))
        if varies("size"):
            bits.append(str(d.get("size")))
        if varies("orient_key"):
            bits.append(f"orientation {d.get('orientation')}")
        if varies("echo") and d.get("echo") is not None:
            bits.append(f"echo {d.get('echo')}")
        vol = d.get("volume")
        if vol is not None:
            for name, keyf in _LABEL_ATTRS:
                vals = {keyf(h) for h in insts}
                if len(vals) != 1 or None in vals or "" in vals:
                    continue
                if len({keyf(h) for r, _, _ in raw for h in r}) > 1:
                    bits.append(f"{name} {next(iter(vals))}")
            bits.append(f"volume {vol}")
        out.append((insts, ", ".join(bits), is_loc))
    return out


def group_records(records: list[_FileRecord], problems: list[FileProblem]) -> tuple[list[SeriesStack], list[SeriesStack]]:
    by_series: dict[str, list[_FileRecord]] = {}
    for r in records:
        by_series.setdefault(r.series["series_uid"], []).append(r)
    stacks: list[SeriesStack] = []
    non_image: list[SeriesStack] = []
    for uid, recs in by_series.items():
        # The same SOP instance twice (copies in two folders) would double slices: keep the first.
        uniq: list[_FileRecord] = []
        seen_sop: set[str] = set()
        for r in sorted(recs, key=lambda r: str(r.instances[0].path)):
            sop = r.instances[0].sop_instance_uid
            if sop and sop in seen_sop:
                problems.append(FileProblem(r.instances[0].path, f"duplicate of SOP instance {sop} (skipped)"))
                continue
            seen_sop.add(sop)
            uniq.append(r)
        images = [r for r in uniq if r.is_image]
        others = [r for r in uniq if not r.is_image]
        if others:
            by_class: dict[str, list[_FileRecord]] = {}
            for r in others:
                by_class.setdefault(r.series["sop_class_uid"], []).append(r)
            for cls, rs in by_class.items():
                st = _make_stack(uid, rs[0], [h for r in rs for h in r.instances],
                                 f"non-image: {_sop_class_name(cls)}", False)
                st.is_image = False
                non_image.append(st)
        if not images:
            continue
        parts = _image_parts(images)
        # Main stacks first (largest non-localizer), so the plain series UID names the main one.
        parts.sort(key=lambda p: (p[2], -len(p[0]), min(_inst_sort_key(h) for h in p[0])))
        rec0 = images[0]
        for n, (insts, lab, is_loc) in enumerate(parts):
            key = uid if n == 0 else f"{uid}#{n + 1}"
            st = _make_stack(key, rec0, sorted(insts, key=_inst_sort_key), lab, is_loc)
            stacks.append(st)
    stacks.sort(key=_stack_order)
    return stacks, non_image


def _stack_order(s: SeriesStack) -> tuple:
    part = int(s.key.rsplit("#", 1)[1]) if "#" in s.key[len(s.series_uid):] else 1
    return (s.study_date, s.study_uid, s.series_number if s.series_number is not None else 1 << 30,
            s.series_uid, part)


def _orientation_label(o: tuple[float, ...] | None) -> str:
    if o is None:
        return "unknown"
    n = _normal(o)
    axis = int(np.argmax(np.abs(n)))
    return ("sagittal", "coronal", "axial")[axis] if abs(n[axis]) > 0.8 else "oblique"


def _make_stack(key: str, rec: _FileRecord, insts: list[InstanceHeader], reason: str, is_loc: bool) -> SeriesStack:
    s = rec.series
    h0 = insts[0]
    return SeriesStack(
        key=key,
        series_uid=s["series_uid"],
        study_uid=s["study_uid"],
        patient_id=s["patient_id"],
        patient_name=s["patient_name"],
        patient_sex=s["patient_sex"],
        patient_birth_date=s["patient_birth_date"],
        patient_age=s["patient_age"],
        study_date=s["study_date"],
        study_time=s["study_time"],
        study_description=s["study_description"],
        accession_number=s["accession_number"],
        series_number=s["series_number"],
        series_description=s["series_description"],
        modality=s["modality"],
        body_part=s["body_part"],
        manufacturer=s["manufacturer"],
        rows=h0.rows,
        columns=h0.columns,
        instances=insts,
        split_reason=reason,
        is_localizer=is_loc,
        pixel_spacing=h0.pixel_spacing,
        slice_thickness=h0.slice_thickness,
        photometric=h0.photometric,
        frame_of_reference_uid=s["frame_of_reference_uid"],
        sop_class_uid=s["sop_class_uid"],
        is_image=True,
        institution_name=s["institution_name"],
        referring_physician=s["referring_physician"],
        patient_issuer=s.get("patient_issuer", ""),
    )

