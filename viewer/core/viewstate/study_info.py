"""What the overlay says about the study: patient line, study description and date.

Typed so the window, the model and the renderer agree on the fields (it used to travel as an
untyped ``meta`` dict). It is PHI: shown on screen, never logged.
"""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any

from casebook.common.dates import format_da


def _dicom_date(da: str) -> str:
    """``20240131`` -> ``2024-01-31`` (the one DA formatter); anything else as given (partial)."""
    da = (da or "").strip()
    return (format_da(da) or da) if len(da) == 8 and da.isdigit() else da


@dataclass(frozen=True)
class StudyInfo:
    """The overlay's top-left lines for one study."""

    patient_name: str = ""
    patient_id: str = ""
    study_description: str = ""
    study_date: str = ""  # ISO (YYYY-MM-DD) when the header had a full DICOM date

    @classmethod
    def from_stack(cls, stack: Any) -> "StudyInfo":
        """From a scanned stack (``StackInfo`` or a library row): missing attributes are blank."""
        def attr(name: str) -> str:
            value = stack.get(name, "") if isinstance(stack, Mapping) else getattr(stack, name, "")
            return str(value or "")

        return cls(patient_name=attr("patient_name"), patient_id=attr("patient_id"),
                   study_description=attr("study_description"), study_date=_dicom_date(attr("study_date")))

    @property
    def patient_text(self) -> str:
        """``"DOE^JANE 12345"``: the patient line of the overlay."""
        return " ".join(x for x in (self.patient_name, self.patient_id) if x)

    def overlay_lines(self) -> list[str]:
        return [x for x in (self.patient_text, self.study_description, self.study_date) if x]


__all__ = ["StudyInfo"]
