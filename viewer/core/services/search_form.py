"""A search filter form's values (as a reader typed them) turned into :class:`SearchFilters`.

The GUI panel only reads its widgets into a :class:`SearchForm`; the parsing and checking of what
was typed (dates, "any", empty fields, comma-separated tags) happens here, headless and tested.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from casebook.index.errors import QueryError

from .search_types import SearchFilters


def parse_form_date(text: str | None, name: str) -> date | None:
    """An ISO date typed in a form field; empty means "no bound"."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise QueryError(f"{name} {text!r} is not a date (YYYY-MM-DD)") from None


def split_tags(text: str | None) -> tuple[str, ...]:
    """Comma-separated tags, blanks dropped."""
    return tuple(t.strip() for t in (text or "").split(",") if t.strip())


@dataclass(frozen=True)
class SearchForm:
    """What a filter form holds, as typed: ``None``/empty means "any"."""

    modality: str | None = None
    body_part: str | None = None
    sex: str | None = None
    age_min: float | None = None
    age_max: float | None = None
    date_from: str | None = None  # YYYY-MM-DD as typed
    date_to: str | None = None
    tags: str = ""  # comma-separated
    diagnosis: str | None = None
    text: str | None = None  # words in reports, fused with the image query
    top_k: int = 12
    exclude_same_patient: bool = True
    same_anatomy: bool = True

    def to_filters(self, *, exclude_same_study: bool = True) -> SearchFilters:
        """The filters the form asks for; raises :class:`QueryError` naming a field typed wrong."""
        def opt(v: str | None) -> str | None:
            v = (v or "").strip()
            return None if not v or v.lower() == "any" else v

        modality, body_part, sex = opt(self.modality), opt(self.body_part), opt(self.sex)
        filters = SearchFilters(
            modalities=(modality,) if modality else (), body_parts=(body_part,) if body_part else (),
            sex=sex, age_min=self.age_min or None, age_max=self.age_max or None,
            date_from=parse_form_date(self.date_from, "date from"), date_to=parse_form_date(self.date_to, "date to"),
            tags=split_tags(self.tags), diagnosis=opt(self.diagnosis),
            exclude_same_patient=self.exclude_same_patient, exclude_same_study=exclude_same_study,
            same_anatomy=self.same_anatomy)
        filters.validate()
        return filters

    @property
    def query_text(self) -> str | None:
        """The report words to search with, or None."""
        return (self.text or "").strip() or None
