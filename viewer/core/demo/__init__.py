"""Demo library material: a seeded DICOM phantom generator and the sample files shipped by
pydicom / pydicom-data / deid-data, so a fresh machine gets a library to try every feature on."""
from __future__ import annotations

from .phantom import (GeneratedSeries, GeneratedStudy, LesionSpec, PhantomOptions, SeriesPlan, StudyPlan,
                      generate_library, plan_library, write_study)

__all__ = ["GeneratedSeries", "GeneratedStudy", "LesionSpec", "PhantomOptions", "SeriesPlan", "StudyPlan",
           "generate_library", "plan_library", "write_study"]
