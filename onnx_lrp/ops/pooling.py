"""Pooling: MaxPool routes relevance to the winner (its plain vector-Jacobian product, as Zennit leaves it);
AveragePool and GlobalAveragePool use the Norm rule R_i = a_i * sum_j R_j / (k_j * s(z_j)) (Zennit's AvgPool map).
"""
import numpy as np

from .geometry import spatial_geometry, transpose_pads
from .registry import SAME, attrs_of, register, register_gradient


def _no_storage_order(step, ctx):
    node = step.node
    if attrs_of(node).get("storage_order", 0):
        return "storage_order=1 (column-major indices) is not supported"
    if len([o for o in node.output if o]) > 1 and any(ctx.users.get(o) for o in node.output[1:] if o):
        return "its Indices output is used by the model"
    return None


@register("MaxPool", check=_no_storage_order, gradient=SAME)
def maxpool_winner_takes_all(b, step, rel_outs):
    node, x, scope = step.node, step.node.input[0], step.name
    if len(node.output) < 2 or not node.output[1]:  # let the forward MaxPool also write its argmax indices
        while len(node.output) < 2:
            node.output.append("")
        node.output[1] = b.fresh(scope, "indices")
    flat = b.const(np.array([-1], np.int64), scope, "flat", np.int64)
    size = b.op("Reshape", [b.op("Size", [x], scope, "size"), flat], scope, "size_1d")
    zeros = b.op("ConstantOfShape", [size], scope, "zeros")
    scattered = b.op("ScatterElements", [zeros, b.op("Reshape", [node.output[1], flat], scope, "indices_flat"),
                                         b.op("Reshape", [rel_outs[0], flat], scope, "relevance_flat")],
                     scope, "scatter", axis=0, reduction="add")
    return {x: b.op("Reshape", [scattered, b.op("Shape", [x], scope, "input_shape")], scope, "relevance")}


def _average_adjoint(b, step, g):
    """The adjoint of the average: each window's g / (the inputs it averages), spread back over the window."""
    node, x, scope = step.node, step.node.input[0], step.name
    geo = spatial_geometry(b, node, attrs_of(node)["kernel_shape"])
    channels = b.static_shape(x, node)[1]
    # 1/divisor per window = AveragePool(ones) / (real inputs in the window); constant subgraph, folded by runtimes
    pool_attrs = {a.name: a for a in node.attribute}
    ones = b.const(np.ones([1, 1] + geo["in_spatial"], np.float32), scope, "ones")
    mean_of_ones = b.op("AveragePool", [ones], scope, "mean_of_ones")
    b.nodes[-1].attribute.extend(pool_attrs.values())
    pads, out_pad = transpose_pads(geo)
    count = b.op("Conv", [ones, b.const(np.ones([1, 1] + geo["kernel"], np.float32), scope, "window")], scope,
                 "window_count", strides=geo["strides"], dilations=geo["dilations"], pads=pads)
    inv_divisor = b.op("Div", [mean_of_ones, b.op("Max", [count, b.scalar(1.0)], scope, "count_safe")], scope,
                       "inv_divisor")
    weighted = b.op("Mul", [g, inv_divisor], scope, "weighted")
    return b.op("ConvTranspose", [weighted, b.const(np.ones([channels, 1] + geo["kernel"], np.float32), scope,
                                                    "spread_kernel")], scope, "spread",
                group=channels, strides=geo["strides"], dilations=geo["dilations"], pads=pads,
                output_padding=out_pad if any(out_pad) else None)


@register("AveragePool")
def averagepool_norm(b, step, rel_outs):
    x, z, scope = step.node.input[0], step.node.output[0], step.name
    ratio = b.divide_stabilized(rel_outs[0], z, b.norm_stabilizer, scope)
    return {x: b.op("Mul", [x, _average_adjoint(b, step, ratio)], scope, "relevance")}


@register_gradient("AveragePool")
def averagepool_gradient(b, step, grads):
    return {step.node.input[0]: _average_adjoint(b, step, grads[0])}


@register("GlobalAveragePool")
def global_averagepool_norm(b, step, rel_outs):
    node, x, z, scope = step.node, step.node.input[0], step.node.output[0], step.name
    area = float(np.prod(b.static_shape(x, node)[2:]))
    ratio = b.divide_stabilized(rel_outs[0], z, b.norm_stabilizer, scope)
    share = b.op("Div", [ratio, b.scalar(area)], scope, "share")
    return {x: b.op("Mul", [x, share], scope, "relevance")}


@register_gradient("GlobalAveragePool")
def global_averagepool_gradient(b, step, grads):
    x, scope = step.node.input[0], step.name
    share = b.op("Div", [grads[0], b.scalar(float(np.prod(b.static_shape(x, step.node)[2:])))], scope, "share")
    return {x: b.op("Expand", [share, b.op("Shape", [x], scope, "input_shape")], scope, "gradient")}
