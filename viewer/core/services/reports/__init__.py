"""Reports from the hospital's own systems: HL7 v2 ORU, DICOM SR and Encapsulated PDF, CSV/JSON
exports; their sections and diagnosis; linking them to studies (in the case store).

``import_reports`` is the use case behind ``casebook reports import``; ``after_ingest`` is how
ingest hands the SR / PDF objects it meets to the same reader and links waiting reports.
"""
from .at_ingest import after_ingest
from .errors import ReportFormatError, ReportImportError
from .importer import ReportImportSummary, import_reports, read_file
from .sections import Sections, diagnosis_from_impression, split_sections
from .tabular import FIELDS, load_mapping

__all__ = ["FIELDS", "ReportFormatError", "ReportImportError", "ReportImportSummary", "Sections", "after_ingest",
           "diagnosis_from_impression", "import_reports", "load_mapping", "read_file", "split_sections"]
