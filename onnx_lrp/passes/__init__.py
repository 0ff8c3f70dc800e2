"""Canonicalization passes, run in this order before planning."""
from .affine import FoldAffine
from .cleanup import InitializersOutOfInputs, RemoveIdentities
from .constants import ConstantsToInitializers, FoldConstants
from .naming import NameNodes
from .probe import ProbeShapes
from .shapes import FoldShapes

CANONICALIZE = (NameNodes(), InitializersOutOfInputs(), ConstantsToInitializers(), ProbeShapes(), FoldShapes(),
                FoldConstants(),
                RemoveIdentities(), FoldAffine())


def canonicalize(model, notes):
    for p in CANONICALIZE:
        p.run(model, notes)
    return model
