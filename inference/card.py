"""The model card: what an encoder expects and what it was trained on, stored inside the ONNX file.

The card travels in the model's ``metadata_props`` under the key ``casebook.card`` as JSON, so a
model file is self-describing: the viewer never needs a side file to know how to feed a model,
and a hospital that brings its own model only has to write one card (see
:func:`casebook.inference.export.write_card`). A model without a valid card, or whose card does
not match its graph, is refused with a :class:`ModelSpecError` naming the problem.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ModelSpecError

CARD_KEY = "casebook.card"
CARD_FORMAT = 1
INPUT_KINDS = ("2d-slice", "3d-volume")
INTENSITY_METHODS = ("window", "percentile", "range", "as-is")


@dataclass(frozen=True)
class IntensitySpec:
    """How raw voxel values of one modality become the model's [0, 1] input range.

    * ``window``: clip to ``center +- width/2`` (CT in Hounsfield units) and scale to [0, 1].
    * ``percentile``: robust min/max from the ``low``/``high`` percentiles of the image (MR,
      whose units are arbitrary).
    * ``range``: 8-bit data divided by 255; wider data scaled by its robust range (radiographs).
    * ``as-is``: no change (for models that normalise internally).
    """

    method: str
    center: float | None = None
    width: float | None = None
    low: float = 0.5
    high: float = 99.5

    def validate(self, where: str) -> None:
        if self.method not in INTENSITY_METHODS:
            raise ModelSpecError(f"{where}: intensity method {self.method!r} is not one of {INTENSITY_METHODS}")
        if self.method == "window" and (self.center is None or self.width is None or self.width <= 0):
            raise ModelSpecError(f"{where}: a 'window' intensity needs a center and a positive width")
        if self.method == "percentile" and not (0.0 <= self.low < self.high <= 100.0):
            raise ModelSpecError(f"{where}: percentile bounds must satisfy 0 <= low < high <= 100")


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to feed a model and to tell the reader what it is."""

    name: str
    version: str
    input_kind: str  # "2d-slice" | "3d-volume"
    input_size: tuple[int, ...]  # (H, W) for 2D, (D, H, W) for 3D
    channels: int
    embedding_size: int
    intensity: dict[str, IntensitySpec]  # per modality code (CT, MR, CR, DX, ...) and "default"
    target_spacing: tuple[float, ...] | None = None  # mm, same order as input_size; None: fit field of view
    mean: tuple[float, ...] = (0.0,)  # per channel, applied after intensity mapping to [0, 1]
    std: tuple[float, ...] = (1.0,)
    input_name: str = "input"
    output_name: str = "embedding"
    licence: str = ""
    training_data: str = ""
    description: str = ""
    authors: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    slices_per_series: int = 32  # 2D models: how many slices are sampled to describe a series
    card_format: int = CARD_FORMAT

    # ------------------------------------------------------------------ helpers
    @property
    def is_3d(self) -> bool:
        return self.input_kind == "3d-volume"

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    def intensity_for(self, modality: str) -> IntensitySpec:
        """The intensity rule for ``modality`` (falls back to the card's ``default``)."""
        mod = (modality or "").upper()
        if mod in self.intensity:
            return self.intensity[mod]
        if mod in ("CR", "DX", "MG", "RG", "XA", "RF", "PX", "IO") and "XR" in self.intensity:
            return self.intensity["XR"]
        return self.intensity["default"]

    def to_json(self) -> str:
        d = asdict(self)
        d["input_size"] = list(self.input_size)
        d["target_spacing"] = None if self.target_spacing is None else list(self.target_spacing)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return json.dumps(d, indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, origin: str = "model") -> "ModelCard":
        """Parse and validate a card; every defect is reported with ``origin`` named."""
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelSpecError(f"{origin}: model card is not valid JSON: {exc}") from exc
        if not isinstance(d, dict):
            raise ModelSpecError(f"{origin}: model card must be a JSON object")
        return cls.from_dict(d, origin)

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "model") -> "ModelCard":
        required = ("name", "version", "input_kind", "input_size", "channels", "embedding_size", "intensity")
        missing = [k for k in required if k not in d]
        if missing:
            raise ModelSpecError(f"{origin}: model card lacks {', '.join(missing)}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelSpecError(f"{origin}: model card has unknown fields {unknown}")
        try:
            inten = d["intensity"]
            if not isinstance(inten, dict):
                raise TypeError("intensity must be an object keyed by modality")
            intensity = {str(k).upper() if k != "default" else "default": IntensitySpec(**v) for k, v in inten.items()}
            kw = dict(d)
            kw["intensity"] = intensity
            kw["input_size"] = tuple(int(v) for v in d["input_size"])
            ts = d.get("target_spacing")
            kw["target_spacing"] = None if ts is None else tuple(float(v) for v in ts)
            kw["mean"] = tuple(float(v) for v in d.get("mean", (0.0,)))
            kw["std"] = tuple(float(v) for v in d.get("std", (1.0,)))
            kw["channels"] = int(d["channels"])
            kw["embedding_size"] = int(d["embedding_size"])
            kw["name"] = str(d["name"])
            kw["version"] = str(d["version"])
            card = cls(**kw)
        except (TypeError, ValueError) as exc:
            raise ModelSpecError(f"{origin}: model card is malformed: {exc}") from exc
        card.validate(origin)
        return card

    def validate(self, origin: str = "model") -> None:
        """Check the card's own consistency (the graph is checked by :func:`check_graph`)."""
        if not self.name or any(c in self.name for c in "/\\ @"):
            raise ModelSpecError(f"{origin}: model name {self.name!r} must be non-empty without spaces, '/', '\\' or '@'")
        if not self.version:
            raise ModelSpecError(f"{origin}: model card has an empty version")
        if self.card_format > CARD_FORMAT:
            raise ModelSpecError(f"{origin}: card format {self.card_format} is newer than this Casebook understands ({CARD_FORMAT})")
        if self.input_kind not in INPUT_KINDS:
            raise ModelSpecError(f"{origin}: input_kind {self.input_kind!r} is not one of {INPUT_KINDS}")
        dims = 3 if self.is_3d else 2
        if len(self.input_size) != dims or any(s < 4 for s in self.input_size):
            raise ModelSpecError(f"{origin}: input_size {list(self.input_size)} must be {dims} sizes >= 4 for {self.input_kind}")
        if self.target_spacing is not None and (len(self.target_spacing) != dims or any(s <= 0 for s in self.target_spacing)):
            raise ModelSpecError(f"{origin}: target_spacing must be {dims} positive numbers (mm) or null")
        if self.channels not in (1, 3):
            raise ModelSpecError(f"{origin}: channels must be 1 or 3, not {self.channels}")
        if self.embedding_size < 2:
            raise ModelSpecError(f"{origin}: embedding_size must be >= 2")
        if "default" not in self.intensity:
            raise ModelSpecError(f"{origin}: intensity needs a 'default' entry for modalities it does not name")
        for mod, spec in self.intensity.items():
            spec.validate(f"{origin}: intensity[{mod}]")
        for nm, vals in (("mean", self.mean), ("std", self.std)):
            if len(vals) not in (1, self.channels):
                raise ModelSpecError(f"{origin}: {nm} must have 1 or {self.channels} values")
        if any(s <= 0 for s in self.std):
            raise ModelSpecError(f"{origin}: std values must be positive")
        if self.slices_per_series < 1:
            raise ModelSpecError(f"{origin}: slices_per_series must be >= 1")


def read_card(model: Any, origin: str = "model") -> ModelCard:
    """The card of a loaded ``onnx.ModelProto`` (or of an ONNX file path), validated against the graph."""
    import onnx

    if isinstance(model, (str, Path)):
        origin = str(model)
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError / OSError / google.protobuf errors
            raise ModelSpecError(f"{origin}: not a readable ONNX model: {exc}") from exc
    props = {p.key: p.value for p in model.metadata_props}
    if CARD_KEY not in props:
        raise ModelSpecError(f"{origin}: no Casebook model card (metadata key {CARD_KEY!r}); add one with `casebook.inference.export.write_card`")
    card = ModelCard.from_json(props[CARD_KEY], origin)
    check_graph(model, card, origin)
    return card


def _dims(value_info: Any) -> list[int | str | None]:
    out: list[int | str | None] = []
    for d in value_info.type.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def check_graph(model: Any, card: ModelCard, origin: str = "model") -> None:
    """Refuse a card that promises an input or output the graph does not have."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    by_name = {i.name: i for i in inputs}
    if card.input_name not in by_name:
        raise ModelSpecError(f"{origin}: card input {card.input_name!r} is not a graph input (graph has {sorted(by_name)})")
    if len(inputs) != 1:
        raise ModelSpecError(f"{origin}: encoder must have exactly one input, graph has {len(inputs)}")
    outs = {o.name: o for o in model.graph.output}
    if card.output_name not in outs:
        raise ModelSpecError(f"{origin}: card output {card.output_name!r} is not a graph output (graph has {sorted(outs)})")
    idims = _dims(by_name[card.input_name])
    want = [None, card.channels, *card.input_size]
    if len(idims) != len(want):
        raise ModelSpecError(f"{origin}: graph input has rank {len(idims)}, card ({card.input_kind}) needs rank {len(want)} (N, C, {'D, ' if card.is_3d else ''}H, W)")
    for axis, (g, w) in enumerate(zip(idims, want)):
        if axis == 0 or w is None:
            continue
        if isinstance(g, int) and g != w:
            raise ModelSpecError(f"{origin}: graph input axis {axis} is {g}, card says {w}")
    elem = by_name[card.input_name].type.tensor_type.elem_type
    if elem not in (1, 10):  # FLOAT, FLOAT16
        raise ModelSpecError(f"{origin}: graph input must be float32 or float16, not ONNX type {elem}")
    odims = _dims(outs[card.output_name])
    if len(odims) != 2:
        raise ModelSpecError(f"{origin}: graph output {card.output_name!r} must be (N, embedding), has rank {len(odims)}")
    if isinstance(odims[1], int) and odims[1] != card.embedding_size:
        raise ModelSpecError(f"{origin}: graph output has {odims[1]} features, card says embedding_size {card.embedding_size}")


__all__ = ["ModelCard", "IntensitySpec", "read_card", "check_graph", "CARD_KEY", "INPUT_KINDS"]
