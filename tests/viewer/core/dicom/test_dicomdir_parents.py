"""A Philips DIRFILE roots its references above its own folder (``S21570/S2010/I230`` inside
``S21570/S2010/``): the scan resolves them from the parent folders instead of reporting them
missing."""
from __future__ import annotations

from casebook.viewer.core.dicom.scan import resolve_in_parents, scan


def test_philips_dirfile_references_resolve_against_parent_folders(need_shared):
    root = need_shared("dicom", "dcm_qa_ct", "In", "Philips")
    res = scan([root])
    assert not [p for p in res.problems if "missing" in p.reason], [p.reason for p in res.problems]
    dirfile = root / "S21570" / "S2010" / "DIRFILE"
    found, missing = resolve_in_parents(dirfile, ["S21570/S2010/I230", "S21570/S2010/NOPE", "s21570/s2010/i10"])
    assert found == [root / "S21570" / "S2010" / "I230", root / "S21570" / "S2010" / "I10"]  # any case
    assert missing == ["S21570/S2010/NOPE"]
    # the DIRFILE alone brings in the files it names: all 28 images of its series, none missing
    alone = scan([dirfile])
    assert not alone.problems and alone.files_seen == 1 + sum(len(s.instances) for s in alone.stacks)
    assert max(len(s.instances) for s in alone.stacks) == 28


def test_a_one_part_reference_is_only_looked_for_beside_the_dicomdir(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "IMG1").write_bytes(b"x")
    found, missing = resolve_in_parents(tmp_path / "sub" / "DICOMDIR", ["IMG1"])
    assert found == [] and missing == ["IMG1"]
