"""Canonicalization passes, run in this order before planning: the structural clean-up on onnx-ir, then the
passes that need tensor values (Ifs on constants inlined, again as shapes fold, shapes probed and folded, constants folded, recurrent ops unrolled, affine chains
merged, sums of dense maps joined)."""
from .affine import FoldAffine
from .constants import FoldConstants
from .control import InlineConstantIf, ShapesAndBranches
from .joint_linear import JoinLinearSums
from .probe import ProbeShapes
from .recurrent import UnrollRecurrent
from .shapes import FoldShapes
from .structure import CleanStructure, PruneUnused

CANONICALIZE = (CleanStructure(), InlineConstantIf(), ShapesAndBranches(ProbeShapes(), FoldShapes(), FoldConstants()),
                UnrollRecurrent(), FoldAffine(), JoinLinearSums(), PruneUnused())


def canonicalize(model, notes):
    for p in CANONICALIZE:
        p.run(model, notes)
    return model
