"""A collection run as a quiz: cases as unknowns, free-text or multiple-choice answers, the reveal,
and the score kept per learner and collection in the case store.

Multiple-choice distractors are the diagnoses of the case's nearest neighbours in the archive
that have another diagnosis: what the image really resembles, so a choice tests reading, not
elimination. Where the archive has too few, other teaching cases' diagnoses fill the list.
"""
from __future__ import annotations

import difflib
import logging
import random
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Callable

from casebook.index.case_store.teaching_records import KeyImage, QuizScore, TeachingCase

from ...errors import CasebookError

log = logging.getLogger(__name__)

STOPWORDS = {"a", "an", "the", "of", "with", "and", "or", "in", "on", "left", "right", "bilateral", "acute",
             "chronic", "type", "grade"}


class QuizError(CasebookError):
    """A quiz cannot be run (the message names the collection or case and why)."""


@dataclass
class Neighbour:
    """A similar case shown at the reveal (internal ids only, never a patient)."""

    series_id: int
    score: float
    diagnosis: str
    case_id: int | None = None


@dataclass
class Question:
    """A case as an unknown: what the learner may see."""

    number: int
    case_id: int
    study_id: int
    history: str
    modalities: list[str]
    key_images: list[KeyImage]
    choices: list[str] = field(default_factory=list)  # empty in free-text mode


@dataclass
class Reveal:
    correct: bool
    answer: str
    case: TeachingCase
    similar: list[Neighbour]


def normalise(text: str) -> str:
    t = unicodedata.normalize("NFKD", text or "").encode("ascii", "ignore").decode().lower()
    return " ".join(re.findall(r"[a-z0-9]+", t))


def _words(text: str) -> set[str]:
    return {w for w in normalise(text).split() if w not in STOPWORDS}


def same_diagnosis(a: str, b: str) -> bool:
    """True when two diagnoses name the same thing (case, accents, word order, small typos)."""
    na, nb = normalise(a), normalise(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    wa, wb = _words(a), _words(b)
    if wa and wb and (wa == wb or (len(wb) >= 1 and wb <= wa and len(wa) - len(wb) <= 1)):
        return True
    return difflib.SequenceMatcher(None, " ".join(sorted(wa)), " ".join(sorted(wb))).ratio() >= 0.85


def is_correct(answer: str, case: TeachingCase) -> bool:
    """A free-text answer is right when it names the diagnosis (or the title, when that is the diagnosis)."""
    return any(same_diagnosis(answer, target) for target in (case.diagnosis, case.title) if target)


NeighbourFn = Callable[[TeachingCase, int], list[Neighbour]]


def search_neighbours(service: Any, store: Any) -> NeighbourFn:
    """Neighbours of a case from a :class:`~..search_service.SearchService` (its key image's
    series, else its first series), excluding the same patient."""
    from ..search_types import SearchFilters

    def find(case: TeachingCase, k: int) -> list[Neighbour]:
        sids = [ki.series_id for ki in case.key_images] or [s.id for s in store.list_series(study_id=case.study_id)]
        for sid in sids:
            try:
                q = service.query_from_series(sid)
                resp = service.search(q, filters=SearchFilters(), k=k)
            except CasebookError as exc:
                log.info("quiz: no neighbours for a series: %s", type(exc).__name__)
                continue
            cases = store.teaching_case_for_series([h.series_id for h in resp.hits])
            return [Neighbour(int(h.series_id), float(h.score), h.info.diagnosis, cases.get(int(h.series_id)))
                    for h in resp.hits]
        return []

    return find


class QuizSession:
    """One learner going through one collection."""

    def __init__(self, store: Any, collection: str, learner: str, *, mode: str = "free", choices: int = 4,
                 neighbours: NeighbourFn | None = None, seed: int | None = None, limit: int | None = None) -> None:
        if mode not in ("free", "choice"):
            raise QuizError(f"quiz mode must be free or choice, not {mode!r}")
        if not learner.strip():
            raise QuizError("a quiz needs the learner's name (scores are kept per learner)")
        self.store, self.collection, self.learner, self.mode = store, collection.strip(), learner.strip(), mode
        self.n_choices = max(2, int(choices))
        self.neighbours = neighbours
        self.rng = random.Random(seed)
        from casebook.index.case_store.teaching_records import TeachingFilter

        self.cases = [c for c in store.list_teaching_cases(TeachingFilter(collection=self.collection))
                      if c.diagnosis.strip()]
        if limit:
            self.cases = self.cases[:limit]
        if not self.cases:
            raise QuizError(f"collection {collection!r} has no teaching case with a diagnosis to quiz on")
        self.index = 0
        self.answers: list[bool] = []
        self._similar: dict[int, list[Neighbour]] = {}

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def finished(self) -> bool:
        return self.index >= len(self.cases)

    def _near(self, case: TeachingCase) -> list[Neighbour]:
        if case.id not in self._similar:
            self._similar[case.id or 0] = self.neighbours(case, 20) if self.neighbours else []
        return self._similar[case.id or 0]

    def distractors(self, case: TeachingCase, n: int) -> list[str]:
        """``n`` other diagnoses: nearest neighbours' first, then other teaching cases'."""
        out: list[str] = []

        def take(d: str) -> None:
            if d and not same_diagnosis(d, case.diagnosis) and not any(same_diagnosis(d, o) for o in out):
                out.append(d.strip())

        for nb in self._near(case):
            if len(out) >= n:
                break
            take(nb.diagnosis)
        if len(out) < n:
            others = [c.diagnosis for c in self.store.list_teaching_cases() if c.id != case.id]
            self.rng.shuffle(others)
            for d in others:
                if len(out) >= n:
                    break
                take(d)
        return out

    def question(self) -> Question:
        """The current case as an unknown (no identifiers, no diagnosis, no report)."""
        if self.finished:
            raise QuizError("the quiz is finished")
        c = self.cases[self.index]
        choices: list[str] = []
        if self.mode == "choice":
            choices = self.distractors(c, self.n_choices - 1) + [c.diagnosis]
            self.rng.shuffle(choices)
        return Question(self.index + 1, c.id or 0, c.study_id, c.history, list(c.modalities), list(c.key_images),
                        choices)

    def answer(self, text: str) -> Reveal:
        """Mark the answer, record it, and reveal the case; moves on to the next question."""
        if self.finished:
            raise QuizError("the quiz is finished")
        c = self.cases[self.index]
        ok = is_correct(text, c)
        self.store.record_quiz_answer(self.learner, self.collection, c.id or 0, mode=self.mode, answer=text,
                                      correct=ok)
        self.answers.append(ok)
        self.index += 1
        return Reveal(ok, text, c, [n for n in self._near(c)][:5])

    def score(self) -> QuizScore:
        """This learner's standing in this collection (the latest answer to each case counts)."""
        got = self.store.quiz_scores(self.learner, self.collection)
        return got[0] if got else QuizScore(self.learner, self.collection, 0, 0)


__all__ = ["Neighbour", "Question", "QuizError", "QuizSession", "Reveal", "is_correct", "normalise",
           "same_diagnosis", "search_neighbours"]
