"""Write ``tests/data/golden_embeddings.npz``: the shipped encoders' embeddings of a few real files.

The golden file pins what each shipped model, with Casebook's loading and preprocessing, makes of
real DICOM. ``tests/inference/test_golden_embeddings.py`` recomputes them and fails when they
drift: a preprocessing change that stays deterministic (a flipped axis, a lost rescale, another
window) moves them, although the encoder still agrees with itself. Re-run this script, and say so
in the commit, only when a model or its preprocessing is changed on purpose:

    .venv/bin/python scripts/golden_embeddings.py          # needs ../shared (or CASEBOOK_SHARED)
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "golden_embeddings.npz"

# (key, path inside shared/data): an MR slice, a tilted head CT series, a CT slice of another site.
FILES = (
    ("mr_ts1", "dicom/dcm_qa_ts/In/1.dcm"),
    ("ct_ge_head", "dicom/dcm_qa_ct/In/GE"),
    ("ct_covid", "temporal/covid19_ny_sbu/data-sample/A002304/axial"),
)
MODELS = ("casebook-baseline", "casebook-cxr2d", "casebook-pneumonia2d", "casebook-adrenal3d")
PARTS = 4  # the first parts are kept beside the series vector


def shared_data() -> Path:
    env = os.environ.get("CASEBOOK_SHARED")
    for c in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if (c / "data").is_dir():
            return c / "data"
    sys.exit("shared data not found: set CASEBOOK_SHARED or put shared/ beside the repo")


def compute(data: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Embeddings keyed ``model/file/series`` and ``model/file/parts``, and each model's sha256."""
    from casebook.inference.embedding import embed_image
    from casebook.inference.preprocess import ImageInput
    from casebook.inference.registry import find_model
    from casebook.inference.runtime import Encoder
    from casebook.viewer.core.dicom import load_series

    vols = {key: load_series(data / rel) for key, rel in FILES}
    arrays: dict[str, np.ndarray] = {}
    shas: dict[str, str] = {}
    for name in MODELS:
        enc = Encoder(find_model(name).path, device="cpu")
        shas[name] = enc.sha256
        for key, vol in vols.items():
            emb = embed_image(enc, ImageInput.from_volume(vol))
            arrays[f"{name}/{key}/series"] = emb.series.astype(np.float32)
            arrays[f"{name}/{key}/parts"] = emb.parts[:PARTS].astype(np.float32)
    return arrays, shas


def main() -> int:
    arrays, shas = compute(shared_data())
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, meta=np.array(json.dumps({"models": shas, "files": dict(FILES)})), **arrays)
    print(f"wrote {OUT.relative_to(REPO)}: {len(arrays)} arrays, {OUT.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
