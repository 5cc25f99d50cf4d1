"""Region-level search finds the same *finding* (issue 11/18): a real phantom library on disk,
real ingest, real SQLite, real hnswlib region index; a box on a lesion returns the other patient
with the same lesion kind first, with its matched box on that lesion."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from casebook.index.case_store import CaseStore
from casebook.index.case_store.context_maps import ContextMapStore
from casebook.index.errors import QueryError
from casebook.viewer.core.demo.phantom import LesionSpec, PhantomOptions, lesion_voxel, plan_library, write_study
from casebook.viewer.core.services.anatomy import IMAGE_RULE
from casebook.viewer.core.services.ingest import ingest
from casebook.viewer.core.services.region_search import (SIZE_PENALTY, TYPICAL_FREE, RegionSearchService, finding_order,
                                                          size_penalty, typical_penalty)
from casebook.viewer.core.services.regions import embed_regions, register
from casebook.viewer.core.services.search_types import SearchFilters

LESIONS = {  # patient -> (kind, centre mm, diameter mm)
    "A": ("lung_nodule_solid", (-70.0, -10.0, 45.0), 20.0),
    "B": ("lung_nodule_solid", (75.0, 5.0, 30.0), 16.0),
    "C": ("bone_sclerotic", (0.0, 68.0, 30.0), 18.0),
    "D": ("bone_sclerotic", (0.0, 68.0, -25.0), 15.0),
}


def voxel(plan, les: LesionSpec) -> tuple[int, float, float]:
    k, j, i = lesion_voxel(plan, les.centre)
    return int(round(k)), j, i


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("regions")
    template = plan_library(PhantomOptions(patients=1, size=96, slices=28, big_slices=0, seed=5))[0]
    plans = {}
    for n, (name, (kind, centre, diam)) in enumerate(LESIONS.items()):
        plan = replace(template, patient_index=n, patient_id=f"REG{name}", patient_name=f"DEMO^{name}",
                       lesions=(LesionSpec(kind, centre, diam, "test"),), series=template.series[:1],
                       seed=1000 + n, shift_mm=(float(n), -float(n), 0.0))
        write_study(plan, root / "dicom", seed=77)
        plans[name] = plan
    store = CaseStore.open(root / "casebook.sqlite", create=True)
    ingest([root / "dicom"], store)
    rep = embed_regions(store)
    assert rep.done == 4 and not rep.failed
    ids = {s.patient_key: s.id for s in store.list_series()}
    svc = RegionSearchService(store, root / "vectors")
    yield store, svc, plans, {name: ids[f"REG{name}"] for name in LESIONS}
    svc.close()
    store.close()


@pytest.mark.parametrize("query, want", [("A", "B"), ("C", "D")])
def test_box_on_a_lesion_returns_the_same_kind_first(library, query: str, want: str) -> None:
    store, svc, plans, ids = library
    plan = plans[query]
    k, j, i = voxel(plan, plan.lesions[0])
    half = plan.lesions[0].diameter_mm * 0.65 / plan.series[0].pixel_mm + 2
    box = (k, k + 1, int(j - half), int(j + half) + 1, int(i - half), int(i + half) + 1)
    resp = svc.search(svc.query_from_box(ids[query], box), filters=SearchFilters(), k=10)
    assert resp.query is not None and resp.query.family == "CT"
    assert [h.series_id for h in resp.hits][0] == ids[want], resp.hits
    top = resp.hits[0]
    # "why similar": the matched region is the other patient's lesion, not some other blob
    wk, wj, wi = voxel(plans[want], plans[want].lesions[0])
    b = top.matched_box
    assert b[0] - 1 <= wk <= b[1] and b[2] - 1 <= wj <= b[3] + 1 and b[4] - 1 <= wi <= b[5] + 1, (b, (wk, wj, wi))
    assert top.score > resp.hits[-1].score if len(resp.hits) > 1 else True
    assert top.percentile > 90.0
    # fewer than k analogues exist: the response says which filter removed the rest
    assert len(resp.hits) == 3 and "same patient" in resp.reason
    # every hit's matched region is within 2x of the box's finding in diameter, or pays for it in score,
    # and one that most other patients also have (anatomy, not a finding) pays for its typicality
    qd = resp.query.regions[0].diameter_mm
    typ = svc.typicality("CT")
    for h in resp.hits:
        raw = float(resp.query.vectors[0] @ region_vector(svc, h))
        t = float(typ.of([region_label(svc, h)])[0])
        assert h.score == pytest.approx(raw - size_penalty(qd, h.matched_diameter_mm) - typical_penalty(t), abs=2e-3)


def region_label(svc: RegionSearchService, hit) -> int:
    rows, _ = svc.regions.regions_of_series(svc.descriptor.id, hit.series_id)
    return next(r.label for r in rows if r.box == hit.matched_box)


def region_vector(svc: RegionSearchService, hit) -> np.ndarray:
    rows, vecs = svc.regions.regions_of_series(svc.descriptor.id, hit.series_id)
    return vecs[next(n for n, r in enumerate(rows) if r.box == hit.matched_box)]


def test_typical_penalty_is_free_below_its_threshold_and_linear_above() -> None:
    assert typical_penalty(0.2) == 0.0 and typical_penalty(TYPICAL_FREE) == 0.0
    assert typical_penalty(1.0) == pytest.approx(typical_penalty(TYPICAL_FREE + 0.04) * 2)
    assert typical_penalty(1.0) > 0.0


def test_findings_are_least_typical_first_and_near_ties_go_to_the_more_salient() -> None:
    """A lesion is often about as common across patients as a vessel beside it (typicality a few
    hundredths apart): the one standing out more from its context comes first. A clearly rarer
    finding still leads, however faint."""
    typ = [0.95, 0.953, 0.80, 0.99]
    sal = [4.0, 300.0, 3.0, 500.0]
    assert finding_order(typ, sal).tolist() == [2, 1, 0, 3]
    assert finding_order(typ, [1.0] * 4).tolist() == [2, 0, 1, 3]  # equal saliency: typicality alone


def test_size_penalty_is_free_within_twice_the_diameter_and_grows_per_doubling_beyond() -> None:
    assert size_penalty(16.0, 16.0) == 0.0 and size_penalty(16.0, 31.9) == 0.0 and size_penalty(16.0, 8.1) == 0.0
    assert size_penalty(16.0, 4.0) == pytest.approx(SIZE_PENALTY) == pytest.approx(size_penalty(16.0, 64.0))
    assert size_penalty(16.0, 2.0) == pytest.approx(2 * SIZE_PENALTY)
    assert size_penalty(0.0, 5.0) == 0.0  # an unknown size costs nothing


def test_slice_without_a_finding_is_refused_not_substituted(library) -> None:
    store, svc, plans, ids = library
    regions, desc = register(store)
    rows, _ = regions.regions_of_series(desc.id, ids["A"])
    covered = {k for r in rows for k in range(r.box[0], r.box[1])}
    free = [k for k in range(plans["A"].series[0].slices) if k not in covered]
    if free:
        with pytest.raises(QueryError, match="no finding candidate"):
            svc.query_from_slice(ids["A"], free[0])
    k, _, _ = voxel(plans["A"], plans["A"].lesions[0])
    q = svc.query_from_slice(ids["A"], k)
    assert all(r.box[0] <= k < r.box[1] for r in q.regions)


@pytest.mark.parametrize("query, want", [("A", "B"), ("C", "D")])
def test_series_query_ranks_by_its_findings_not_its_anatomy(library, query: str, want: str) -> None:
    """Findings-aware series search: every phantom shares the same body, only the lesion differs; the
    series is described by its least typical regions, so its lesion leads the query and the other
    patient with the same lesion kind comes first."""
    store, svc, plans, ids = library
    q = svc.query_from_series(ids[query])
    assert q.weights is not None and len(q.vectors) == 3
    k, j, i = voxel(plans[query], plans[query].lesions[0])
    near = [np.hypot(r.centre[1] - j, r.centre[2] - i) < 4 and abs(r.centre[0] - k) < 4 for r in q.regions]
    assert any(near), [(r.centre, r.diameter_mm) for r in q.regions]
    typ = svc.typicality("CT")
    rows, _ = svc.regions.regions_of_series(svc.descriptor.id, ids[query])
    all_typ = typ.of([r.label for r in rows])
    assert typ.of([r.label for r in q.regions]).max() <= np.median(all_typ)  # findings are the rare regions
    resp = svc.search(q, filters=SearchFilters(), k=10)
    assert resp.hits[0].series_id == ids[want], [(h.series_id, h.score) for h in resp.hits]
    assert resp.hits[0].probability is None  # the label fit is for best-match scores, not this scale
    # the typicality is cached beside the index and read back unchanged
    svc2 = RegionSearchService(store, svc.index_dir)
    try:
        assert np.allclose(svc2.typicality("CT").of([r.label for r in rows]), all_typ)
    finally:
        svc2.close()


def test_a_series_without_pixel_spacing_gets_no_findings_and_a_box_on_it_is_refused(tmp_path: Path) -> None:
    """A file with no PixelSpacing (a scanned page, a dose-report screen) has no mm scale: its text
    and icons must not be stored as findings and matched against lesions."""
    import pydicom

    plan = plan_library(PhantomOptions(patients=1, size=64, slices=12, big_slices=0, seed=9))[0]
    plan = replace(plan, series=plan.series[:1])
    write_study(plan, tmp_path / "dicom", seed=3)
    for f in (tmp_path / "dicom").rglob("*"):
        if f.is_file() and f.suffix != ".json":
            try:
                ds = pydicom.dcmread(f)
            except Exception:  # noqa: BLE001 - the manifest and other non-DICOM files
                continue
            for tag in ("PixelSpacing", "ImagerPixelSpacing"):
                if tag in ds:
                    delattr(ds, tag)
            ds.save_as(f)
    store = CaseStore.open(tmp_path / "casebook.sqlite", create=True)
    try:
        ingest([tmp_path / "dicom"], store)
        rep = embed_regions(store)
        assert rep.unscaled == 1 and rep.regions == 0 and "without pixel spacing" in rep.text()
        sid = store.list_series()[0].id
        regions, desc = register(store)
        assert regions.regions_of_series(desc.id, sid)[0] == []
        assert regions.series_missing_regions(desc.id) == []  # done (with none), not retried forever
        svc = RegionSearchService(store, tmp_path / "vectors")
        try:
            with pytest.raises(QueryError, match="no pixel spacing"):
                svc.query_from_box(sid, (6, 7, 20, 40, 20, 40))
        finally:
            svc.close()
    finally:
        store.close()


def test_a_box_matches_findings_in_the_same_anatomy_unless_asked(tmp_path: Path, sample_file) -> None:
    """Three patients with the same solid lung nodule; one study's headers say it is a head CT
    (Body Part Examined HEAD, "CT HEAD"). A box on a chest nodule leaves the head series out and
    says so; with "any anatomy" it is back. A series whose headers name no anatomy is read from its
    image: the phantom chest shows its lungs and is kept; a real head CT without Body Part Examined
    (CQ500, pydicom-data) shows its skull, but not once its file loses Pixel Spacing (no scale) nor
    as a localizer (a projection); the headers, where they name a place, win."""
    import shutil

    import pydicom

    template = plan_library(PhantomOptions(patients=1, size=80, slices=24, big_slices=0, seed=5))[0]
    plans = {}
    for n, (name, centre, diam, where) in enumerate([("A", (-70.0, -10.0, 45.0), 20.0, None),
                                                      ("B", (75.0, 5.0, 30.0), 18.0, "HEAD"),
                                                      ("C", (-72.0, -5.0, 40.0), 19.0, "")]):
        plan = replace(template, patient_index=n, patient_id=f"ANAT{name}", patient_name=f"DEMO^{name}",
                       lesions=(LesionSpec("lung_nodule_solid", centre, diam, "test"),), series=template.series[:1],
                       seed=2000 + n, shift_mm=(float(n), -float(n), 0.0))
        out = tmp_path / "dicom" / name
        write_study(plan, out, seed=78)
        plans[name] = plan
        if where is None:
            continue
        for f in out.rglob("*"):
            try:
                ds = pydicom.dcmread(f)
            except Exception:  # noqa: BLE001 - the manifest and folders
                continue
            ds.BodyPartExamined = where
            ds.SeriesDescription = f"CT {where}" if where else "5/5mm Plain"
            ds.StudyDescription = ""
            ds.save_as(f)
    head = sample_file("693_J2KR.dcm")
    assert "BodyPartExamined" not in pydicom.dcmread(head, stop_before_pixels=True)
    (tmp_path / "dicom" / "head").mkdir()
    shutil.copy(head, tmp_path / "dicom" / "head" / head.name)
    # the same head, another patient, its file stripped of Pixel Spacing: no scale, no anatomy read
    ds = pydicom.dcmread(head)
    del ds.PixelSpacing
    ds.PatientID, ds.StudyInstanceUID = "NOSCALE", pydicom.uid.generate_uid()
    ds.SeriesInstanceUID, ds.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    (tmp_path / "dicom" / "noscale").mkdir()
    ds.save_as(tmp_path / "dicom" / "noscale" / "head.dcm")
    # and once more as a localizer (a projection): its body layout is not a cross-section's
    scout = pydicom.dcmread(head)
    scout.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    scout.PatientID, scout.StudyInstanceUID = "SCOUT", pydicom.uid.generate_uid()
    scout.SeriesInstanceUID, scout.SOPInstanceUID = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    scout.file_meta.MediaStorageSOPInstanceUID = scout.SOPInstanceUID
    (tmp_path / "dicom" / "scout").mkdir()
    scout.save_as(tmp_path / "dicom" / "scout" / "head.dcm")
    store = CaseStore.open(tmp_path / "casebook.sqlite", create=True)
    svc = RegionSearchService(store, tmp_path / "vectors")
    try:
        ingest([tmp_path / "dicom"], store)
        assert embed_regions(store).done == 6
        ids = {s.patient_key: s.id for s in store.list_series()}
        noscale = store.find_series(ds.SeriesInstanceUID).id
        localizer = store.find_series(scout.SeriesInstanceUID).id
        ids["HEAD"] = next(v for key, v in ids.items() if not key.startswith("ANAT") and v not in (noscale, localizer))
        # even a map that plainly shows a skull is not read when the files give no scale
        maps = ContextMapStore(store)
        got = maps.get(ids["HEAD"])
        maps.put(noscale, got.version, got.family, got.shape, got.scale, got.offset, got.pixels)
        assert svc.anatomy_of([ids["ANATA"], ids["ANATB"], ids["ANATC"], ids["HEAD"], noscale, localizer]) == {
            ids["ANATA"]: frozenset({"chest", "abdomen"}), ids["ANATB"]: frozenset({"head"}),
            ids["ANATC"]: frozenset({"chest", "abdomen", "pelvis"}), ids["HEAD"]: frozenset({"head"}),
            noscale: frozenset(), localizer: frozenset()}
        k, j, i = voxel(plans["A"], plans["A"].lesions[0])
        half = plans["A"].lesions[0].diameter_mm * 0.65 / plans["A"].series[0].pixel_mm + 2
        q = svc.query_from_box(ids["ANATA"], (k, k + 1, int(j - half), int(j + half) + 1, int(i - half),
                                              int(i + half) + 1))
        same = svc.search(q, filters=SearchFilters(), k=5)
        # its image shows a chest; the unread localizer is unknown anatomy, so it stays
        assert sorted(h.series_id for h in same.hits) == sorted([ids["ANATC"], localizer])
        # the header's head CT and the skull of the real one
        assert same.removed.get("the anatomy filter (not chest + abdomen)") == 2, same.removed
        assert "anatomy filter" in same.reason
        anyplace = svc.search(q, filters=SearchFilters(same_anatomy=False), k=5)
        assert sorted(h.series_id for h in anyplace.hits) == sorted([ids["ANATB"], ids["ANATC"], ids["HEAD"],
                                                                      localizer])
        assert not any("anatomy" in name for name in anyplace.removed)
        # a findings (series) query is held to the same anatomy
        fs = svc.search(svc.query_from_series(ids["ANATA"]), filters=SearchFilters(), k=5)
        assert ids["ANATB"] not in [h.series_id for h in fs.hits]
        # the image was read once, at embed time, and stored with the map
        assert maps.anatomy([ids["HEAD"], ids["ANATC"], noscale], IMAGE_RULE) == {
            ids["HEAD"]: "head", ids["ANATC"]: "chest,abdomen,pelvis"}  # the swapped-in map was stored unread
        maps.set_anatomy({ids["ANATC"]: "head"}, IMAGE_RULE)
        fresh = RegionSearchService(store, tmp_path / "vectors")
        try:  # a new session takes the stored reading, not the pixels
            assert fresh.anatomy_of([ids["ANATC"]]) == {ids["ANATC"]: frozenset({"head"})}
        finally:
            fresh.close()
        maps.set_anatomy({ids["ANATC"]: "head"}, "0")  # a reading by an older rule is read again
        again = embed_regions(store)
        assert again.anatomy_read == 2 and "anatomy read from the maps of 2 older series" in again.text()
        assert maps.anatomy([ids["ANATC"], noscale], IMAGE_RULE) == {ids["ANATC"]: "chest,abdomen,pelvis",
                                                                     noscale: "head"}
    finally:
        svc.close()
        store.close()


@pytest.mark.parametrize("words, want", [
    (("CHEST", "CT CHEST ABDOMEN AX", ""), {"chest", "abdomen"}),
    (("ABDOMEN", "marked lesion<MPR Collection>", "abdomen^liver"), {"abdomen"}),
    (("", "BRAIN SEQ  4.8  H31s", "CT BRAIN WO IVCON"), {"head"}),
    (("CHESTABDPELVIS", "", ""), {"chest", "abdomen", "pelvis"}),
    (("", "T2 TSE SAG", "L-SPINE"), {"spine"}),
    (("", "5/5mm Plain", ""), set()),
    (("WHOLE BODY", "", ""), {"head", "neck", "chest", "abdomen", "pelvis", "spine", "upper limb", "lower limb"}),
])
def test_anatomy_from_header_words(words, want) -> None:
    from casebook.viewer.core.services.anatomy import compatible, regions_of

    assert regions_of(*words) == frozenset(want)
    if want:
        assert compatible(regions_of(*words), frozenset())  # unknown never excludes


@pytest.mark.parametrize("slabs, want", [
    ([(19000.0, 200.0, 0.0, 0.53)] * 3, {"head"}),  # a skull rings the body
    ([(59000.0, 330.0, 0.20, 0.0)] * 6 + [(60000.0, 330.0, 0.01, 0.0)] * 4, {"chest", "abdomen", "pelvis"}),
    ([(59000.0, 440.0, 0.02, 0.0)], {"abdomen", "pelvis"}),  # a trunk without lungs
    ([(70000.0, 452.0, 0.09, 0.0)], {"chest", "abdomen"}),  # lung bases over the liver (a coronal abdomen slice)
    ([(19000.0, 150.0, 0.0, 0.02)] * 2, set()),  # a neck or a limb: not plain, unknown
    ([(84000.0, 648.0, 0.0, 0.0)] * 2, set()),  # a dose report stored as CT (dcm_qa_ct): no body
    ([(59000.0, 330.0, 0.20, 0.0)] + [(19000.0, 150.0, 0.0, 0.02)] * 5, set()),  # one chest slab of six
    ([], set()),  # no body (an MR, a blank frame)
])
def test_anatomy_from_the_image_names_only_what_is_plain(slabs, want) -> None:
    from casebook.inference.regions.context import SlabLayout
    from casebook.viewer.core.services.anatomy import regions_of_image

    assert regions_of_image([SlabLayout(*s) for s in slabs]) == frozenset(want)


def test_anatomy_compatibility_is_symmetric_and_keeps_the_spine_with_the_trunk() -> None:
    from casebook.viewer.core.services.anatomy import REGIONS, compatible

    for a in REGIONS:
        for b in REGIONS:
            assert compatible({a}, {b}) == compatible({b}, {a}), (a, b)
    assert compatible({"head"}, {"head", "neck"}) and not compatible({"head"}, {"abdomen"})
    assert all(compatible({"spine"}, {r}) for r in ("neck", "chest", "abdomen", "pelvis"))
    assert not compatible({"chest"}, {"lower limb"})


def test_library_warm_up_opens_each_family_and_stops_when_a_study_opens(library) -> None:
    store, svc, plans, ids = library
    fresh = RegionSearchService(store, svc.index_dir)
    try:
        assert fresh.warm_up_families(lambda: False) == [] and not fresh._indexes  # a study opened: stop
        assert fresh.warm_up_families() == ["CT"]
        assert "CT" in fresh._indexes and "CT" in fresh._typical and "CT" in fresh._calibration
    finally:
        fresh.close()


def test_a_library_embedded_before_an_upgrade_says_so_and_embed_brings_it_back(tmp_path: Path) -> None:
    """A library whose findings an older region descriptor computed (the previous release) is not
    searched with the new one: the refusal names the old version, and `casebook embed` recomputes."""
    import sqlite3

    from casebook.inference.regions import REGION_CARD

    plan = plan_library(PhantomOptions(patients=1, size=64, slices=16, big_slices=0, seed=9))[0]
    plan = replace(plan, series=plan.series[:1])
    write_study(plan, tmp_path / "dicom", seed=3)
    db = tmp_path / "casebook.sqlite"
    store = CaseStore.open(db, create=True)
    ingest([tmp_path / "dicom"], store)
    assert embed_regions(store).done == 1
    store.close()
    with sqlite3.connect(db) as con:  # what the previous release left: the same regions under its version
        con.execute("UPDATE region_descriptor SET version = ? WHERE name = ?", ("2", REGION_CARD.name))
    store = CaseStore.open(db)
    svc = RegionSearchService(store, tmp_path / "vectors")
    try:
        sid = store.list_series()[0].id
        with pytest.raises(QueryError, match=r"casebook-region@2 \(1 series\).*casebook embed"):
            svc.query_from_series(sid)
        rep = embed_regions(store)
        assert rep.done == 1 and not rep.failed
        assert svc.query_from_series(sid).regions
    finally:
        svc.close()
        store.close()


def test_embed_removes_an_older_descriptor_once_the_new_one_covers_every_series(tmp_path: Path, monkeypatch) -> None:
    """After an upgrade the old version's regions and index files are dead weight, but only once
    every series has the new ones: until then a query on a series not yet redone names the old
    version (the test above), so the old rows stay while any series is left."""
    import sqlite3

    from casebook.inference.regions import REGION_CARD
    from casebook.index.vector_index.files import model_file_stem
    from casebook.viewer.core.services import regions as region_services
    from casebook.viewer.core.services.regions import embed_and_index_regions, open_region_index

    plan = plan_library(PhantomOptions(patients=1, size=64, slices=16, big_slices=0, seed=9))[0]
    plan = replace(plan, series=plan.series[:2])
    write_study(plan, tmp_path / "dicom", seed=3)
    db, vectors = tmp_path / "casebook.sqlite", tmp_path / "vectors"
    store = CaseStore.open(db, create=True)
    ingest([tmp_path / "dicom"], store)
    assert len(store.list_series()) == 2
    assert embed_regions(store).done == 2
    store.close()
    with sqlite3.connect(db) as con:  # the previous release's findings, under its version
        con.execute("UPDATE region_descriptor SET version = ? WHERE name = ?", ("2", REGION_CARD.name))
        old_regions = con.execute("SELECT count(*) FROM region").fetchone()[0]
    assert old_regions > 0
    store = CaseStore.open(db)
    try:
        regions, _ = register(store)
        old = regions.get_descriptor(f"{REGION_CARD.name}@2")
        fams = sorted(regions.families(old.id))
        for fam in fams:  # the old release's index files on disk
            open_region_index(vectors, regions, old, fam).close()
        old_files = [p for fam in fams for p in vectors.glob(f"{model_file_stem(old.index_key(fam))}.*")]
        assert old_files

        rep = embed_and_index_regions(store, vectors, limit=1)  # one series still to do: keep the old
        assert rep.done == 1 and rep.remaining == 1 and not rep.pruned
        assert all(p.exists() for p in old_files)
        assert regions.other_versions(REGION_CARD.name, REGION_CARD.version) == {f"{REGION_CARD.name}@2": 2}

        # two small series free a few per cent of the file; an archive's old version is a large share
        monkeypatch.setattr(region_services, "COMPACT_FREE_FRACTION", 0.02)
        rep = embed_and_index_regions(store, vectors)
        assert rep.done == 1 and rep.remaining == 0
        assert rep.pruned == {f"{REGION_CARD.name}@2": old_regions}
        assert f"{old_regions} regions of {REGION_CARD.name}@2 removed" in rep.text()
        assert not any(p.exists() for p in old_files)
        assert regions.other_versions(REGION_CARD.name, REGION_CARD.version) == {}
        free, total = store.free_space()  # the freed pages were given back: this small library's were
        assert rep.compacted > 0 and free < 0.02 * total  # above the (lowered) threshold
        assert "MiB smaller" in rep.text()
        cur = regions.get_descriptor(REGION_CARD.key)
        assert sum(regions.families(cur.id).values()) > 0  # the new findings are all there and indexed
        assert sum(rep.indexed.values()) == sum(regions.families(cur.id).values())
        assert any(vectors.glob(f"{model_file_stem(cur.index_key(fams[0]))}.*"))
    finally:
        store.close()
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM region_descriptor WHERE version = '2'").fetchone()[0] == 0
        assert con.execute("SELECT count(*) FROM region_set WHERE descriptor_id NOT IN "
                           "(SELECT id FROM region_descriptor)").fetchone()[0] == 0
