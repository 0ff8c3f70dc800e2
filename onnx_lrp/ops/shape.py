"""Ops that only move elements: relevance is moved back exactly (the inverse op)."""
import numpy as np

from .registry import SAME, attrs_of, register


def _data_is_first(step, ctx):
    node = step.node
    if [n for n in node.input if n and n in ctx.live] != [node.input[0]]:
        return "the explained input reaches the shape/axes input of this op"
    return None


@register("Flatten", "Reshape", "Squeeze", "Unsqueeze", check=_data_is_first, gradient=SAME)
def reshape_back(b, step, rel_outs):
    x = step.node.input[0]
    shape = b.op("Shape", [x], step.name, "input_shape")
    return {x: b.op("Reshape", [rel_outs[0], shape], step.name, "relevance")}


@register("Transpose", check=_data_is_first, gradient=SAME)
def transpose_back(b, step, rel_outs):
    x = step.node.input[0]
    perm = attrs_of(step.node).get("perm")
    if perm is None:
        perm = list(reversed(range(len(b.shapes[x]))))
    inverse = [int(i) for i in np.argsort(perm)]
    return {x: b.op("Transpose", [rel_outs[0]], step.name, "relevance", perm=inverse)}
