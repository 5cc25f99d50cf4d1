"""Query encoder: turns images the index has no vectors for (an ROI box, a folder not in the
library) into query vectors with the same model that embedded the library.

It refuses a model file whose hash differs from the one recorded with the stored embeddings:
vectors of a retrained model are not comparable with the library's, even under the same name.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Hashable

import numpy as np

from casebook.index.case_store import CaseStore
from casebook.index.case_store.records import ModelRecord
from casebook.inference.embedding import embed_image, embed_roi
from casebook.inference.preprocess import ImageInput, RoiBox
from casebook.inference.registry import find_model
from casebook.inference.runtime import Encoder

from ..config import Settings
from ..dicom import load_series
from ..errors import CasebookError
from ..lru import LRUCache
from .library import load_stored_volume
from .search_types import QueryVectors

log = logging.getLogger(__name__)


class StoreQueryEncoder:
    """A :class:`~casebook.viewer.core.services.search_types.QueryEncoder` over an onnxruntime encoder."""

    def __init__(self, encoder: Encoder, store: CaseStore, record: ModelRecord) -> None:
        prov = encoder.provenance
        if (prov.name, prov.version) != (record.name, record.version):
            raise CasebookError(f"encoder {prov.name}@{prov.version} is not the library's model {record.key}")
        if record.sha256 and prov.sha256 != record.sha256:
            raise CasebookError(f"model file of {record.key} differs from the one that embedded the library "
                                "(retrained?): run `casebook embed` with a new version")
        self.encoder = encoder
        self.store = store
        self.model_key = record.key
        self.dim = int(record.dim)
        self._images: LRUCache[int, ImageInput] = LRUCache(2)

    def remember(self, series_id: Hashable, volume: object) -> None:
        """Keep the Volume a viewer already decoded, so a box drawn on it is not re-read from disk."""
        self._images.put(int(series_id), ImageInput.from_volume(volume))  # type: ignore[arg-type]

    def _image(self, series_id: int, depth: int) -> ImageInput:
        image = self._images.get(series_id)
        if image is None or image.shape[0] < depth:  # not seen, or only a preview of the series
            image = ImageInput.from_volume(load_stored_volume(self.store, series_id))
            self.remember_image(series_id, image)
        return image

    def remember_image(self, series_id: int, image: ImageInput) -> None:
        self._images.put(series_id, image)

    def encode_roi(self, series_id: Hashable, box: tuple[int, int, int, int, int, int]) -> QueryVectors:
        """Box (k0, k1, j0, j1, i0, i1) in voxels of a stored series, end-exclusive."""
        k0, k1, j0, j1, i0, i1 = (int(v) for v in box)
        if k1 <= k0 or j1 <= j0 or i1 <= i0:
            raise CasebookError(f"ROI box {box} is empty")
        image = self._image(int(series_id), k1)  # type: ignore[arg-type]
        vec = embed_roi(self.encoder, image, RoiBox((k0, j0, i0), (k1, j1, i1), "voxel"))
        centre = (k0 + k1 - 1) // 2
        return QueryVectors(np.asarray(vec, np.float32)[None], [centre], f"ROI {box} of series {series_id}")

    def encode_folder(self, path: Path) -> QueryVectors:
        """Largest image stack of a DICOM folder that is not (or not yet) in the library."""
        vol = load_series(Path(path))
        emb = embed_image(self.encoder, ImageInput.from_volume(vol))
        vectors = np.vstack([emb.series[None], emb.parts]).astype(np.float32)
        slices = [-1, *(int(k) for k in emb.part_slices)]
        return QueryVectors(vectors, slices, f"folder {Path(path).name}")


def query_encoder_for(settings: Settings, store: CaseStore, record: ModelRecord) -> StoreQueryEncoder | None:
    """The query encoder for the library's model, or None (logged) when its file is unavailable."""
    try:
        info = find_model(record.key, settings.models_dir)
        return StoreQueryEncoder(Encoder(info.path, device=settings.device), store, record)
    except Exception as exc:  # noqa: BLE001 - search without an encoder still works for stored series
        log.warning("no query encoder for %s: %s", record.key, exc)
        return None
