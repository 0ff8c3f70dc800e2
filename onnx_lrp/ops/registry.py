"""Registry of relevance emitters, keyed by ONNX op type (ONNX Runtime's gradient-builder registry, for LRP).

An emitter gets the GraphBuilder, the planned Step and the relevance of the step's outputs (None where nothing
arrives) and returns {forward input name: relevance tensor name}. `check` may reject a node's variant at plan
time so that every unsupported node is reported at once.

The transformer composites (attnlrp, cp-lrp) propagate a modified gradient instead (relevance = input x gradient
at the end, as LXT computes it): `gradient` is that op's emitter, same signature, gradients in and out. Ops that
only move elements route relevance and gradients alike (`gradient=SAME`).
"""
from dataclasses import dataclass
from typing import Callable, Optional

from onnx import helper


SAME = "same"


@dataclass(frozen=True)
class OpSpec:
    emit: Callable
    check: Optional[Callable] = None
    gradient: Optional[Callable] = None


REGISTRY = {}


def register(*op_types, check=None, gradient=None):
    def decorate(fn):
        for op in op_types:
            REGISTRY[op] = OpSpec(fn, check, fn if gradient == SAME else gradient)
        return fn
    return decorate


def register_gradient(*op_types):
    """Add the gradient-form emitter to ops already registered (it lives beside their relevance emitter)."""
    def decorate(fn):
        for op in op_types:
            REGISTRY[op] = OpSpec(REGISTRY[op].emit, REGISTRY[op].check, fn)
        return fn
    return decorate


def attrs_of(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
