"""The diagnosis vocabulary: findings and the phrases that name them.

"pulmonary nodule", "lung nodule" and "nodule, RUL" must count as one finding for the search
filter, training labels and calibration, so every report's diagnosis is mapped to a term when it
is written (``report.finding``) and again whenever the vocabulary is edited. Matching is on whole
words of the normalised text; the longest phrase wins, then the one named first in the text.
"""
from __future__ import annotations

import re
from typing import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from ..errors import QueryError, UnknownItemError
from .models import Report, VocabularySynonym, VocabularyTerm
from .report_records import VocabularyEntry


def normalise_phrase(text_: str) -> str:
    """Lower case, words only, single spaces: the form phrases are stored and matched in."""
    return " ".join(re.findall(r"[0-9a-zà-ÿ]+", text_.lower()))


class Matcher:
    """Maps free text (and codes) to vocabulary terms; built once per batch of reports."""

    def __init__(self, phrases: dict[str, str], codes: dict[str, str]) -> None:
        self.phrases, self.codes = phrases, codes
        self._by_len = sorted(phrases, key=lambda p: (-len(p.split()), p))

    def term_for(self, text_: str, code: str = "") -> str:
        if code and code.lower() in self.codes:
            return self.codes[code.lower()]
        norm = f" {normalise_phrase(text_)} "
        if not norm.strip():
            return ""
        best: tuple[int, int, str] | None = None
        for p in self._by_len:
            at = norm.find(f" {p} ")
            if at < 0:
                continue
            key = (-len(p.split()), at, self.phrases[p])
            if best is None or key < best:
                best = key
        return best[2] if best else ""

    def terms_in(self, text_: str, code: str = "") -> list[str]:
        """Every term ``text_`` names, in the order named ("solid nodule; renal cyst" is two).

        Longest phrases claim their words first; a shorter phrase inside a claimed span does not
        count again ("cavitating pulmonary nodule" is not also "pulmonary nodule")."""
        words = normalise_phrase(text_).split()
        claimed = [False] * len(words)
        found: list[tuple[int, str]] = []
        for p in self._by_len:
            pw = p.split()
            n = len(pw)
            for at in range(len(words) - n + 1):
                if words[at:at + n] == pw and not any(claimed[at:at + n]):
                    claimed[at:at + n] = [True] * n
                    found.append((at, self.phrases[p]))
        out = [self.codes[code.lower()]] if code and code.lower() in self.codes else []
        for _, term in sorted(found):
            if term not in out:
                out.append(term)
        return out


class VocabularyMixin:
    """Reading, editing and applying the diagnosis vocabulary.

    Mixed into :class:`~.store.CaseStore`; sessions come from :class:`~.sessions.StoreSessions`.
    """

    @staticmethod
    def _matcher(s: Session) -> Matcher:
        rows = s.execute(select(VocabularySynonym.phrase, VocabularyTerm.name, VocabularyTerm.code)
                         .join(VocabularyTerm, VocabularyTerm.id == VocabularySynonym.term_id)).all()
        codes = {c.lower(): n for _, n, c in rows if c}
        return Matcher({p: n for p, n, _ in rows}, codes)

    def vocabulary(self) -> list[VocabularyEntry]:
        with self._read() as s:
            terms = s.scalars(select(VocabularyTerm).order_by(VocabularyTerm.name)).all()
            syn: dict[int, list[str]] = {}
            for tid, p in s.execute(select(VocabularySynonym.term_id, VocabularySynonym.phrase)
                                    .order_by(VocabularySynonym.phrase)):
                syn.setdefault(tid, []).append(p)
        return [VocabularyEntry(t.name, t.code, syn.get(t.id, [])) for t in terms]

    def map_finding(self, text_: str, code: str = "") -> str:
        """The vocabulary term that ``text_`` (or ``code``, "system:code") names, or ""."""
        with self._read() as s:
            return self._matcher(s).term_for(text_, code)

    def map_findings(self, text_: str, code: str = "") -> list[str]:
        """Every vocabulary term ``text_`` names, in order (a report may state several findings)."""
        with self._read() as s:
            return self._matcher(s).terms_in(text_, code)

    def finding_phrases(self, text_: str) -> tuple[str, list[str]]:
        """(term, its phrases) when ``text_`` names a vocabulary term (the search filter's use)."""
        with self._read() as s:
            term = self._matcher(s).term_for(text_)
            if not term:
                return "", []
            phrases = list(s.scalars(select(VocabularySynonym.phrase).join(
                VocabularyTerm, VocabularyTerm.id == VocabularySynonym.term_id).where(VocabularyTerm.name == term)))
        return term, phrases

    def add_vocabulary_term(self, name: str, synonyms: Iterable[str] = (), *, code: str = "") -> VocabularyEntry:
        """Add a term (or add phrases to an existing one); a phrase already naming another term is
        refused with both names, so a phrase never means two findings."""
        name = " ".join(name.split())
        if not normalise_phrase(name):
            raise QueryError("a vocabulary term needs a name with letters or digits")
        with self._write() as s:
            term = s.scalar(select(VocabularyTerm).where(VocabularyTerm.name == name))
            if term is None:
                term = VocabularyTerm(name=name, code=code.strip())
                s.add(term)
                s.flush()
            elif code:
                term.code = code.strip()
            for p in [name, *synonyms]:
                n = normalise_phrase(p)
                if not n:
                    continue
                other = s.execute(select(VocabularyTerm.name).join(VocabularySynonym, VocabularySynonym.term_id ==
                                                                   VocabularyTerm.id)
                                  .where(VocabularySynonym.phrase == n)).scalar()
                if other is None:
                    s.add(VocabularySynonym(term_id=term.id, phrase=n))
                    s.flush()
                elif other.lower() != name.lower():
                    raise QueryError(f"vocabulary: {p!r} already names {other!r}; remove it there first "
                                     f"(`casebook reports vocabulary remove-synonym {p!r}`)")
            self._remap_findings(s)
        return next(e for e in self.vocabulary() if e.name.lower() == name.lower())

    def remove_vocabulary_term(self, name: str) -> None:
        with self._write() as s:
            term = s.scalar(select(VocabularyTerm).where(VocabularyTerm.name == name.strip()))
            if term is None:
                raise UnknownItemError(f"vocabulary: no term {name!r}")
            s.execute(delete(VocabularySynonym).where(VocabularySynonym.term_id == term.id))
            s.delete(term)
            s.flush()
            self._remap_findings(s)

    def remove_synonym(self, phrase: str) -> None:
        with self._write() as s:
            n = normalise_phrase(phrase)
            if not s.execute(delete(VocabularySynonym).where(VocabularySynonym.phrase == n)).rowcount:
                raise UnknownItemError(f"vocabulary: no phrase {phrase!r}")
            self._remap_findings(s)

    def _remap_findings(self, s: Session) -> int:
        """Map every report's diagnosis again (after the vocabulary changed); returns changes."""
        m = self._matcher(s)
        changed = 0
        for rep in s.scalars(select(Report)):
            want = m.term_for(rep.diagnosis, rep.diagnosis_code) if rep.diagnosis else ""
            if rep.finding != want:
                rep.finding = want
                changed += 1
        return changed
