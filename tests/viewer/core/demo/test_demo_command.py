"""``casebook demo`` end to end in a temporary library, through the real CLI, store and ingest."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from casebook.index.case_store import CaseFilter, CaseStore
from casebook.viewer.cli import main
from casebook.viewer.core.demo.phantom import PhantomOptions, plan_library

ARGS = ["--patients", "3", "--size", "96", "--slices", "16", "--big-slices", "0"]


@pytest.mark.slow
def test_demo_builds_annotated_library_and_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "lib"
    monkeypatch.setenv("CASEBOOK_CONFIG", str(tmp_path / "settings.toml"))
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    assert main(["--library", str(lib), "demo", *ARGS, "--open"]) == 0
    out = capsys.readouterr().out
    assert "DEMO0001" in out  # headless --open lists the library

    plans = plan_library(PhantomOptions(patients=3, size=96, slices=16, big_slices=0))
    with CaseStore.open(lib / "casebook.sqlite", create=False) as store:
        synth = store.list_studies(CaseFilter(tags=("synthetic",)))
        assert len(synth) == len(plans)
        assert {s.patient_id for s in synth} == {p.patient_id for p in plans}
        assert sum(s.series_count for s in synth) == sum(len(p.series) for p in plans)
        for s in synth:
            assert "SYNTHETIC PHANTOM" in s.description
            rep = store.get_report(s.id)
            assert rep is not None and rep.findings.startswith("Synthetic phantom.") and rep.diagnosis
        # follow-ups are linked to their prior, and the report says how the lesion changed
        followed = [p for p in plans if p.timepoint == 1]
        for fp in followed:
            later = next(s for s in synth if s.patient_id == fp.patient_id and s.study_date == fp.study_date)
            assert later.prior_count == 1
            words = {"grew": "increased", "shrank": "decreased", "stable": "unchanged"}[fp.change]
            assert words in store.get_report(later.id).findings
        # the real registry sample files are there too
        samples = store.list_studies(CaseFilter(tags=("sample",)))
        assert len(samples) > 10
        # every phantom series was embedded and the vector index was built on disk
        models = store.list_models()
        assert models and not [sid for sid in store.series_missing_embeddings(models[0].id)
                                if sid in {x.id for st in synth for x in store.list_series(study_id=st.id)}]
        assert any(p.suffix == ".hnsw" for p in (lib / "vectors").iterdir())
        # and its findings were detected and indexed for box queries (CT with CT only)
        from casebook.viewer.core.services.regions import register

        regions, desc = register(store)
        assert not regions.series_missing_regions(desc.id)
        assert "CT" in regions.families(desc.id)
        from casebook.index.vector_index.files import model_file_stem

        assert (lib / "vectors" / f"{model_file_stem(desc.index_key('CT'))}.json").exists()
        before = replace(store.stats(), file_bytes=0, wal_bytes=0)
        n_series = len(store.series_ids_matching())

    # second run: nothing new
    assert main(["--library", str(lib), "demo", *ARGS]) == 0
    capsys.readouterr()
    with CaseStore.open(lib / "casebook.sqlite", create=False) as store:
        assert len(store.series_ids_matching()) == n_series
        # same content (the file may keep a page or two that a claim used and freed: not content)
        assert replace(store.stats(), file_bytes=0, wal_bytes=0) == before
        assert len(store.list_studies(CaseFilter(tags=("synthetic",)))) == len(plans)


def test_demo_progress_names_each_phase_unit() -> None:
    """The bars say what they count: slices, files, series (embedding), vectors (index)."""
    from casebook.viewer.commands.demo import _demo_unit
    from casebook.viewer.core.services.import_pipeline import PHASE_EMBED, PHASE_REGIONS

    assert _demo_unit("phantom slices") == "slices"
    assert _demo_unit("reading DICOM headers") == "files"
    assert _demo_unit(PHASE_EMBED) == "series"
    assert _demo_unit(PHASE_REGIONS) == "series"
    assert _demo_unit("updating the search index") == "vectors"
