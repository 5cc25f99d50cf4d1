"""With "exclude same patient" off, a box on a finding opens the patient's own other scan first, at
the same place, found by the box's surroundings (issue 11: Brain-Tumor-Progression's "earlier scan
first"). A real phantom library on disk: a patient's baseline and repositioned follow-up CT, two
other patients, real ingest, real SQLite, real context maps and region index."""
from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import text

from casebook.index.case_store import CaseStore
from casebook.index.case_store.context_maps import ContextMapStore
from casebook.viewer.core.demo.phantom import LesionSpec, PhantomOptions, lesion_voxel, plan_library, write_study
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.library import load_stored_volume
from casebook.viewer.core.services.region_search import RegionSearchService
from casebook.viewer.core.services.regions import embed_regions
from casebook.viewer.core.services.same_place import SAME_PLACE, load_context_map, store_context_map
from casebook.viewer.core.services.search_types import SearchFilters


def voxel(plan, les: LesionSpec) -> tuple[int, float, float]:
    k, j, i = lesion_voxel(plan, les.centre)
    return int(round(k)), j, i


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("same-place")
    template = plan_library(PhantomOptions(patients=1, size=96, slices=28, big_slices=0, seed=5))[0]
    nodule = LesionSpec("lung_nodule_solid", (-70.0, -10.0, 45.0), 22.0, "right upper lobe")
    base = replace(template, patient_index=0, patient_id="SPA", patient_name="DEMO^A", lesions=(nodule,),
                   series=template.series[:1], seed=2000, shift_mm=(0.0, 0.0, 0.0), timepoint=0)
    follow = replace(base, study_date=base.study_date + timedelta(days=120), timepoint=1, change="stable",
                     seed=2001, shift_mm=(9.0, -6.0, 3.0))  # repositioned on the table
    write_study(base, root / "dicom", seed=77)
    write_study(follow, root / "dicom", prior=base, seed=77)
    others = {}
    for n, (pid, centre) in enumerate((("SPB", (72.0, 0.0, 50.0)), ("SPC", (-65.0, 5.0, 40.0))), start=1):
        plan = replace(base, patient_index=n, patient_id=pid, patient_name=f"DEMO^{pid}", seed=3000 + n,
                       lesions=(LesionSpec("lung_nodule_solid", centre, 20.0, "lung"),), shift_mm=(float(n), 0.0, 0.0))
        write_study(plan, root / "dicom", seed=77)
        others[pid] = plan
    store = CaseStore.open(root / "casebook.sqlite", create=True)
    ingest([root / "dicom"], store)
    rep = embed_regions(store)
    assert rep.done == 4 and rep.context_maps == 4 and not rep.failed
    assert "context maps of 4 series" in rep.text()
    again = embed_regions(store)  # resumable: nothing left to do
    assert again.done == 0 and again.context_maps == 0
    by = {}
    for s in store.list_series():
        by.setdefault(s.patient_key, []).append(s)
    a = sorted(by["SPA"], key=lambda s: s.study_date)
    ids = {"A0": a[0].id, "A1": a[1].id, "B": by["SPB"][0].id, "C": by["SPC"][0].id}
    svc = RegionSearchService(store, root / "vectors")
    yield store, svc, {"A0": base, "A1": follow, **others}, ids
    svc.close()
    store.close()


def _box(plan, half_mm: float = 26.0) -> tuple[int, ...]:
    k, j, i = voxel(plan, plan.lesions[0])
    h = half_mm / plan.series[0].pixel_mm
    return (k, k + 1, int(j - h), int(j + h) + 1, int(i - h), int(i + h) + 1)


def test_the_patients_earlier_scan_comes_first_at_the_same_place(library) -> None:
    store, svc, plans, ids = library
    q = svc.query_from_box(ids["A1"], _box(plans["A1"]))
    assert q.context is not None
    off = svc.search(q, filters=SearchFilters(exclude_same_patient=False, exclude_same_study=True), k=3)
    top = off.hits[0]
    assert top.series_id == ids["A0"] and top.same_place, off.hits
    assert top.score >= SAME_PLACE and top.confidence.startswith("same place, this patient;")
    # boxed where the nodule is on the earlier scan (it lay 9 mm / 6 mm elsewhere on the table)
    wk, wj, wi = voxel(plans["A0"], plans["A0"].lesions[0])
    b = top.matched_box
    assert b[0] - 1 <= wk <= b[1] and b[2] <= wj <= b[3] and b[4] <= wi <= b[5], (b, (wk, wj, wi))
    assert abs((b[2] + b[3]) / 2 - wj) * plans["A0"].series[0].pixel_mm <= 8.0
    assert abs((b[4] + b[5]) / 2 - wi) * plans["A0"].series[0].pixel_mm <= 8.0
    # other patients follow by their finding, never as "same place"
    assert [h.rank for h in off.hits] == [1, 2, 3]
    assert all(not h.same_place for h in off.hits[1:]) and {h.series_id for h in off.hits[1:]} == {ids["B"], ids["C"]}


def test_with_the_filter_on_no_scan_of_the_patient_is_shown(library) -> None:
    store, svc, plans, ids = library
    q = svc.query_from_box(ids["A1"], _box(plans["A1"]))
    on = svc.search(q, filters=SearchFilters(exclude_same_patient=True), k=3)
    assert {h.series_id for h in on.hits} == {ids["B"], ids["C"]}
    assert not any(h.same_place for h in on.hits)
    assert "same patient" in on.reason  # 2 of 3: the filter that removed the third is named


def test_a_damaged_map_is_left_out_and_the_search_goes_on(library, caplog: pytest.LogCaptureFixture) -> None:
    store, svc, plans, ids = library
    with store._write() as s:
        s.execute(text("UPDATE context_map SET data = :d WHERE series_id = :i"), {"d": b"not zlib", "i": ids["A0"]})
    svc.map_cache.forget()  # the earlier tests' searches prepared the intact map
    try:
        maps = ContextMapStore(store)
        with caplog.at_level(logging.WARNING, logger="casebook"):
            assert load_context_map(maps, ids["A0"]) is None
            q = svc.query_from_box(ids["A1"], _box(plans["A1"]))
            off = svc.search(q, filters=SearchFilters(exclude_same_patient=False), k=3)
        assert off.hits and not any(h.same_place for h in off.hits)
        assert any(f"series {ids['A0']}" in r.getMessage() and "damaged" in r.getMessage() for r in caplog.records)
        assert "SPA" not in caplog.text and "DEMO^A" not in caplog.text  # no PHI in the log
    finally:
        store_context_map(ContextMapStore(store), ids["A0"], load_stored_volume(store, ids["A0"]))
        svc.map_cache.forget()
    assert load_context_map(ContextMapStore(store), ids["A0"]) is not None
