"""Concat and Split move whole slabs along one axis: relevance is cut back into the slabs (Concat) or joined again
(Split), as their plain gradient does. A constant slab of a Concat takes no relevance; an unused Split output
hands back zeros. Any axis: timm's attention splits q, k, v along a leading axis of 3 (the batch moved to axis 1);
a Concat needs static sizes along its axis, so it never concatenates samples of a varying batch."""
import numpy as np

from .registry import SAME, attrs_of, register


def _axis(step, ctx, name):
    rank = len(ctx.shapes.get(name) or [])
    axis = attrs_of(step.node).get("axis", 0)
    return axis + rank if axis < 0 else axis


def _check_concat(step, ctx):
    node = step.node
    axis = _axis(step, ctx, node.output[0])
    sizes = [(ctx.shapes.get(n) or [None] * (axis + 1))[axis] for n in node.input]
    if any(s is None for s in sizes):
        return f"the sizes along axis {axis} are not static ({sizes}); export with fixed input sizes"
    return None


@register("Concat", check=_check_concat, gradient=SAME)
def concat_back(b, step, rel_outs):
    node, scope = step.node, step.name
    axis = _axis(step, b, node.output[0])
    sizes = [b.shapes[n][axis] for n in node.input]
    parts = b.op("Split", [rel_outs[0], b.const(np.array(sizes, np.int64), scope, "sizes", np.int64)], scope,
                 "relevance", outputs=len(sizes), axis=axis)
    parts = parts if isinstance(parts, list) else [parts]
    relevance = {}
    for name, part in zip(node.input, parts):
        if name in step.live_inputs:  # the same tensor concatenated twice collects both slabs
            relevance[name] = b.op("Add", [relevance[name], part], scope, "repeat") if name in relevance else part
    return relevance


def _check_split(step, ctx):
    if [n for n in step.node.input if n and n in ctx.live] != [step.node.input[0]]:
        return "the explained input reaches the split sizes"
    return None


@register("Split", check=_check_split, gradient=SAME)
def split_back(b, step, rel_outs):
    node, scope = step.node, step.name
    parts = [r if r is not None else b.op("ConstantOfShape", [b.op("Shape", [out], scope, "unused_shape")], scope,
                                          "unused_relevance")
             for out, r in zip(step.outputs, rel_outs)]
    axis = _axis(step, b, node.input[0])
    return {node.input[0]: b.op("Concat", parts, scope, "relevance", axis=axis)}
