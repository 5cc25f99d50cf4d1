"""Plain data of teaching cases: the case, its key images, filters and quiz scores.

Like :mod:`.records`, these cross the store's boundary instead of ORM objects. The completeness
rule lives here so the CLI, the case panel and the export report all say the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

CERTAINTIES: Sequence[str] = ("", "possible", "probable", "almost certain", "certain")
# the fields a complete case has (RSNA MIRC / Radiopaedia), in the order the panel shows them
TEXT_FIELDS: Sequence[str] = ("title", "history", "findings", "diagnosis", "differential", "discussion")
REQUIRED: Sequence[str] = (*TEXT_FIELDS, "certainty", "systems", "difficulty", "author", "key images")


@dataclass
class KeyImage:
    """A slice of a stored series as the author saw it: window, measurements and markers.

    ``slice_index`` is the image's place in the stored series (its SOP Instance UID); the view it
    was seen in is ``orientation`` at ``view_index``, where the annotations were drawn.

    ``annotations`` are dicts: ``{"kind": "distance"|"ellipse"|"marker"|"box", "p0": [row, col],
    "p1": [row, col], "label": str}`` in image pixels of that slice.
    """

    series_id: int
    slice_index: int
    sop_instance_uid: str = ""
    frame_index: int = -1
    orientation: str = "axial"
    window_center: float = 40.0
    window_width: float = 400.0
    annotations: list[dict[str, Any]] = field(default_factory=list)
    caption: str = ""
    view_index: int | None = None  # the slice of ``orientation`` it was seen in (None: the stored slice)
    id: int | None = None
    position: int = 0
    series_uid: str = ""  # filled on reading
    modality: str = ""


@dataclass
class TeachingCase:
    """A teaching case; ``differential`` and ``systems`` are lists, the rest text."""

    study_id: int
    title: str = ""
    history: str = ""
    findings: str = ""
    diagnosis: str = ""
    differential: list[str] = field(default_factory=list)
    discussion: str = ""
    certainty: str = ""
    systems: list[str] = field(default_factory=list)
    difficulty: str = ""
    author: str = ""
    tags: list[str] = field(default_factory=list)
    collections: list[str] = field(default_factory=list)
    key_images: list[KeyImage] = field(default_factory=list)
    masks: dict[str, list[list[int]]] = field(default_factory=dict)
    excluded: list[str] = field(default_factory=list)
    source: str = "local"
    id: int | None = None
    study_uid: str = ""
    modalities: list[str] = field(default_factory=list)
    created: datetime | None = None
    updated: datetime | None = None

    def missing(self) -> list[str]:
        """The fields still empty: what the completeness indicator names."""
        out = []
        for name in REQUIRED:
            value = self.key_images if name == "key images" else getattr(self, name)
            if not value or (isinstance(value, str) and not value.strip()):
                out.append(name)
        return out

    def completeness(self) -> float:
        """Fraction of :data:`REQUIRED` filled (1.0: ready to publish)."""
        return 1.0 - len(self.missing()) / len(REQUIRED)


@dataclass(frozen=True)
class TeachingFilter:
    """Restrictions of the teaching view and ``teach ls``; empty fields do not restrict."""

    text: str | None = None  # FTS5 over the case fields
    systems: tuple[str, ...] = ()  # any of them
    modalities: tuple[str, ...] = ()  # any of them
    tags: tuple[str, ...] = ()  # all of them
    certainty: str | None = None
    difficulty: str | None = None
    author: str | None = None  # substring, case-insensitive
    collection: str | None = None
    case_ids: tuple[int, ...] = ()


@dataclass
class QuizScore:
    learner: str
    collection: str
    answered: int
    correct: int
    last: datetime | None = None

    @property
    def percent(self) -> float:
        return 100.0 * self.correct / self.answered if self.answered else 0.0
