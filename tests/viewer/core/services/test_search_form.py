"""A filter form's text into search filters, and the small LRU cache the search GUI keeps."""
from __future__ import annotations

from datetime import date

import pytest

from casebook.common.errors import CasebookError
from casebook.viewer.core.lru import LRUCache
from casebook.viewer.core.services.search import SearchFilters, SearchForm


def test_empty_and_any_fields_do_not_restrict() -> None:
    f = SearchForm(modality="any", sex="any", body_part="  ", tags=" , ", diagnosis="").to_filters()
    assert f == SearchFilters()
    assert not f.restricts()


def test_typed_fields_become_filters() -> None:
    form = SearchForm(modality="CT", body_part="HEAD", sex="F", age_min=30, age_max=60,
                      date_from="2020-01-02", date_to=" 2021-03-04 ", tags="teaching, neuro,,",
                      diagnosis=" glioma ", text="  mass effect ", top_k=7, exclude_same_patient=False)
    f = form.to_filters(exclude_same_study=False)
    assert f == SearchFilters(modalities=("CT",), body_parts=("HEAD",), sex="F", age_min=30, age_max=60,
                              date_from=date(2020, 1, 2), date_to=date(2021, 3, 4), tags=("teaching", "neuro"),
                              diagnosis="glioma", exclude_same_patient=False, exclude_same_study=False)
    assert form.query_text == "mass effect" and SearchForm(text="  ").query_text is None


def test_a_field_typed_wrong_is_named() -> None:
    with pytest.raises(CasebookError, match="date from 'yesterday' is not a date"):
        SearchForm(date_from="yesterday").to_filters()
    with pytest.raises(CasebookError, match="date range"):
        SearchForm(date_from="2022-01-01", date_to="2021-01-01").to_filters()
    with pytest.raises(CasebookError, match="age range"):
        SearchForm(age_min=60, age_max=20).to_filters()


def test_lru_keeps_the_most_recently_used() -> None:
    c: LRUCache[int, str] = LRUCache(2)
    c.put(1, "a")
    c.put(2, "b")
    assert c.get(1) == "a"  # 1 is now the most recent
    c.put(3, "c")
    assert 2 not in c and c.keys() == [1, 3] and len(c) == 2
    assert c.pop(1) == "a" and c.get(1) is None
    with pytest.raises(ValueError):
        LRUCache(0)
