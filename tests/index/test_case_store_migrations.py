"""Alembic migrations of the case store: from empty, round trips, upgrading a store with data."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from casebook.index.case_store import CaseStore, InstanceRecord, StackRecord
from casebook.index.case_store import migrate
from casebook.index.case_store.models import Base


def schema(path: Path) -> dict[str, set[str]]:
    eng = create_engine(f"sqlite:///{path}")
    try:
        insp = inspect(eng)
        return {t: {c["name"] for c in insp.get_columns(t)} for t in insp.get_table_names()
                if t != "alembic_version" and not t.startswith(("report_fts", "teaching_fts"))}
    finally:
        eng.dispose()


def objects(path: Path) -> set[tuple[str, str]]:
    with sqlite3.connect(path) as con:
        return {(t, n) for t, n in con.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'")}


def stack(key: str) -> StackRecord:
    return StackRecord(key=key, series_uid=key, study_uid="9.8", patient_id="P", study_date="20240102",
                       modality="MR", instances=[InstanceRecord(path=f"/d/{key}/{i}", sop_instance_uid=f"{key}.{i}",
                                                                position=(0.0, 0.0, float(i)),
                                                                orientation=(1, 0, 0, 0, 1, 0)) for i in range(3)])


def test_upgrade_from_empty_matches_the_models(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    migrate.upgrade(path, "head")
    assert migrate.current_revision(path) == migrate.head_revision() == "0010"
    got = schema(path)
    want = {t.name: {c.name for c in t.columns} for t in Base.metadata.sorted_tables}
    assert got == want
    names = {n for _, n in objects(path)}
    assert {"report_fts", "report_ai", "report_ad", "report_au"} <= names


def test_downgrade_upgrade_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    migrate.upgrade(path, "head")
    at_head = objects(path)
    migrate.downgrade(path, "0001")
    assert migrate.current_revision(path) == "0001"
    assert "embedding" not in schema(path) and "is_teaching" not in schema(path)["study"]
    migrate.downgrade(path, "base")
    assert {n for _, n in objects(path)} == {"alembic_version"}
    migrate.upgrade(path, "head")
    assert objects(path) == at_head


def test_store_with_data_survives_downgrade_and_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with CaseStore.open(path) as s:
        sid = s.add_stack(stack("1.1")).series_id
        st = s.list_studies()[0].id
        s.set_report(st, findings="Ring-enhancing lesion in the right frontal lobe", diagnosis="glioblastoma")
        s.add_tag(st, "neuro")
    migrate.downgrade(path, "0001")  # tags go (0002), images and reports stay
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT count(*) FROM instance").fetchone()[0] == 3
        assert con.execute("SELECT count(*) FROM report_fts WHERE report_fts MATCH 'glioblastoma'").fetchone()[0] == 1
    # opening an older store migrates it, after a backup next to it
    with CaseStore.open(path) as s:
        assert s.revision == migrate.head_revision()
        assert s.get_series(sid).slice_count == 3
        assert [h.study_id for h in s.search_text("frontal lesion")] == [st]
        assert s.get_teaching(st).deid_status == "identified"
        s.add_tag(st, "neuro")
        assert s.list_studies()[0].tags == ["neuro"]
    backup = path.with_name("s.sqlite.schema-0001.bak")
    assert backup.exists() and migrate.current_revision(backup) == "0001"


def test_foreign_keys_hold_after_migration(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with CaseStore.open(path) as s:
        s.add_stack(stack("1.1"))
    migrate.downgrade(path, "0001")
    migrate.upgrade(path, "head")
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        assert con.execute("SELECT count(*) FROM series").fetchone()[0] == 1  # batch rebuild kept children


@pytest.mark.parametrize("rev", ["0001"])
def test_open_without_migrate_reports_the_needed_upgrade(tmp_path: Path, rev: str) -> None:
    from casebook.index.errors import StoreError

    path = tmp_path / "s.sqlite"
    migrate.upgrade(path, rev)
    with pytest.raises(StoreError, match="needs migrating"):
        CaseStore.open(path, migrate=False)
    assert migrate.current_revision(path) == rev
