"""Teaching export throughput: a de-identified export of real CT/MR series, against plain pydicom, in one run.

What an author waits for is the export of a case (a whole study: hundreds of images) through the
whole path: every header read for identifiers and burned-in risk, every file de-identified by
PS3.15 Table E.1-1 (with its nested sequences), cleaned, written, plus the JSON, the report and
the zip. The baseline is what a plain script would do without any de-identification: read each
file with pydicom and write it to another folder. Both run in the same process on the same files.

    .venv/bin/python benchmarks/teaching_export.py [--shared ../shared]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]
SERIES = [("dicom", "dcm_qa_ge", "In", "05_3D_Ax_T1_MP_RAGE_R22"), ("dicom", "dcm_qa_ct", "In", "GE"),
          ("dicom", "dcm_qa_ct", "In", "Philips", "S21570", "S2010")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=Path(os.environ.get("CASEBOOK_SHARED", ROOT.parent / "shared")))
    args = ap.parse_args()
    data = args.shared / "data"
    folders = [data.joinpath(*s) for s in SERIES if data.joinpath(*s).is_dir()]
    if not folders:
        print(f"shared data not found under {args.shared} (set CASEBOOK_SHARED)", file=sys.stderr)
        return 2
    from casebook.index.case_store.teaching_records import TeachingCase
    from casebook.viewer.core.config import Settings
    from casebook.viewer.core.services.import_pipeline import import_paths
    from casebook.viewer.core.services.library import open_store
    from casebook.viewer.core.services.teaching.export import export_cases

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(library_dir=Path(tmp) / "lib")
        import_paths(settings, folders, embed=False)
        store = open_store(settings)
        try:
            ids = [store.create_teaching_case(TeachingCase(study_id=st.id, title=st.description))
                   for st in store.list_studies()]
            files = [i.path for c in ids for se in store.list_series(study_id=store.get_teaching_case(c).study_id)
                     for i in store.series_files(se.id)]
            files = list(dict.fromkeys(files))
            t0 = time.perf_counter()
            base = Path(tmp) / "plain"
            base.mkdir()
            for n, f in enumerate(files):
                pydicom.dcmread(f).save_as(base / f"{n}.dcm")
            t_plain = time.perf_counter() - t0
            t0 = time.perf_counter()
            rep = export_cases(store, ids, Path(tmp) / "export")
            t_export = time.perf_counter() - t0
        finally:
            store.close()
    mb = sum(Path(f).stat().st_size for f in files) / 1e6
    print(f"{len(files)} files ({mb:.0f} MB) in {len(ids)} case(s) from {len(folders)} shared series")
    print(f"plain pydicom read + write:      {t_plain:6.2f} s  {len(files) / t_plain:7.1f} files/s")
    print(f"teaching export (de-id, zip...): {t_export:6.2f} s  {rep.files_written / t_export:7.1f} files/s"
          f"  ({t_export / t_plain:.1f}x the plain copy)")
    print(f"held back {len([h for h in rep.held if h.status == 'held back'])}, problems {len(rep.problems)}, "
          f"elements by action: {dict(sorted(rep.actions.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
