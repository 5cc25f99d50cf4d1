"""The region descriptor's card: what it is, what it was checked on, and its limits.

Why a card for something with no weights: the region index stores these vectors under this
name and version, and a library embedded with one version must not be searched with another
(the store records the version with every region, as it does for encoder models).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .describe import BLOCKS, DIM


@dataclass(frozen=True)
class RegionDescriptorCard:
    name: str
    version: str
    dim: int
    kind: str
    description: str
    blocks: tuple[tuple[str, float, int], ...]
    training_data: str
    licence: str
    limits: tuple[str, ...] = field(default_factory=tuple)
    validation: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """name@version: how the store and the index name this descriptor."""
        return f"{self.name}@{self.version}"


REGION_CARD = RegionDescriptorCard(
    name="casebook-region",
    version="5",
    dim=DIM,
    kind="region (segmented finding), training-free",
    description=(
        "Candidate findings are scale-space blobs (scale-normalised LoG, 6 scales, 2.6-24 mm radius) on a 2 mm "
        "isotropic grid (never finer than the image), each segmented by a two-sided intensity band around its core "
        "with holes filled; a hollow blob (a cavitating nodule, a ring-enhancing tumour around necrosis) is "
        "judged and segmented by its wall, not by the hole its centre falls in; a lesion whose organ wall is "
        "thinner than the grid (a lytic lesion in the vertebral cortex) is kept to its blob radius. Up to 96 per "
        "series, one of each coarse kind. The "
        "descriptor is a concatenation of soft histograms: lesion, inner and outer half, context shells at 0-3, "
        "3-8 and 8-16 mm (never thinner than one grid step) (Hounsfield bins for CT, log-ratio-to-median-tissue bins otherwise), signed contrast, "
        "equivalent diameter, elongation, enclosed-hole share, heterogeneity and hollowness (how far the blob's "
        "centre, or what its wall encloses in its own slice plane, falls back from the wall towards the context: "
        "a cavitating nodule against a solid one at 3 mm pixels, where partial volume opens the cavity; CT only). "
        "Cosine similarity is the weighted mean of per-block Bhattacharyya coefficients."),
    blocks=BLOCKS,
    training_data="none: every constant is physical (mm, HU) and was set on one synthetic phantom seed",
    licence="Apache-2.0",
    limits=(
        "Findings are blob-like by construction: diffuse disease (fibrosis, emphysema, oedema without a mass) "
        "and lesions under about 4 mm are not detected as regions; a box on them is described as a whole.",
        "MR, PET and radiograph intensities have no physical unit: they are compared as ratios to the series' "
        "median tissue signal, so different sequences of one finding do not look alike.",
        "Not validated on patient data for any clinical question; not a medical device.",
    ),
    validation={"benchmark": "benchmarks/lesion_retrieval.py (phantom seeds not used for the constants)"},
)

__all__ = ["REGION_CARD", "RegionDescriptorCard"]
