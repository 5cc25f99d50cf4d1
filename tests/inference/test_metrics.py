"""Retrieval figures and calibration: the numbers models are selected and reported on."""
from __future__ import annotations

import numpy as np

from casebook.inference.metrics import calibration_error, fit_isotonic, neighbour_pairs, retrieval_scores


def test_balanced_figures_weigh_each_class_equally() -> None:
    # 1-D "embeddings" on a circle: class 0 sits near angle 0, class 1 near pi/2; one class-0 query
    # sits among class 1 (a miss), the others hit
    ang = np.array([0.0, 0.05, 0.1, 1.5, 1.55, 1.6, 1.65, 1.7])
    db = np.stack([np.cos(ang), np.sin(ang)], 1)
    dl = np.array([0, 0, 0, 1, 1, 1, 1, 1])
    qa = np.array([0.02, 1.58, 1.52, 1.62])
    q = np.stack([np.cos(qa), np.sin(qa)], 1)
    ql = np.array([0, 0, 1, 1])
    s = retrieval_scores(q, ql, db, dl, k=3)
    assert s.p_at_1 == 0.75 and s.per_class_p_at_1 == {0: 0.5, 1: 1.0}
    assert s.balanced_p_at_1 == 0.75
    s2 = retrieval_scores(q[1:], ql[1:], db, dl, k=3)  # one class-0 query (a miss), two class-1 hits
    assert abs(s2.p_at_1 - 2 / 3) < 1e-9 and s2.balanced_p_at_1 == 0.5


def test_isotonic_calibration_is_monotone_and_lowers_the_error() -> None:
    rng = np.random.default_rng(0)
    sim = rng.uniform(0.5, 1.0, 4000)
    hit = (rng.random(4000) < (sim - 0.5) * 2).astype(float)  # true P(hit) rises from 0 to 1
    iso = fit_isotonic(sim[:2000], hit[:2000])
    grid = np.linspace(0.5, 1.0, 50)
    assert np.all(np.diff(iso(grid)) >= -1e-12)
    assert abs(float(iso(np.array([0.75]))[0]) - 0.5) < 0.1
    raw_error = calibration_error(sim[2000:], hit[2000:])  # raw cosine read as a probability
    assert calibration_error(iso(sim[2000:]), hit[2000:]) < 0.05 < raw_error


def test_neighbour_pairs_are_the_top_k_with_hits() -> None:
    db = np.eye(4, dtype=np.float32)
    dl = np.array([0, 0, 1, 1])
    q = np.array([[1.0, 0.1, 0.0, 0.0]], np.float32)
    sims, hits = neighbour_pairs(q, np.array([0]), db, dl, k=2)
    assert sorted(np.round(sims, 3).tolist()) == sorted(np.round([1 / np.hypot(1, 0.1), 0.1 / np.hypot(1, 0.1)], 3).tolist())
    assert hits.tolist() == [1.0, 1.0]
