"""A region match's score as a probability that the analogue shares the query's finding, fitted on
the library's own labelled cases.

Why: a descriptor cosine or a percentile says how alike two regions look, not how often such a
match has the same diagnosis in *this* archive. Where the library holds diagnoses, every labelled
series' most salient regions are searched against the rest of the archive (other patients only),
each returned series gives one judged pair (score, same diagnosis?), and an isotonic
(pool-adjacent-violators) fit turns scores into probabilities. The error is reported honestly: the
fit is made on one half of the patients and its expected calibration error measured on the other
half; the model shipped to the cards is then refitted on all pairs. The fit is cached beside the
region index with a signature of the labels and regions it saw, so it is refitted as labels grow.
Where the library has too few labels, there is no fit, and the cards show the percentile and say so.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Hashable, Mapping, Sequence

import numpy as np

from .calibration import expected_calibration_error, isotonic_fit, isotonic_predict

log = logging.getLogger(__name__)

#: Fewer judged pairs (or positives) than this and no probability is claimed.
MIN_PAIRS = 30
MIN_POSITIVES = 5
MIN_PATIENTS = 10  # a fit on a handful of patients describes those patients, not the archive
FORMAT = 2  # 2: labels are every finding a diagnosis names, judged by a finding in common

_WORDS = re.compile(r"[a-z0-9]+")


def normalise_diagnosis(text: str | None) -> str:
    """One spelling per diagnosis for comparing labels: lower case, words only, in order.

    The reports work maps synonyms to one finding; this only removes case and punctuation
    differences so that "Renal cyst." and "renal cyst" count as the same label.
    """
    return " ".join(_WORDS.findall((text or "").lower()))


@dataclass
class LabelCalibration:
    """Isotonic map from a region match's score to P(same diagnosis), with its measured error."""

    family: str
    thresholds: list[float]
    probabilities: list[float]
    pairs: int  # judged (score, same-diagnosis) pairs the shipped fit was made on
    positives: int
    labelled_series: int
    diagnoses: int
    held_out_pairs: int
    held_out_ece: float  # fit on half the patients, measured on the other half
    base_rate: float  # share of judged pairs with the same diagnosis (what "chance" means here)
    signature: str
    format: int = FORMAT

    def probability(self, score: float) -> float:
        fit = (np.asarray(self.thresholds, float), np.asarray(self.probabilities, float))
        return float(isotonic_predict(fit, np.asarray([score], float))[0])

    def describe(self) -> str:
        return (f"probability of the same diagnosis (a finding in common), fitted on {self.pairs} judged matches of "
                f"{self.labelled_series} labelled {self.family} series ({self.diagnoses} diagnoses; "
                f"base rate {self.base_rate:.2f}); calibration error {self.held_out_ece:.3f} on "
                f"{self.held_out_pairs} held-out pairs")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "LabelCalibration | None":
        try:
            d = json.loads(text)
            if d.get("format") != FORMAT:
                return None
            return cls(**d)
        except (ValueError, TypeError):
            return None


@dataclass
class JudgedPairs:
    scores: np.ndarray
    same: np.ndarray
    fold: np.ndarray  # 0 or 1: which half of the patients the query came from


def _fold(patient_key: Hashable) -> int:
    return hashlib.sha1(str(patient_key).encode()).digest()[0] & 1


#: joins the terms of a study that states several findings ("renal cyst|solid nodule")
TERM_SEP = "|"


def terms(label: str) -> frozenset[str]:
    """The findings a label names (see :data:`TERM_SEP`)."""
    return frozenset(x for x in label.split(TERM_SEP) if x)


def shares_finding(a: str, b: str) -> bool:
    """Two labels count as the same diagnosis when they name a finding in common: an analogue of a
    renal cyst is right for a study with a renal cyst and a lung nodule."""
    return bool(terms(a) & terms(b))


def labelled_series(catalog: Any, series_ids: Sequence[int]) -> dict[int, tuple[Hashable, str]]:
    """series id -> (patient key, its findings) for the series that carry a diagnosis.

    The findings are every vocabulary term the diagnosis names (sorted, joined by
    :data:`TERM_SEP`); a diagnosis naming none is one label of its own normalised text."""
    out: dict[int, tuple[Hashable, str]] = {}
    infos: Mapping[Hashable, Any] = catalog.series_info(list(series_ids))
    store = getattr(catalog, "store", None)
    cache: dict[str, list[str]] = {}
    for sid, info in infos.items():
        text = getattr(info, "diagnosis", "") or ""
        found: list[str] = []
        if text and store is not None:
            if text not in cache:
                cache[text] = store.map_findings(text)
            found = cache[text]
        if not found:  # the vocabulary term when the diagnosis maps to one: synonyms are one label
            one = normalise_diagnosis(getattr(info, "finding", "") or text)
            found = [one] if one else []
        if found:
            out[int(sid)] = (info.patient_key, TERM_SEP.join(sorted(normalise_diagnosis(x) for x in found)))
    return out


def signature(family: str, labels: Mapping[int, tuple[Hashable, str]], index_size: int) -> str:
    h = hashlib.sha1(f"{family}|{index_size}".encode())
    for sid in sorted(labels):
        h.update(f"|{sid}:{labels[sid][1]}".encode())
    return h.hexdigest()


def judge(index: Any, regions: Any, descriptor_id: int, labels: Mapping[int, tuple[Hashable, str]],
          patient_of: Mapping[int, Hashable], *, per_series: int = 3, k: int = 10, max_series: int = 200,
          seed: int = 0, rank_regions: Any = None, penalty: Any = None) -> JudgedPairs:
    """Search each labelled series' findings; every other-patient labelled series returned gives
    (best score, same diagnosis?).

    ``rank_regions(rows) -> indices`` orders a series' regions, findings first (the search passes its
    least-typical-first order, so the pairs are what a reader's box on a lesion meets); without it
    the most salient regions are used. ``penalty(query_row, hit_row) -> float`` is subtracted from
    each similarity, as the search subtracts it (the fit must see the scores the cards show)."""
    rng = np.random.default_rng(seed)
    sids = sorted(labels)
    if len(sids) > max_series:
        sids = sorted(rng.choice(sids, size=max_series, replace=False).tolist())
    scores: list[float] = []
    same: list[int] = []
    fold: list[int] = []
    n_search = min(max(8 * k, 64), len(index))
    for sid in sids:
        rows, vecs = regions.regions_of_series(descriptor_id, sid)
        if not rows:
            continue
        if rank_regions is not None:
            order = [int(n) for n in rank_regions(rows)][:per_series]
        else:
            order = sorted(range(len(rows)), key=lambda n: -rows[n].saliency)[:per_series]
        patient, dx = labels[sid]
        res = index.search(vecs[order], n_search)
        for q in range(len(order)):
            hits = list(res.hits(q))
            resolved = regions.resolve(descriptor_id, [lab for lab, _ in hits])
            best: dict[int, float] = {}
            for lab, sim in hits:
                r = resolved.get(lab)
                if r is None or r.series_id == sid or patient_of.get(r.series_id) == patient:
                    continue
                if penalty is not None:
                    sim = float(sim) - float(penalty(rows[order[q]], r))
                if r.series_id not in best or best[r.series_id] < sim:
                    best[r.series_id] = float(sim)
            for other, sim in sorted(best.items(), key=lambda kv: -kv[1])[:k]:
                if other not in labels:
                    continue  # an unlabelled analogue says nothing about calibration
                scores.append(sim)
                same.append(int(shares_finding(labels[other][1], dx)))
                fold.append(_fold(patient))
    return JudgedPairs(np.asarray(scores, float), np.asarray(same, float), np.asarray(fold, int))


def fit_calibration(pairs: JudgedPairs, *, family: str, labels: Mapping[int, tuple[Hashable, str]],
                    sig: str) -> tuple[LabelCalibration | None, str]:
    """(fit, "") or (None, why no probability can be claimed)."""
    n, pos = len(pairs.scores), int(pairs.same.sum())
    dxs = {term for _, dx in labels.values() for term in terms(dx)}
    patients = len({p for p, _ in labels.values()})
    if patients < MIN_PATIENTS:
        return None, (f"too few labelled {family} patients to calibrate ({patients}; {MIN_PATIENTS} needed)")
    if len(dxs) < 2:
        return None, f"the library's {family} cases carry {len(dxs)} diagnosis; a probability needs at least 2"
    if n < MIN_PAIRS or pos < MIN_POSITIVES:
        return None, (f"too few labelled {family} matches to calibrate ({n} judged, {pos} with the same "
                      f"diagnosis; {MIN_PAIRS} and {MIN_POSITIVES} needed)")
    a, b = pairs.fold == 0, pairs.fold == 1
    ece = float("nan")
    held = 0
    if a.sum() >= 10 and b.sum() >= 10:
        fa = isotonic_fit(pairs.scores[a], pairs.same[a])
        fb = isotonic_fit(pairs.scores[b], pairs.same[b])
        ea = expected_calibration_error(isotonic_predict(fa, pairs.scores[b]), pairs.same[b])
        eb = expected_calibration_error(isotonic_predict(fb, pairs.scores[a]), pairs.same[a])
        ece = float((ea * b.sum() + eb * a.sum()) / n)  # two-fold, each half judged by the other's fit
        held = n
    xs, ps = isotonic_fit(pairs.scores, pairs.same)
    log.info("calibration %s: %d pairs over %d patients, ECE %.3f", family, n, patients, ece)
    return LabelCalibration(family, [float(x) for x in xs], [float(p) for p in ps], n, pos, len(labels), len(dxs),
                            held, ece, float(pos / n), sig), ""


def cache_path(index_dir: Path, index_key: str) -> Path:
    from casebook.index.vector_index.files import model_file_stem

    return Path(index_dir) / f"{model_file_stem(index_key)}.calibration.json"


def load_cached(path: Path, sig: str) -> LabelCalibration | None:
    try:
        cal = LabelCalibration.from_json(path.read_text())
    except OSError:
        return None
    return cal if cal is not None and cal.signature == sig else None


def save_cached(path: Path, cal: LabelCalibration) -> None:
    """Best effort: a read-only library simply refits next time."""
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(cal.to_json())
        tmp.replace(path)
    except OSError as exc:
        log.info("calibration not cached (%s)", type(exc).__name__)
        try:
            tmp.unlink()
        except OSError:
            pass


__all__ = ["JudgedPairs", "LabelCalibration", "MIN_PAIRS", "MIN_PATIENTS", "MIN_POSITIVES", "cache_path", "fit_calibration", "judge",
           "labelled_series", "load_cached", "normalise_diagnosis", "save_cached", "shares_finding", "signature", "terms"]
