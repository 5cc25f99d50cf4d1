"""A box drawn on a finding, as the reader's *Find similar* and ``casebook search --roi`` run it
(issue 11): real phantom DICOM imported the way the window imports it (ingest, embed, findings,
index), the search service of the library (SQLite + hnswlib), and the CLI. The box is matched
against findings of the same modality family, not whole slices; every hit carries the matched
region and a confidence that says what it is; the probability is fitted on labels when there are
enough and the error of the fit is measured on patients it was not fitted on."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from casebook.viewer.core.config import Settings
from casebook.viewer.core.demo.phantom import LesionSpec, PhantomOptions, lesion_voxel, plan_library, write_study
from casebook.viewer.core.services.import_pipeline import PHASE_REGIONS, import_paths
from casebook.viewer.core.services.label_calibration import (JudgedPairs, fit_calibration, labelled_series,
                                                              normalise_diagnosis, shares_finding)
from casebook.viewer.core.services.search_types import RegionSearchHit, SearchFilters

LESIONS = {  # patient -> (kind, centre mm, diameter mm, diagnosis as a report would spell it)
    "A": ("lung_nodule_solid", (-70.0, -10.0, 45.0), 20.0, "Pulmonary nodule."),
    "B": ("lung_nodule_solid", (75.0, 5.0, 30.0), 16.0, "pulmonary nodule"),
    "C": ("bone_sclerotic", (0.0, 68.0, 30.0), 18.0, "Sclerotic bone lesion"),
    "D": ("bone_sclerotic", (0.0, 68.0, -25.0), 15.0, "sclerotic bone lesion"),
}


def voxel(plan, les: LesionSpec) -> tuple[int, float, float]:
    k, j, i = lesion_voxel(plan, les.centre)
    return int(round(k)), j, i


def box_around(plan) -> tuple[int, int, int, int, int, int]:
    les = plan.lesions[0]
    k, j, i = voxel(plan, les)
    half = les.diameter_mm * 0.65 / plan.series[0].pixel_mm + 2
    return k, k + 1, int(j - half), int(j + half) + 1, int(i - half), int(i + half) + 1


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("boxlib")
    template = plan_library(PhantomOptions(patients=1, size=96, slices=28, big_slices=0, seed=5))[0]
    plans = {}
    for n, (name, (kind, centre, diam, _dx)) in enumerate(LESIONS.items()):
        plan = replace(template, patient_index=n, patient_id=f"BOX{name}", patient_name=f"DEMO^{name}",
                       lesions=(LesionSpec(kind, centre, diam, "test"),), series=template.series[:1],
                       seed=2000 + n, shift_mm=(float(n), -float(n), 0.0))
        write_study(plan, root / "dicom", seed=91)
        plans[name] = plan
    settings = Settings(library_dir=root / "lib", model="casebook-baseline")
    phases: list[str] = []
    rep = import_paths(settings, [root / "dicom"], progress=lambda d, t, m="": phases.append(m))
    assert rep.index.searchable and rep.index.regions is not None and not rep.index.regions.failed
    assert PHASE_REGIONS in phases and rep.index.regions.indexed.get("CT", 0) > 0
    assert "region index CT" in rep.headline("dicom")
    from casebook.viewer.core.services.library import open_store

    store = open_store(settings)
    ids = {}
    for st in store.list_studies():
        name = st.patient_id[-1]
        store.set_report(st.id, impression=LESIONS[name][3], diagnosis=LESIONS[name][3])
        ids[name] = store.list_series(study_id=st.id)[0].id
    store.close()
    return settings, plans, ids


def open_service(settings: Settings):
    from casebook.viewer.core.services.search import open_store_search

    return open_store_search(settings, auto_encoder=False)


@pytest.mark.parametrize("query, want", [("A", "B"), ("C", "D")])
def test_box_finds_the_same_finding_with_its_region_and_confidence(library, query: str, want: str) -> None:
    settings, plans, ids = library
    svc = open_service(settings)
    try:
        resp = svc.search_box(ids[query], box_around(plans[query]), filters=SearchFilters(), k=10)
    finally:
        svc.close()
    assert resp.method == "regions" and resp.hits
    top = resp.hits[0]
    assert isinstance(top, RegionSearchHit) and top.series_id == ids[want], resp.hits
    assert top.via == "region" and top.query_slice == box_around(plans[query])[0]
    # why similar: the matched box sits on the analogue's lesion, on the slice the analogue opens at
    wk, wj, wi = voxel(plans[want], plans[want].lesions[0])
    k0, k1, j0, j1, i0, i1 = top.matched_box
    assert k0 - 1 <= wk <= k1 and j0 - 1 <= wj <= j1 + 1 and i0 - 1 <= wi <= i1 + 1
    assert k0 <= top.matched_slice < k1 and top.region == (i0, j0, i1, j1)
    # an honest confidence: with two patients per diagnosis there is nothing to fit a probability
    # on, so the card shows the archive percentile and the response says why
    assert top.confidence is None and "percentile" in top.confidence_text
    assert "too few labelled CT patients" in resp.calibration
    # never another modality family, and fewer than k only with the filter that removed the rest
    assert all(h.info.modality == "CT" for h in resp.hits)
    assert len(resp.hits) < 10 and "same patient" in resp.reason


def test_more_like_this_reranks_box_results_and_not_like_this_removes(library) -> None:
    settings, plans, ids = library
    svc = open_service(settings)
    try:
        first = svc.search_box(ids["A"], box_around(plans["A"]), filters=SearchFilters(), k=10)
        other = [h.series_id for h in first.hits if h.series_id != ids["B"]][0]
        moved = svc.feedback(first, more_like=[other], not_like=[ids["B"]])
    finally:
        svc.close()
    assert moved.method == "regions" and ids["B"] not in [h.series_id for h in moved.hits]
    assert moved.hits[0].series_id == other  # its own finding now matches exactly
    assert moved.region_query is not None and "(+feedback)" in moved.region_query.description


def test_more_like_this_after_a_findings_search_keeps_every_finding(library) -> None:
    """Feedback on a Findings (series) search: its three weighted findings stay and the liked hit's
    finding joins them (it raised IndexError: three weights, two vectors)."""
    settings, plans, ids = library
    svc = open_service(settings)
    try:
        first = svc.search_findings(ids["A"], filters=SearchFilters(), k=10)
        liked = first.hits[-1].series_id
        moved = svc.feedback(first, more_like=[liked], not_like=[first.hits[0].series_id])
    finally:
        svc.close()
    q0, q1 = first.region_query, moved.region_query
    assert len(q1.vectors) == len(q1.weights) == len(q0.vectors) + 1 and len(q1.regions) == len(q1.vectors)
    assert np.allclose(q1.vectors[:len(q0.vectors)], q0.vectors)
    before, after = [h.series_id for h in first.hits], [h.series_id for h in moved.hits]
    assert before[0] not in after and liked in after
    assert after.index(liked) < before.index(liked)  # ahead of where it was


def test_box_search_works_when_the_settings_model_was_never_embedded(library, capsys, monkeypatch) -> None:
    """An admin switches the default model before re-embedding millions of images: box and findings
    queries (the region index) keep working; a series query says which model lacks embeddings.
    (Every box search failed with "model ... has no embeddings" before.)"""
    from casebook.index.errors import QueryError
    from casebook.viewer.cli import main
    from casebook.viewer.core.services.search import open_store_search

    settings, plans, ids = library
    other = replace(settings, model="casebook-cxr2d")
    svc = open_store_search(other, auto_encoder=False)
    try:
        assert svc.index is None
        resp = svc.search_box(ids["A"], box_around(plans["A"]), filters=SearchFilters(), k=10)
        assert resp.method == "regions" and resp.hits[0].series_id == ids["B"]
        assert svc.search_findings(ids["C"], filters=SearchFilters(), k=10).hits
        with pytest.raises(QueryError, match="casebook-cxr2d.*no embeddings.*casebook embed"):
            svc.search(svc.query_from_series(ids["A"]))
    finally:
        svc.close()
    with pytest.raises(QueryError, match="no embeddings"):  # a model asked for by name still must exist
        open_store_search(other, "casebook-cxr2d", auto_encoder=False)
    roi = ",".join(str(v) for v in box_around(plans["A"]))
    env = ["--library", str(settings.library_dir)]
    monkeypatch.setenv("CASEBOOK_MODEL", "casebook-cxr2d")
    capsys.readouterr()
    assert main([*env, "search", "--series", str(ids["A"]), "--roi", roi]) == 0
    assert "matched finding" in capsys.readouterr().out
    assert main([*env, "search", "--series", str(ids["A"])]) == 2
    assert "no embeddings" in capsys.readouterr().err


def test_cli_roi_search_prints_the_matched_finding_and_the_confidence(library, capsys) -> None:
    from casebook.viewer.cli import main

    settings, plans, ids = library
    roi = ",".join(str(v) for v in box_around(plans["C"]))
    code = main(["--library", str(settings.library_dir), "search", "--series", str(ids["C"]), "--roi", roi,
                 "--model", "casebook-baseline"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "regions" in out and "matched finding" in out and "confidence:" in out
    assert "fewer than" in out and "same patient" in out
    # what the box was taken to hold: a sclerotic lesion is brighter than the bone around it, in HU
    said = next(line for line in out.splitlines() if line.startswith("searched for "))
    assert "mm finding brighter than its surroundings (+" in said and " HU)" in said and "mm box" in said
    assert main(["--library", str(settings.library_dir), "search", "--series", str(ids["C"]), "--roi", roi,
                 "--text", "bone"]) == 2


def test_searched_for_says_what_the_box_became() -> None:
    """The reader checks what was searched against what they drew: size, brighter or darker and by
    how much (HU for CT, per cent of the tissue signal for MR), the box's size; a finding far
    smaller than the box and a box with nothing in it are said to be."""
    from casebook.inference.regions.extract import Region
    from casebook.viewer.core.services.region_search import searched_for

    def region(family: str, d: float, pol: int, contrast: float, source: str = "detected") -> Region:
        return Region(np.zeros(4, np.float32), (0, 1, 0, 1, 0, 1), (0.0, 0.0, 0.0), None, family, d, 1.0, pol,
                      contrast, 5.0, 2.0, source)

    box = (3, 4, 10, 40, 20, 60)  # 30 rows x 40 columns
    ct = searched_for(region("CT", 18.0, 1, 812.0), box, (5.0, 0.8, 0.8))
    assert ct == "a 18 mm finding brighter than its surroundings (+812 HU), in a 32 x 24 mm box"
    mr = searched_for(region("MR", 6.0, -1, -420.0), box, (5.0, 1.0, 1.0))
    assert "darker than its surroundings (-42 % of the tissue signal)" in mr and "much smaller than the box" in mr
    assert "segmented at the box's scale" in searched_for(region("CT", 20.0, 1, 300.0, "segmented in the box"),
                                                           box, (5.0, 0.8, 0.8))
    # segmented at the box's scale and still a small part of it: one note that says both, not two
    part = searched_for(region("MR", 6.0, 1, 300.0, "segmented at the box's scale"), box, (5.0, 1.0, 1.0))
    assert part.count("smaller") == 2 and "the largest part segmented at the box's scale" in part, part
    assert "(the blobs detected in it are much smaller than the box); much smaller" not in part
    whole = searched_for(region("MR", 25.0, 1, 300.0, "segmented at the box's scale"), box, (5.0, 1.0, 1.0))
    assert whole.endswith("(the blobs detected in it are much smaller than the box)"), whole
    # the blobs lay beside the box's centre: said so, not "much smaller"
    centred = searched_for(region("CT", 13.0, -1, -170.0, "segmented at the box's centre"), box, (5.0, 0.8, 0.8))
    assert centred.endswith("segmented at the box's scale (the blobs detected in it lie beside its centre)"), centred
    assert searched_for(region("CT", 20.0, 1, 3.0, "the box's tissue"), box, (5.0, 0.8, 0.8)) == (
        "the tissue of the box (32 x 24 mm): no distinct finding stands out in it")


def test_isotonic_confidence_is_calibrated_on_patients_it_was_not_fitted_on() -> None:
    """The probability model itself: judged pairs whose true P(same) rises with the score; the
    two-fold error is small, the fit is monotone and recovers the rate; too few pairs: no claim."""
    rng = np.random.default_rng(20261201)
    n = 4000
    scores = rng.uniform(0.6, 1.0, n)
    truth = np.clip((scores - 0.6) / 0.4, 0, 1) ** 2
    same = (rng.uniform(size=n) < truth).astype(float)
    pairs = JudgedPairs(scores, same, rng.integers(0, 2, n))
    labels = {i: (f"p{i % 40}", "a" if i % 2 else "b") for i in range(80)}
    cal, why = fit_calibration(pairs, family="CT", labels=labels, sig="x")
    assert cal is not None and why == ""
    assert cal.held_out_ece < 0.05 and cal.held_out_pairs == n
    probs = [cal.probability(s) for s in (0.62, 0.8, 0.98)]
    assert probs == sorted(probs) and abs(probs[1] - 0.25) < 0.08 and probs[2] > 0.8
    assert "calibration error" in cal.describe()
    few = JudgedPairs(scores[:12], same[:12], np.zeros(12, int))
    none, why = fit_calibration(few, family="CT", labels=labels, sig="x")
    assert none is None and "too few labelled CT matches" in why
    three = {i: (f"p{i % 3}", "a" if i % 2 else "b") for i in range(30)}
    none, why = fit_calibration(pairs, family="CT", labels=three, sig="x")
    assert none is None and "too few labelled CT patients to calibrate (3;" in why
    one_dx = {i: (f"p{i}", "a") for i in range(12)}
    none, why = fit_calibration(pairs, family="CT", labels=one_dx, sig="x")
    assert none is None and "1 diagnosis" in why


def test_diagnoses_compare_without_case_or_punctuation() -> None:
    assert normalise_diagnosis("Pulmonary nodule.") == normalise_diagnosis("pulmonary  NODULE") == "pulmonary nodule"
    assert normalise_diagnosis(None) == "" and normalise_diagnosis("  ") == ""


def test_calibration_labels_are_every_finding_a_diagnosis_names(tmp_path: Path) -> None:
    """A study reported as "renal cyst; solid nodule" is a right analogue for either finding (the
    judged pairs of the confidence fit count it so), and never for a third."""
    from casebook.index.case_store import CaseStore
    from casebook.viewer.core.services.store_catalog import StoreCatalog

    folder = tmp_path / "dicom"
    template = plan_library(PhantomOptions(patients=1, size=48, slices=8, big_slices=0, seed=3))[0]
    for n in range(3):
        write_study(replace(template, patient_index=n, patient_id=f"CAL{n}", patient_name=f"DEMO^{n}",
                            series=template.series[:1], seed=50 + n), folder, seed=9)
    with CaseStore.open(tmp_path / "c.sqlite", create=True) as store:
        from casebook.viewer.core.services.ingest import ingest

        ingest([folder], store)
        ids = {s.patient_key: (s.id, s.study_id) for s in store.list_series()}
        dx = {"CAL0": "Simple renal cyst, left kidney; solid pulmonary nodule (RUL)", "CAL1": "renal cyst",
              "CAL2": "Lung nodule"}
        for p, text in dx.items():
            store.set_diagnosis(ids[p][1], text)
        labels = labelled_series(StoreCatalog(store, -1), [v[0] for v in ids.values()])
    got = {p: labels[ids[p][0]][1] for p in dx}
    assert got == {"CAL0": "pulmonary nodule|renal cyst", "CAL1": "renal cyst", "CAL2": "pulmonary nodule"}
    assert shares_finding(got["CAL0"], got["CAL1"]) and shares_finding(got["CAL0"], got["CAL2"])
    assert not shares_finding(got["CAL1"], got["CAL2"])
