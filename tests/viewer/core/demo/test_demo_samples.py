"""The demo leaves out the packages' codec test stubs (16x16, 3x3 images a reader would only see
as blank squares) and keeps every real-sized sample."""
from __future__ import annotations

import pydicom

from casebook.viewer.core.demo.build import MIN_SAMPLE_SIDE, copy_samples, sample_files, sample_target, too_small


def test_stub_images_are_left_out_of_the_demo(tmp_path):
    files = sample_files()
    sizes = {}
    for _src, p in files:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
            sizes[p] = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
        except Exception:  # noqa: BLE001 - unreadable samples stay for the ingest to report
            sizes[p] = (0, 0)
    stubs = [p for p, (r, c) in sizes.items() if r and c and min(r, c) < MIN_SAMPLE_SIDE]
    assert stubs, "the sample packages ship 16x16 stubs: the test would check nothing"
    assert all(too_small(p) for p in stubs)
    assert not any(too_small(p) for p, (r, c) in sizes.items() if min(r, c) >= MIN_SAMPLE_SIDE)
    dest = tmp_path
    source = next(src for src, p in files if p == stubs[0])
    stale = sample_target(dest, source, stubs[0])  # an older demo copied a stub: it goes
    stale.parent.mkdir(parents=True)
    stale.write_bytes(stubs[0].read_bytes())
    n = copy_samples(dest)
    copied = [p for p in dest.rglob("*") if p.is_file()]
    assert n == len(copied) == len(files) - len(stubs)
    assert not any(too_small(p) for p in copied)
    assert not stale.exists()
