"""ReduceSum / ReduceMean over non-batch axes: the Norm rule R_i = x_i * R / s(z) (for the mean, with the 1/n of
its weights), as Zennit's AvgPool and Sum modules get."""
import numpy as np

from .registry import attrs_of, register, register_gradient


def reduced_axes(step, ctx):
    """The normalized reduced axes, or an error string."""
    node = step.node
    rank = len(ctx.shapes.get(node.input[0]) or [])
    attrs = attrs_of(node)
    if len(node.input) > 1 and node.input[1]:
        if node.input[1] not in ctx.constants:
            return "its axes are computed at run time; onnx-lrp needs constant axes"
        axes = [int(a) for a in np.asarray(ctx.constants[node.input[1]]).reshape(-1)]
    else:
        axes = list(attrs.get("axes", []))
    if not axes:
        if attrs.get("noop_with_empty_axes", 0):
            return "reduces nothing (noop_with_empty_axes); not supported"
        axes = list(range(rank))
    axes = sorted(a + rank if a < 0 else a for a in axes)
    if 0 in axes:
        return "reduces over the batch axis; relevance is routed per sample only"
    return axes


def _check(step, ctx):
    node = step.node
    if [n for n in node.input if n and n in ctx.live] != [node.input[0]]:
        return "the explained input reaches the axes input"
    dims = ctx.shapes.get(node.input[0])
    if dims is None or not dims:
        return "its input has no known rank; export with fixed input sizes"
    axes = reduced_axes(step, ctx)
    if isinstance(axes, str):
        return axes
    if node.op_type == "ReduceMean" and any(dims[a] is None for a in axes):
        return f"averages over axes {axes} whose sizes are not static ({dims})"
    step.extra = axes
    return None


@register("ReduceSum", "ReduceMean", check=_check)
def reduce_norm(b, step, rel_outs):
    node, x, z, scope = step.node, step.node.input[0], step.node.output[0], step.name
    axes = step.extra
    ratio = b.divide_stabilized(rel_outs[0], z, b.norm_stabilizer, scope)
    if not attrs_of(node).get("keepdims", 1):
        ratio = b.op("Unsqueeze", [ratio, b.const(np.array(axes, np.int64), scope, "axes", np.int64)], scope,
                     "ratio_kept")
    if node.op_type == "ReduceMean":
        count = float(np.prod([b.shapes[x][a] for a in axes]))
        ratio = b.op("Div", [ratio, b.scalar(count)], scope, "share")
    return {x: b.op("Mul", [x, ratio], scope, "relevance")}


@register_gradient("ReduceSum", "ReduceMean")
def reduce_gradient(b, step, grads):
    """The plain gradient: spread back over the reduced axes (divided by their size for the mean)."""
    node, x, scope = step.node, step.node.input[0], step.name
    g = grads[0]
    if not attrs_of(node).get("keepdims", 1):
        g = b.op("Unsqueeze", [g, b.const(np.array(step.extra, np.int64), scope, "axes", np.int64)], scope, "kept")
    if node.op_type == "ReduceMean":
        g = b.op("Div", [g, b.scalar(float(np.prod([b.shapes[x][a] for a in step.extra])))], scope, "share")
    return {x: b.op("Expand", [g, b.op("Shape", [x], scope, "input_shape")], scope, "gradient")}
