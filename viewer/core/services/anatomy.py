"""Coarse anatomy of a series from its header words, and which anatomies a finding may match.

Why: a box on a brain tumour must not return an abdominal MR because both are bright blobs in
MR; the reader asks for the same finding *in the same anatomy* (issue 11: "regions of compatible
anatomy"). The headers already say where a series is: Body Part Examined (0018,0015) and the
series and study descriptions ("CT CHEST ABDOMEN", "MR BRAIN WO", "abdomen^liver"). Those words
are mapped onto a few coarse regions; a series whose words name none is *unknown* and is never
removed (an unlabelled archive loses nothing), and two known series match when their regions
overlap or touch (the spine is seen on chest, abdomen and pelvis images).

Where the headers name nothing (a series from a de-identified teaching archive, a research export)
a CT says where it is by itself: a skull rings the head, lungs fill the chest (and lie over the
upper abdomen), and a trunk without lungs is abdomen or pelvis (:func:`regions_of_image`, read
from the series' 4 mm context map). Only what is plain is named; anything else stays unknown.
"""
from __future__ import annotations

import re
from typing import Iterable, Sequence

from casebook.inference.regions.context import ContextMap, SlabLayout, slab_layouts

#: the coarse regions, head to foot
REGIONS: tuple[str, ...] = ("head", "neck", "chest", "abdomen", "pelvis", "spine", "upper limb", "lower limb")

# DICOM's defined terms for Body Part Examined that join regions, matched on the words run together
_COMPOUND: dict[str, frozenset[str]] = {
    "CHESTABDPELVIS": frozenset({"chest", "abdomen", "pelvis"}),
    "CHESTABDOMENPELVIS": frozenset({"chest", "abdomen", "pelvis"}),
    "CHESTABDOMEN": frozenset({"chest", "abdomen"}),
    "ABDOMENPELVIS": frozenset({"abdomen", "pelvis"}),
    "ABDPELVIS": frozenset({"abdomen", "pelvis"}),
    "HEADNECK": frozenset({"head", "neck"}),
    "WHOLEBODY": frozenset(REGIONS),
}

_WORDS: dict[frozenset[str], tuple[str, ...]] = {
    frozenset({"head"}): ("HEAD", "BRAIN", "SKULL", "CRANIAL", "CRANIUM", "CEREBRAL", "CEREBRUM", "NEURO", "ORBIT",
                          "ORBITS", "SINUS", "SINUSES", "IAC", "PITUITARY", "SELLA", "FACE", "FACIAL",
                          "MAXILLOFACIAL", "MANDIBLE", "TMJ", "STROKE"),
    frozenset({"neck"}): ("NECK", "THYROID", "LARYNX", "PHARYNX", "CAROTID", "CAROTIDS", "PAROTID"),
    frozenset({"chest"}): ("CHEST", "THORAX", "THORAXES", "LUNG", "LUNGS", "PULMONARY", "CARDIAC", "HEART", "CORONARY",
                           "CORONARIES", "BREAST", "BREASTS", "MAMMO", "MAMMOGRAPHY", "MEDIASTINUM", "RIB", "RIBS",
                           "STERNUM", "HRCT"),
    frozenset({"abdomen"}): ("ABDOMEN", "ABD", "ABDO", "ABDOMINAL", "LIVER", "HEPATIC", "PANCREAS", "PANCREATIC",
                             "KIDNEY", "KIDNEYS", "RENAL", "ADRENAL", "ADRENALS", "SPLEEN", "MRCP", "BILIARY",
                             "UROGRAM", "ENTEROGRAPHY", "GALLBLADDER", "STOMACH", "BOWEL"),
    frozenset({"pelvis"}): ("PELVIS", "PELVIC", "PROSTATE", "BLADDER", "UTERUS", "OVARY", "OVARIES", "RECTUM",
                            "RECTAL", "SACRUM", "HIP", "HIPS"),
    frozenset({"spine"}): ("SPINE", "SPINAL", "VERTEBRA", "VERTEBRAE", "VERTEBRAL", "CSPINE", "TSPINE", "LSPINE",
                           "SSPINE", "LUMBAR", "COCCYX", "MYELOGRAM"),
    frozenset({"abdomen", "pelvis"}): ("COLON", "COLONOGRAPHY"),
    frozenset({"chest", "abdomen"}): ("AORTA", "AORTIC"),
    frozenset({"neck", "spine"}): ("CERVICAL",),
    frozenset({"chest", "spine"}): ("THORACIC",),
    frozenset({"upper limb"}): ("SHOULDER", "SHOULDERS", "ARM", "HUMERUS", "ELBOW", "FOREARM", "WRIST", "HAND", "HANDS",
                                "FINGER", "FINGERS", "CLAVICLE", "SCAPULA"),
    frozenset({"lower limb"}): ("KNEE", "KNEES", "LEG", "LEGS", "FEMUR", "THIGH", "TIBIA", "FIBULA", "ANKLE",
                                "ANKLES", "FOOT", "FEET", "TOE", "TOES", "CALF", "HEEL"),
    frozenset({"upper limb", "lower limb"}): ("EXTREMITY", "EXTREMITIES", "LIMB", "LIMBS"),
    frozenset(REGIONS): ("WB", "TOTALBODY"),
}
_LOOKUP: dict[str, frozenset[str]] = {w: regs for regs, words in _WORDS.items() for w in words}

# regions a finding may also be seen on (the spine on every trunk image; the hip on a pelvis)
_TOUCHES: dict[str, frozenset[str]] = {
    "spine": frozenset({"neck", "chest", "abdomen", "pelvis"}),
    "neck": frozenset({"head", "spine"}),
    "chest": frozenset({"spine", "upper limb"}),  # the shoulder girdle is on every chest image
    "abdomen": frozenset({"spine"}),
    "pelvis": frozenset({"spine", "lower limb"}),
    "upper limb": frozenset({"chest"}),
    "lower limb": frozenset({"pelvis"}),
    "head": frozenset({"neck"}),
}

_SPLIT = re.compile(r"[^A-Z0-9]+")


def regions_of(*texts: str | None) -> frozenset[str]:
    """The coarse regions the header words name (empty when none is named: unknown anatomy)."""
    out: set[str] = set()
    for text in texts:
        words = [w for w in _SPLIT.split((text or "").upper()) if w]
        for n, w in enumerate(words):
            regs = _LOOKUP.get(w) or _COMPOUND.get(w)
            if n + 1 < len(words) and w + words[n + 1] in _COMPOUND:  # "WHOLE BODY", "ABDOMEN PELVIS"
                regs = (regs or frozenset()) | _COMPOUND[w + words[n + 1]]
            elif w == "WHOLE":
                regs = None  # "whole" alone says nothing
            if regs:
                out |= regs
    return frozenset(out)


#: a slab is a head when bone takes this share of the body's outer 12 mm (a skull; measured 0.53 on a
#: CQ500 head CT, at most 0.01 on the phantom trunks) and it holds next to no air
SKULL_SHELL = 0.35
#: a slab is a chest when air (lungs) is this share of the body (0.13-0.22 on the phantom chests,
#: 0.02 on an abdominal CT)
LUNG_AIR = 0.08
#: a slab without lungs or skull this wide is a trunk (abdomen or pelvis), not a limb or a neck
TRUNK_WIDTH_MM = 240.0
#: nothing wider is a body: a dose report or a screen stored as CT (648 mm on dcm_qa_ct) is no trunk
#: (a scanner's largest field of view is about 500 mm)
BODY_MAX_MM = 520.0
#: a region is named when this share of the body slabs shows it
SLAB_SHARE = 0.25


# what each kind of slab shows. The lung bases lie over the upper abdomen (liver dome, spleen): an
# abdominal CT's top slices and its coronal slices show lungs (covid19_ny_sbu: 4 of 13 ABD/PEL series
# were read as "chest" alone), and every chest CT holds the upper abdomen
_SHOWN: dict[str, frozenset[str]] = {"head": frozenset({"head"}), "chest": frozenset({"chest", "abdomen"}),
                                     "trunk": frozenset({"abdomen", "pelvis"})}


def regions_of_image(layouts: Sequence[SlabLayout]) -> frozenset[str]:
    """The coarse regions a CT's own slabs show (empty when none is plain: unknown anatomy)."""
    votes: dict[str, int] = {}
    for lay in layouts:
        if lay.width_mm > BODY_MAX_MM:
            continue
        if lay.shell_bone >= SKULL_SHELL and lay.air < 0.05:
            key = "head"
        elif lay.air >= LUNG_AIR and lay.width_mm >= TRUNK_WIDTH_MM:
            key = "chest"
        elif lay.air < 0.05 and lay.width_mm >= TRUNK_WIDTH_MM and lay.shell_bone < 0.1:
            key = "trunk"
        else:
            continue
        votes[key] = votes.get(key, 0) + 1
    out: set[str] = set()
    for key, n in votes.items():
        if n >= SLAB_SHARE * len(layouts):
            out |= _SHOWN[key]
    return frozenset(out)


#: the version of the image reading (:func:`regions_of_image` and its constants): readings stored
#: with the context maps at embed time under another version are read again
IMAGE_RULE = "1"


def read_map(cmap: ContextMap) -> frozenset[str]:
    """What a series' context map plainly shows of the body (CT only; empty: unknown)."""
    return regions_of_image(slab_layouts(cmap))


def to_text(regions: Iterable[str]) -> str:
    """Regions as stored, head to foot ("chest,abdomen"; "" for none)."""
    got = set(regions)
    return ",".join(r for r in REGIONS if r in got)


def from_text(text: str) -> frozenset[str]:
    """Stored regions back (unknown words dropped)."""
    return frozenset(w for w in text.split(",") if w in REGIONS)


def compatible(a: Iterable[str], b: Iterable[str]) -> bool:
    """May a finding on anatomy ``a`` be matched on anatomy ``b``? Unknown (empty) matches anything."""
    sa, sb = frozenset(a), frozenset(b)
    if not sa or not sb:
        return True
    if sa & sb:
        return True
    near = frozenset().union(*(_TOUCHES.get(r, frozenset()) for r in sa))
    return bool(near & sb)


def describe(regions: Iterable[str]) -> str:
    """"chest + abdomen", or "unknown anatomy"."""
    regs = [r for r in REGIONS if r in set(regions)]
    return " + ".join(regs) if regs else "unknown anatomy"


__all__ = ["IMAGE_RULE", "REGIONS", "compatible", "describe", "from_text", "read_map", "regions_of", "regions_of_image",
           "to_text"]
