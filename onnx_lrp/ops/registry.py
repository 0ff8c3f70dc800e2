"""Registry of relevance emitters, keyed by ONNX op type (ONNX Runtime's gradient-builder registry, for LRP).

An emitter gets the GraphBuilder, the planned Step and the relevance of the step's outputs (None where nothing
arrives) and returns {forward input name: relevance tensor name}. `check` may reject a node's variant at plan
time so that every unsupported node is reported at once.
"""
from dataclasses import dataclass
from typing import Callable, Optional

from onnx import helper


@dataclass(frozen=True)
class OpSpec:
    emit: Callable
    check: Optional[Callable] = None


REGISTRY = {}


def register(*op_types, check=None):
    def decorate(fn):
        for op in op_types:
            REGISTRY[op] = OpSpec(fn, check)
        return fn
    return decorate


def attrs_of(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
