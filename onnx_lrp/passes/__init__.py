"""Canonicalization passes, run in this order before planning."""
from .batchnorm import FoldBatchNorm
from .cleanup import InitializersOutOfInputs, RemoveIdentities
from .constants import ConstantsToInitializers, FoldConstants
from .naming import NameNodes
from .shapes import FoldShapes

CANONICALIZE = (NameNodes(), InitializersOutOfInputs(), ConstantsToInitializers(), FoldShapes(), FoldConstants(),
                RemoveIdentities(), FoldBatchNorm())


def canonicalize(model, notes):
    for p in CANONICALIZE:
        p.run(model, notes)
    return model
