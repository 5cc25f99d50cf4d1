"""Finding-level regions: detection, segmentation and a radiomics-style descriptor (training-free).

numpy + SimpleITK only; never imports the index or the viewer. See :mod:`.card` for what the
descriptor is, what it was checked on and its limits.
"""
from .card import REGION_CARD, RegionDescriptorCard
from .describe import BLOCKS, DIM
from .detect import modality_family
from .extract import MAX_REGIONS, Region, find_regions, regions_in_box

__all__ = ["BLOCKS", "DIM", "MAX_REGIONS", "REGION_CARD", "Region", "RegionDescriptorCard", "find_regions",
           "modality_family", "regions_in_box"]
