"""Priors of the open study: the same patient's other studies, the best series to compare, and
the registration that links the two (computed once, then read from the case store).

A reader compares like with like: the prior *series* chosen is the one of the same modality and
body part whose protocol is closest (description words, plane, slice thickness), never a
localizer or a single image when a volume exists. The reader may pick another; the choice is a
ranking, not a filter, so a prior with only a different protocol still shows.
"""
from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from casebook.common.errors import Cancelled, CasebookError
from casebook.common.progress import ProgressCallback, SupportsCancel, check_cancel
from casebook.index.case_store import CaseStore
from casebook.index.case_store.records import SeriesSummary, StudySummary
from casebook.index.case_store.registrations import RegistrationRecord

from ..dicom.volume import Volume
from .library import load_stored_volume
from .registration import RegistrationError, RegistrationOptions, register_volumes

log = logging.getLogger(__name__)


class PriorsError(CasebookError):
    """A prior cannot be shown linked (missing files, no series to compare); the message says why."""


@dataclass
class SeriesMatch:
    """One series of a prior study, scored against the current series (higher is closer)."""

    series: SeriesSummary
    score: float
    reasons: list[str] = field(default_factory=list)


@dataclass
class PriorEntry:
    """Another study of the patient on the timeline, with its best series for comparison."""

    study: StudySummary
    # how we know it is the same patient: "patient id" (PatientID + Issuer) | "patient id, issuer
    # unknown" | "name + birth date" | "manual" (see CaseStore.patient_studies)
    match: str
    interval_days: int | None  # > 0: this study is that many days before the current one
    series: list[SeriesMatch]  # best first

    @property
    def relation(self) -> str:
        if self.interval_days is None:
            return "undated"
        return "prior" if self.interval_days > 0 else ("later" if self.interval_days < 0 else "same day")

    @property
    def best(self) -> SeriesMatch | None:
        return self.series[0] if self.series else None

    def interval_text(self) -> str:
        return interval_text(self.interval_days)


def interval_text(days: int | None) -> str:
    """"3 months before", "1 year 2 months later": the interval as readers say it."""
    if days is None:
        return "date unknown"
    if days == 0:
        return "same day"
    n = abs(int(days))
    if n < 31:
        body = f"{n} day{'s' if n != 1 else ''}"
    elif n < 365:
        m = round(n / 30.44)
        body = f"{m} month{'s' if m != 1 else ''}"
    else:
        y, rest = divmod(n, 365)
        m = round(rest / 30.44)
        body = f"{y} year{'s' if y != 1 else ''}" + (f" {m} month{'s' if m != 1 else ''}" if m else "")
    return f"{body} {'before' if days > 0 else 'later'}"


_WORD = re.compile(r"[a-z]+|\d+(?:\.\d+)?")


def _words(text: str) -> set[str]:
    return set(_WORD.findall((text or "").lower()))


def _plane(s: SeriesSummary) -> str:
    if not s.orientation or len(s.orientation) < 6:
        return ""
    n = np.cross(np.asarray(s.orientation[:3]), np.asarray(s.orientation[3:6]))
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(n)))]


def score_series(current: SeriesSummary, candidate: SeriesSummary) -> SeriesMatch:
    """How well ``candidate`` (of a prior) matches ``current`` for a side-by-side comparison."""
    score, why = 0.0, []
    if current.modality and candidate.modality == current.modality:
        score += 4.0
        why.append(f"same modality ({candidate.modality})")
    if current.body_part and candidate.body_part and candidate.body_part.upper() == current.body_part.upper():
        score += 2.0
        why.append(f"same body part ({candidate.body_part})")
    a, b = _words(current.description), _words(candidate.description)
    if a or b:
        sim = max(len(a & b) / max(len(a | b), 1),
                  difflib.SequenceMatcher(None, current.description.lower(), candidate.description.lower()).ratio())
        score += 2.0 * sim
        if sim >= 0.5:
            why.append("similar protocol")
    if _plane(current) and _plane(current) == _plane(candidate):
        score += 1.0
        why.append(f"same plane ({_plane(candidate)})")
    if current.slice_thickness and candidate.slice_thickness:
        r = min(current.slice_thickness, candidate.slice_thickness) / max(current.slice_thickness,
                                                                          candidate.slice_thickness)
        score += 0.5 * r
    if candidate.is_localizer:
        score -= 5.0
        why.append("localizer")
    if candidate.slice_count < 3 <= current.slice_count:
        score -= 2.0
        why.append("single image")
    return SeriesMatch(candidate, round(score, 3), why)


def rank_series(current: SeriesSummary, candidates: list[SeriesSummary]) -> list[SeriesMatch]:
    """Candidates best first (ties: more slices, then series number)."""
    scored = [score_series(current, c) for c in candidates]
    scored.sort(key=lambda m: (-m.score, -m.series.slice_count, m.series.series_number or 0, m.series.id))
    return scored


def find_priors(store: CaseStore, study_id: int, *, current_series_id: int | None = None,
                name_birth_fallback: bool = False, include_later: bool = True) -> list[PriorEntry]:
    """The patient's other studies, newest first, each with its series ranked against the current one.

    Without ``current_series_id`` the current study's largest non-localizer series is the reference.
    """
    me = store.get_study(study_id)
    mine = store.list_series(study_id=me.id)
    if current_series_id is not None:
        ref = store.get_series(current_series_id)
        if ref.study_id != me.id:
            raise PriorsError(f"series {current_series_id} is not part of study {study_id}")
    else:
        usable = [s for s in mine if not s.is_localizer] or mine
        ref = max(usable, key=lambda s: s.slice_count) if usable else None
    out: list[PriorEntry] = []
    for ps in store.patient_studies(me.id, name_birth_fallback=name_birth_fallback):
        if not include_later and (ps.interval_days is not None and ps.interval_days < 0):
            continue
        series = store.list_series(study_id=ps.study.id)
        ranked = rank_series(ref, series) if ref is not None else [SeriesMatch(s, 0.0) for s in series]
        out.append(PriorEntry(ps.study, ps.match, ps.interval_days, ranked))
    return out


def follow_up_studies(store: CaseStore, study_id: int) -> list[PriorEntry]:
    """For an analogue from the search: its own later studies ("what happened to this patient")."""
    return [p for p in find_priors(store, study_id) if p.relation == "later"][::-1]


# ------------------------------------------------------------------------------------------------
# registration of a chosen pair, cached in the case store


@dataclass
class LinkedPair:
    """What the compare layout needs: both volumes, and the link between them if there is one."""

    current: Volume
    prior: Volume
    registration: RegistrationRecord | None
    message: str  # shown to the reader: the quality figure, or why the pair is not linked
    reused: bool = False

    @property
    def linked(self) -> bool:
        return self.registration is not None


def load_for_compare(store: CaseStore, series_id: int, role: str, *, progress: ProgressCallback | None = None,
                     cancel: SupportsCancel | None = None) -> Volume:
    """A stored series for the compare layout, with a message naming what is missing."""
    try:
        return load_stored_volume(store, series_id, progress=progress, cancel=cancel)
    except Cancelled:
        raise
    except CasebookError as exc:
        raise PriorsError(f"the {role} series {series_id} cannot be shown: {exc}") from None


def registration_for(store: CaseStore, current_series_id: int, prior_series_id: int, *,
                     current: Volume, prior: Volume, options: RegistrationOptions | None = None,
                     recompute: bool = False, progress: ProgressCallback | None = None,
                     cancel: SupportsCancel | None = None) -> tuple[RegistrationRecord, bool]:
    """The stored registration of the pair (True: reused), or a new one computed and stored."""
    opt = options or RegistrationOptions()
    if not recompute:
        rec = store.get_registration(current_series_id, prior_series_id, opt.kind)
        if rec is not None:
            return rec, True
    old = store.get_registration(current_series_id, prior_series_id, opt.kind)
    res = register_volumes(current, prior, opt, progress=progress, cancel=cancel)
    rec = RegistrationRecord(fixed_series_id=current_series_id, moving_series_id=prior_series_id, kind=opt.kind,
                             matrix=res.matrix, nudge=None if old is None else old.nudge, metric=res.metric,
                             quality=res.quality, overlap=res.overlap, iterations=res.iterations,
                             seconds=res.seconds, software=res.software, deformable=res.deformable)
    return store.save_registration(rec), False


def open_pair(store: CaseStore, current_series_id: int, prior_series_id: int, *,
              options: RegistrationOptions | None = None, recompute: bool = False,
              progress: ProgressCallback | None = None, cancel: SupportsCancel | None = None,
              current: Volume | None = None) -> LinkedPair:
    """Load the prior (and the current, unless given), and register them or say why not.

    A registration failure is not an error of this call: the pair comes back unlinked with the
    reason in ``message`` (side by side is still worth seeing). Missing files are an error.
    """
    cur = current if current is not None else load_for_compare(store, current_series_id, "current",
                                                               cancel=cancel)
    check_cancel(cancel, "opening the prior")
    pri = load_for_compare(store, prior_series_id, "prior", cancel=cancel)
    a, b = store.get_series(current_series_id), store.get_series(prior_series_id)
    try:
        rec, reused = registration_for(store, current_series_id, prior_series_id, current=cur, prior=pri,
                                       options=options, recompute=recompute, progress=progress, cancel=cancel)
    except RegistrationError as exc:
        frame = ("" if a.frame_of_reference_uid and a.frame_of_reference_uid == b.frame_of_reference_uid
                 else " (the two series have different frames of reference, so positions cannot be matched "
                      "without a registration)")
        log.info("prior shown unlinked: %s", exc)
        return LinkedPair(cur, pri, None, f"Not linked: {exc}{frame}.")
    return LinkedPair(cur, pri, rec, registration_message(rec, reused))


def registration_message(rec: RegistrationRecord, reused: bool = False) -> str:
    """The quality figure the reader sees next to the pair."""
    q = f"NMI {rec.quality:.2f}" if rec.quality is not None else "NMI ?"
    ov = f", overlap {rec.overlap:.0%}" if rec.overlap is not None else ""
    nudged = ", nudged by the reader" if rec.nudge is not None else ""
    how = "stored" if reused else f"{rec.seconds:.1f} s"
    warn = " — low: check the alignment, nudge with Alt+arrows" if (rec.quality or 0) < 1.08 else ""
    return f"Registered ({rec.kind}, {how}): {q}{ov}{nudged}{warn}"


def newest_first(entries: list[PriorEntry]) -> list[PriorEntry]:
    return sorted(entries, key=lambda e: (e.study.study_date or date.min, e.study.id), reverse=True)


__all__ = ["LinkedPair", "PriorEntry", "PriorsError", "SeriesMatch", "find_priors", "follow_up_studies",
           "interval_text", "load_for_compare", "newest_first", "open_pair", "rank_series", "registration_for",
           "registration_message", "score_series"]
