"""Editing a study from the window or the CLI: its diagnosis, tags and note (with who set them),
and removing it from the library (store, embeddings, vector indexes; its files only on request).

The study panel and ``casebook study`` both come here, so a label typed in the window and one set
from a script are recorded the same way.
"""
from __future__ import annotations

import getpass
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from casebook.index.case_store import CaseStore, StudySummary
from casebook.index.case_store.report_records import RemovedStudy
from casebook.index.errors import UnknownItemError
from casebook.index.vector_index import VectorIndex

from ...errors import CasebookError

log = logging.getLogger(__name__)


def current_user() -> str:
    """Who is editing (recorded with each label): the login name, or "reader" when unknown."""
    try:
        return getpass.getuser() or "reader"
    except (KeyError, OSError):
        return "reader"


def resolve_study(store: CaseStore, key: str | int) -> StudySummary:
    """A study by id, Study Instance UID or Accession Number (an ambiguous accession is refused)."""
    text = str(key).strip()
    if text.isdigit():
        try:
            return store.get_study(int(text))
        except UnknownItemError:
            pass
    ids = store.study_ids_for(text)
    if len(ids) > 1:
        raise UnknownItemError(f"study {text!r}: the accession number names {len(ids)} studies; use the id "
                               "(`casebook ls --json`)")
    if not ids:
        raise UnknownItemError(f"study {text!r} is not in the library (give its id from `casebook ls`, its "
                               "Study Instance UID or its accession number)")
    return store.get_study(ids[0])


@dataclass
class LabelChanges:
    changed: list[str] = field(default_factory=list)  # "diagnosis", "note", "+tag", "-tag"


def apply_labels(store: CaseStore, study_id: int, *, diagnosis: str | None = None, add_tags: Sequence[str] = (),
                 remove_tags: Sequence[str] = (), note: str | None = None, source: str = "reader",
                 actor: str | None = None) -> LabelChanges:
    """Set what is given (None leaves it; "" clears) and record who set it."""
    actor = actor or current_user()
    out = LabelChanges()
    if diagnosis is not None and store.set_diagnosis(study_id, diagnosis, source=source, actor=actor):
        out.changed.append("diagnosis")
    for t in remove_tags:
        if store.untag_study(study_id, t, source=source, actor=actor):
            out.changed.append(f"-{t.strip()}")
    for t in add_tags:
        if store.tag_study(study_id, t, source=source, actor=actor):
            out.changed.append(f"+{t.strip()}")
    if note is not None and store.set_note(study_id, note, source=source, actor=actor):
        out.changed.append("note")
    return out


@dataclass
class Removal:
    removed: RemovedStudy
    files_deleted: int = 0
    file_errors: list[tuple[str, str]] = field(default_factory=list)
    indexes_updated: list[str] = field(default_factory=list)


def remove_study(store: CaseStore, study_id: int, index_dir: Path, *, delete_files: bool = False) -> Removal:
    """Delete a study from the store (one transaction), take its vectors out of every model's index,
    and only with ``delete_files`` remove its image files from disk."""
    removed = store.delete_study(study_id)
    out = Removal(removed)
    for rec in store.list_models():
        try:
            index = VectorIndex.open(index_dir, rec.key, rec.dim, store.embedding_source(rec.id))
        except CasebookError as exc:  # the index is a cache: the next open rebuilds it from the store
            log.warning("study %d removed; the %s index will catch up on next open: %s", study_id, rec.key, exc)
            continue
        try:
            out.indexes_updated.append(rec.key)
        finally:
            index.close()
    if delete_files:
        for f in removed.files:
            try:
                os.remove(f)
                out.files_deleted += 1
            except FileNotFoundError:
                continue
            except OSError as exc:
                out.file_errors.append((f, exc.strerror or str(exc)))
        store.forget_files(removed.files)
    return out
