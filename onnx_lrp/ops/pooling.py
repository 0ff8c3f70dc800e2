"""Pooling: MaxPool routes relevance to the winner (its plain vector-Jacobian product, as Zennit leaves it);
AveragePool and GlobalAveragePool use the Norm rule R_i = a_i * sum_j R_j / (k_j * s(z_j)) (Zennit's AvgPool map).
"""
import itertools

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
    """Each window's relevance goes to its first maximum in row-major order (the element PyTorch's and onnxruntime's
    argmax pick). Written with Slice, ArgMax and a ConvTranspose that places each window offset back, not with
    MaxPool's Indices output, whose layout runtimes read differently (OpenVINO numbers per channel)."""
    node, x, scope = step.node, step.node.input[0], step.name
    geo = spatial_geometry(b, node, attrs_of(node)["kernel_shape"])
    k, s, d, nd = geo["kernel"], geo["strides"], geo["dilations"], len(geo["kernel"])
    channels = b.static_shape(x, node)[1]
    begin = geo["pads"][:nd]
    # the padded length each window offset's strided slice needs (ceil_mode windows may run past the end pads)
    needed = [(o - 1) * st + (kk - 1) * dd + 1 for o, st, kk, dd in zip(geo["out_spatial"], s, k, d)]
    end = [max(n - i - pb, 0) for n, i, pb in zip(needed, geo["in_spatial"], begin)]
    stacked = b.op("Unsqueeze", [x, b.const(np.array([2], np.int64), scope, "offset_axis", np.int64)], scope,
                   "with_offset_axis")
    if any(begin) or any(end):
        lowest = b.scalar(float(np.finfo(np.float32).min))
        stacked = b.op("Pad", [stacked, b.const(np.array([0, 0, 0] + begin + [0, 0, 0] + end, np.int64), scope,
                                                "pads", np.int64), lowest], scope, "padded")
    offsets = list(itertools.product(*(range(kk) for kk in k)))
    axes = b.const(np.arange(3, 3 + nd, dtype=np.int64), scope, "window_axes", np.int64)
    steps = b.const(np.array(s, np.int64), scope, "strides", np.int64)
    candidates = []
    for offset in offsets:
        first = [o * dd for o, dd in zip(offset, d)]
        last = [f + (o - 1) * st + 1 for f, o, st in zip(first, geo["out_spatial"], s)]
        candidates.append(b.op("Slice", [stacked, b.const(np.array(first, np.int64), scope, "offset_start", np.int64),
                                         b.const(np.array(last, np.int64), scope, "offset_end", np.int64),
                                         axes, steps], scope, "window_offset"))
    windows = b.op("Concat", candidates, scope, "windows", axis=2)  # [N, C, offsets, *out]
    winner = b.op("ArgMax", [windows], scope, "winner", axis=2, keepdims=1, select_last_index=0)
    offset_ids = b.const(np.arange(len(offsets), dtype=np.int64).reshape([1, 1, -1] + [1] * nd), scope,
                         "offset_ids", np.int64)
    wins = b.op("Cast", [b.op("Equal", [winner, offset_ids], scope, "is_winner")], scope, "wins", to=1)
    routed = b.op("Mul", [wins, b.op("Unsqueeze", [rel_outs[0], b.const(np.array([2], np.int64), scope,
                                                                         "offset_axis", np.int64)],
                                     scope, "relevance_per_window")], scope, "routed")
    flat = b.op("Reshape", [routed, b.const(np.array([0, channels * len(offsets)] + list(geo["out_spatial"]),
                                                     np.int64), scope, "channels_by_offset", np.int64)],
                scope, "routed_flat")
    place = np.zeros([channels * len(offsets), 1] + k, np.float32)  # offset j of channel c -> its kernel position
    for j, offset in enumerate(offsets):
        place[(np.arange(channels) * len(offsets) + j, 0) + tuple(offset)] = 1.0
    pads, out_pad = transpose_pads(geo)
    return {x: b.op("ConvTranspose", [flat, b.const(place, scope, "place_kernel")], scope, "relevance",
                    group=channels, strides=s, dilations=d, pads=pads,
                    output_padding=out_pad if any(out_pad) else None)}


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
