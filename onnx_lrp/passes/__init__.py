"""Canonicalization passes, run in this order before planning: the structural clean-up on onnx-ir, then the
passes that need tensor values (shapes probed and folded, constants folded, affine chains merged)."""
from .affine import FoldAffine
from .constants import FoldConstants
from .probe import ProbeShapes
from .shapes import FoldShapes
from .structure import CleanStructure, PruneUnused

CANONICALIZE = (CleanStructure(), ProbeShapes(), FoldShapes(), FoldConstants(), FoldAffine(), PruneUnused())


def canonicalize(model, notes):
    for p in CANONICALIZE:
        p.run(model, notes)
    return model
