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
    argmax pick), found by ArgMax over the windows' elements stacked on an axis of their own, not read from
    MaxPool's Indices output, whose layout runtimes read differently (OpenVINO numbers per channel). Square windows
    that tile the input (VGG's 2x2/2) are stacked by SpaceToDepth, others by a grouped Conv with one-hot kernels;
    a ConvTranspose with the same one-hot kernels places each window's relevance back (onnxruntime runs both
    2-3x faster than strided Slices and DepthToSpace)."""
    node, x, scope = step.node, step.node.input[0], step.name
    geo = spatial_geometry(b, node, attrs_of(node)["kernel_shape"])
    channels = b.static_shape(x, node)[1]
    tiles = (geo["kernel"] == geo["strides"] and set(geo["dilations"]) == {1} and not any(geo["pads"])
             and all(o * k == i for o, k, i in zip(geo["out_spatial"], geo["kernel"], geo["in_spatial"])))
    count = int(np.prod(geo["kernel"]))
    spatial = [1] * len(geo["kernel"])
    if tiles and len(geo["kernel"]) == 2 and geo["kernel"][0] == geo["kernel"][1]:
        # SpaceToDepth puts window offset k of channel c at channel k * C + c: [N, count, C, *out]
        windows = b.op("Reshape", [b.op("SpaceToDepth", [x], scope, "blocks", blocksize=geo["kernel"][0]),
                                   _shape(b, [0, count, channels] + geo["out_spatial"], scope, "blocks_shape")],
                       scope, "windows")
        first = b.op("ArgMax", [windows], scope, "winner_blocks", axis=1, keepdims=1, select_last_index=0)
        # [N, 1, C, *out] and [N, C, 1, *out] are the same array
        winner = b.op("Reshape", [first, _shape(b, [0, channels, 1] + geo["out_spatial"], scope, "winner_shape")],
                      scope, "winner")
    else:
        windows = _gathered_windows(b, x, geo, channels, scope)  # [N, C, count, *out]
        winner = b.op("ArgMax", [windows], scope, "winner", axis=2, keepdims=1, select_last_index=0)
    offset_ids = b.const(np.arange(count, dtype=np.int64).reshape([1, 1, count] + spatial), scope, "offset_ids",
                         np.int64)
    wins = b.op("Cast", [b.op("Equal", [winner, offset_ids], scope, "is_winner")], scope, "wins", to=1)
    routed = b.op("Mul", [wins, b.op("Unsqueeze", [rel_outs[0], _shape(b, [2], scope, "offset_axis")],
                                     scope, "relevance_per_window")], scope, "routed")
    return {x: _conv_place(b, routed, geo, channels, scope)}


def _shape(b, dims, scope, hint):
    return b.const(np.array(dims, np.int64), scope, hint, np.int64)


def _one_hot_kernels(kernel):
    """[count, 1, *kernel]: kernel j is one at window offset j (row-major), zero elsewhere."""
    offsets = list(itertools.product(*(range(k) for k in kernel)))
    place = np.zeros([len(offsets), 1] + list(kernel), np.float32)
    for j, offset in enumerate(offsets):
        place[(j, 0) + tuple(offset)] = 1.0
    return place


def _gathered_windows(b, x, geo, channels, scope):
    """[N, C, count, *out]: x padded with the lowest float where windows reach past it, then a Conv with one one-hot
    kernel per window offset in each channel's group (exact: one product by 1, the rest by 0)."""
    k, s, d, nd = geo["kernel"], geo["strides"], geo["dilations"], len(geo["kernel"])
    begin = geo["pads"][:nd]
    # the padded length the windows need (ceil_mode windows may run past the end pads)
    needed = [(o - 1) * st + (kk - 1) * dd + 1 for o, st, kk, dd in zip(geo["out_spatial"], s, k, d)]
    end = [max(n - i - pb, 0) for n, i, pb in zip(needed, geo["in_spatial"], begin)]
    if any(begin) or any(end):
        lowest = b.scalar(float(np.finfo(np.float32).min))
        x = b.op("Pad", [x, _shape(b, [0, 0] + begin + [0, 0] + end, scope, "pads"), lowest], scope, "padded")
    kernels = b.const(np.tile(_one_hot_kernels(k), (channels,) + (1,) * (nd + 1)), scope, "gather_kernel")
    stacked = b.op("Conv", [x, kernels], scope, "window_elements", strides=s, dilations=d, group=channels)
    return b.op("Reshape", [stacked, _shape(b, [0, channels, int(np.prod(k))] + geo["out_spatial"], scope,
                                             "windows_shape")], scope, "windows")


def _conv_place(b, routed, geo, channels, scope):
    """Each window offset's relevance back to its pixel: a ConvTranspose over the offsets as input channels, whose
    kernel for offset j is one at that offset, with samples and channels merged into its batch (group 1: grouped
    ConvTranspose is read differently by onnx.reference)."""
    merged = b.op("Reshape", [routed, _shape(b, [-1, int(np.prod(geo["kernel"]))] + list(geo["out_spatial"]), scope,
                                             "offsets_as_channels")], scope, "routed_merged")
    pads, out_pad = transpose_pads(geo)
    placed = b.op("ConvTranspose", [merged, b.const(_one_hot_kernels(geo["kernel"]), scope, "place_kernel")], scope,
                  "placed", strides=geo["strides"], dilations=geo["dilations"], pads=pads,
                  output_padding=out_pad if any(out_pad) else None)
    return b.op("Reshape", [placed, _shape(b, [-1, channels] + geo["in_spatial"], scope, "input_shape")], scope,
                "relevance")


def _inverse_divisors(node, geo, pads, opset):
    """1 / divisor per window, [1, 1, *out]: AveragePool(ones) (with the node's own attributes, so padding counts
    as the model says) / the real inputs in the window, evaluated once here by onnxruntime, the reference runtime
    of the model's semantics. As graph nodes it was a constant subgraph that OpenVINO's bf16 mode cannot compile."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
    pool = helper.make_node("AveragePool", ["ones"], ["mean"])
    pool.attribute.extend(node.attribute)
    window = numpy_helper.from_array(np.ones([1, 1] + geo["kernel"], np.float32), "window")
    nodes = [pool, helper.make_node("Conv", ["ones", "window"], ["count"], strides=geo["strides"],
                                    dilations=geo["dilations"], pads=pads),
             helper.make_node("Max", ["count", "one"], ["count_safe"]),
             helper.make_node("Div", ["mean", "count_safe"], ["inverse"])]
    graph = helper.make_graph(nodes, "divisors", [], [helper.make_tensor_value_info("inverse", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.ones([1, 1] + geo["in_spatial"], np.float32), "ones"),
                               window, numpy_helper.from_array(np.array(1.0, np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = helper.find_min_ir_version_for(list(model.opset_import))
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {})[0]


def _average_adjoint(b, step, g):
    """The adjoint of the average: each window's g / (the inputs it averages), spread back over the window."""
    node, x, scope = step.node, step.node.input[0], step.name
    geo = spatial_geometry(b, node, attrs_of(node)["kernel_shape"])
    channels = b.static_shape(x, node)[1]
    pads, out_pad = transpose_pads(geo)
    inv_divisor = b.const(_inverse_divisors(node, geo, pads, b.opset), scope, "inv_divisor")
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
