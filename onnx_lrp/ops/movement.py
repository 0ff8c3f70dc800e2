"""Ops that copy elements of one input to places in the output: Slice, Gather (constant indices), Pad, Expand,
Tile, Resize (nearest; resize.py registers Resize and hands nearest ones to this module), DepthToSpace, SpaceToDepth.

Relevance goes back along the copies, as Zennit's plain gradient routes it: an output element hands its relevance
to the input element it was copied from, copies of one element add up, padding takes nothing. Which element went
where is found once at compile time by running the op (onnx.reference) on a numbered tensor of the input's static
shape. The backward is then one ScatterElements(add) per op, the same for every op of this family.

Two variants need no trace: a Gather at a scalar or a vector of indices (constant or computed at run time, as the
last-token pooling of decoder classifiers) scatters back at those indices, along whatever axis; an Expand to a shape
computed at run time (Llama's repeat_kv) sums the copies back.
"""
from dataclasses import dataclass

import numpy as np
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .registry import SAME, attrs_of, register

MOVEMENT_OPS = ("Slice", "Gather", "Pad", "Expand", "Tile", "Resize", "Upsample", "DepthToSpace", "SpaceToDepth")
_PROBE_BATCH = 2  # a symbolic batch is probed with two samples, to check the op keeps samples apart


def _evaluate(node, data, ctx, opsets):
    """Run `node` on `data` (its first input); the other inputs are the model's constants. Padding reads 0."""
    feeds = {node.input[0]: data}
    for k, name in enumerate(node.input[1:], start=1):
        if name:
            value = ctx.constants[name]
            if node.op_type == "Pad" and k == 2:
                value = np.zeros_like(value, dtype=np.float64)
            feeds[name] = value
    graph = helper.make_graph([node], "probe", [], [helper.make_tensor_value_info(node.output[0], 1, None)],
                              initializer=[numpy_helper.from_array(np.asarray(v), n) for n, v in feeds.items()])
    model = helper.make_model(graph, opset_imports=opsets)
    return ReferenceEvaluator(model).run(None, {})[0]


def source_map(step, ctx):
    """(map, per_sample) or an error string. map[k] = the flat input index output element k copies, -1 for padding;
    per sample (map over one sample's elements) when the batch is symbolic, over the whole tensor when it is fixed."""
    node = step.node
    x = node.input[0]
    if [n for n in node.input if n and n in ctx.live] != [x]:
        return "the explained input reaches an index, shape or parameter input of this op"
    missing = [n for n in node.input[1:] if n and n not in ctx.constants]
    if missing:
        return f"its inputs {missing} are computed at run time; onnx-lrp needs them constant to route relevance"
    dims = ctx.shapes.get(x)
    if dims is None or any(d is None for d in dims[1:]) or not dims:
        return f"its input '{x}' has no static shape {dims}; export with fixed input sizes"
    out_dims = ctx.shapes.get(node.output[0])
    if not out_dims or out_dims[0] != dims[0]:
        return "this op mixes or moves the batch dimension; relevance is routed per sample only"
    symbolic_batch = dims[0] is None
    shape = [_PROBE_BATCH if symbolic_batch else dims[0]] + list(dims[1:])
    numbered = np.arange(1, int(np.prod(shape)) + 1, dtype=np.float64).reshape(shape)
    try:
        out = np.asarray(_evaluate(node, numbered, ctx, ctx.opsets))
    except Exception as exc:  # noqa: BLE001 - reported as an unsupported node
        return f"cannot trace where this op copies elements ({type(exc).__name__}: {exc})"
    flat = np.rint(out).astype(np.int64) - 1
    if not symbolic_batch:
        return flat.reshape(-1), False
    per_sample = int(np.prod(shape[1:]))
    if out.shape[0] != _PROBE_BATCH:
        return "this op mixes or moves the batch dimension; relevance is routed per sample only"
    first, second = flat[0].reshape(-1), flat[1].reshape(-1)
    valid = first >= 0
    if not (np.array_equal(second[valid], first[valid] + per_sample) and np.all(second[~valid] < 0)
            and np.all(first[valid] < per_sample)):
        return "this op mixes or moves the batch dimension; relevance is routed per sample only"
    return first, True


def check(step, ctx):
    node = step.node
    index_shape = ctx.shapes.get(node.input[1]) if node.op_type == "Gather" else None
    if index_shape is not None and len(index_shape) <= 1 and node.input[1] not in ctx.live:
        return _check_gather_at_indices(step, ctx)
    if node.op_type == "Expand" and node.input[1] not in ctx.constants:
        return _check_runtime_expand(step, ctx)
    if node.op_type == "Slice" and (pads := _slice_pads(node, ctx)) is not None:
        step.extra = PadBack(*pads)
        return None
    result = source_map(step, ctx)
    if isinstance(result, str):
        return result
    step.extra = result
    return None


@dataclass
class PadBack:
    pads: list
    reversed_axes: list = None

    def describe(self):
        return "pad back (slice)"


def _slice_pads(node, ctx):
    """A Slice with constant bounds, steps 1 or -1, on axes of static size cuts one block (reversed along the -1
    axes: a backward LSTM's x[::-1]): its backward reverses the block's relevance back and pads it with zeros,
    whatever the other axes hold (a state [layers, N, H] cut per layer, the batch at axis 1). (pads, reversed
    axes), or None for other Slices (traced as any copy)."""
    dims = ctx.shapes.get(node.input[0])
    args = [ctx.constants.get(n) if n else None for n in node.input[1:5]] + [None] * (5 - len(node.input))
    starts, ends, axes, steps = args[:4]
    if dims is None or starts is None or ends is None or [n for n in node.input if n in ctx.live] != [node.input[0]]:
        return None
    rank = len(dims)
    axes = list(range(len(starts))) if axes is None else [int(a) + rank if a < 0 else int(a) for a in axes]
    steps = [1] * len(axes) if steps is None else np.asarray(steps).tolist()
    if any(st not in (1, -1) for st in steps):
        return None
    pads, reversed_axes = [0] * (2 * rank), []
    for axis, start, end, st in zip(axes, np.asarray(starts).tolist(), np.asarray(ends).tolist(), steps):
        size = dims[axis]
        if size is None:
            return None
        start, end = start + size if start < 0 else start, end + size if end < 0 else end
        if st == 1:
            start = min(max(start, 0), size)
            end = min(max(end, start), size)
            pads[axis], pads[rank + axis] = start, size - end
        else:  # x[a:b:-1] takes a, a-1, ..., b+1: its relevance reversed lands there
            start = min(max(start, -1), size - 1)
            end = min(max(end, -1), start)
            pads[axis], pads[rank + axis] = end + 1, size - 1 - start
            reversed_axes.append(axis)
    return pads, reversed_axes


def _check_gather_at_indices(step, ctx):
    """A scalar or a vector of indices, constant or computed at run time. Constant indices into an axis whose size
    varies (the batch) hold for one batch size only: refused."""
    node = step.node
    dims = ctx.shapes.get(node.input[0]) or []
    axis = attrs_of(node).get("axis", 0)
    if not dims or (node.input[1] in ctx.constants and dims[axis] is None):
        return ("gathers at constant indices along an axis whose size varies (the batch); relevance is routed "
                "per sample only")
    step.extra = "at indices"
    return None


def _check_runtime_expand(step, ctx):
    """Expand to a shape computed at run time (Llama's repeat_kv): the copies are summed back (unbroadcast)."""
    node = step.node
    if any(len(ctx.shapes.get(n) or []) == 0 for n in (node.input[0], node.output[0])):
        return "expands to a shape computed at run time and its ranks are unknown"
    step.extra = "broadcast"
    return None


@register(*(op for op in MOVEMENT_OPS if op not in ("Resize", "Upsample")), check=check, gradient=SAME)
def scatter_back(b, step, rel_outs):
    """R_in[source[k]] += R_out[k] over every output element k that copies an input element."""
    if step.extra == "at indices":
        return _scatter_at_indices(b, step, rel_outs)
    if isinstance(step.extra, PadBack):
        relevance, scope = rel_outs[0], step.name
        if step.extra.reversed_axes:  # a reversed slice: reversed back
            n = len(step.extra.reversed_axes)
            relevance = b.op("Slice", [relevance, b.const(np.full(n, -1, np.int64), scope, "starts", np.int64),
                                       b.const(np.full(n, -2 ** 62, np.int64), scope, "ends", np.int64),
                                       b.const(np.array(step.extra.reversed_axes, np.int64), scope, "axes", np.int64),
                                       b.const(np.full(n, -1, np.int64), scope, "steps", np.int64)], scope,
                             "reversed")
        pads = b.const(np.array(step.extra.pads, np.int64), scope, "pads", np.int64)
        return {step.node.input[0]: b.op("Pad", [relevance, pads], scope, "relevance")}
    if step.extra == "broadcast":
        return {step.node.input[0]: b.unbroadcast(rel_outs[0], step.node.input[0], step.node.output[0], step.name)}
    (source, per_sample), x, scope = step.extra, step.node.input[0], step.name
    flat_r = b.op("Reshape", [rel_outs[0], b.const(np.array([0 if per_sample else 1, -1], np.int64), scope,
                                                   "rows", np.int64)], scope, "relevance_rows")
    valid = np.flatnonzero(source >= 0)
    if valid.size < source.size:  # padding: those outputs copy no input element and pass nothing
        flat_r = b.op("Gather", [flat_r, b.const(valid, scope, "copied", np.int64)], scope, "copied_relevance",
                      axis=1)
    rows = b.op("Shape", [flat_r], scope, "rows_shape")
    index = b.op("Expand", [b.const(source[valid][None, :], scope, "source_index", np.int64), rows], scope,
                 "index")
    size = int(np.prod(b.static_shape(x, step.node)[1:])) if per_sample else int(np.prod(b.shapes[x]))
    zeros_shape = b.op("Concat", [b.op("Shape", [flat_r], scope, "batch", start=0, end=1),
                                  b.const(np.array([size], np.int64), scope, "size", np.int64)], scope,
                       "zeros_shape", axis=0)
    zeros = b.op("ConstantOfShape", [zeros_shape], scope, "zeros")
    scattered = b.op("ScatterElements", [zeros, index, flat_r], scope, "scatter", axis=1, reduction="add")
    return {x: b.op("Reshape", [scattered, b.op("Shape", [x], scope, "input_shape")], scope, "relevance")}


def _scatter_at_indices(b, step, rel_outs):
    """Gather(data, idx, axis) backward: add each gathered slice's relevance back at its index (constant or
    computed at run time: the last-token pooling of GPT-2 and Llama classifiers)."""
    node, scope = step.node, step.name
    data, idx = node.input[:2]
    rank = len(b.shapes[data])
    axis = attrs_of(node).get("axis", 0)
    axis = axis + rank if axis < 0 else axis
    updates = rel_outs[0]
    if len(b.shapes.get(idx) or []) == 0:  # a scalar index drops the axis: put it back
        updates = b.op("Unsqueeze", [updates, b.const(np.array([axis], np.int64), scope, "axis", np.int64)],
                       scope, "updates")
    index_shape = np.ones(rank, np.int64)
    index_shape[axis] = -1
    index = b.op("Reshape", [b.op("Cast", [idx], scope, "index_int64", to=7),
                             b.const(index_shape, scope, "index_shape", np.int64)], scope, "index_column")
    index = b.op("Expand", [index, b.op("Shape", [updates], scope, "updates_shape")], scope, "index")
    size = b.op("Shape", [data], scope, "data_shape")
    positive = b.op("Where", [b.op("Less", [index, b.scalar(0, dtype=np.int64)], scope, "negative"),
                              b.op("Add", [index, b.op("Gather", [size, b.const(np.array(axis, np.int64), scope,
                                                                                 "axis_index", np.int64)],
                                                        scope, "axis_size")], scope, "wrapped"), index],
                     scope, "index_positive")
    zeros = b.op("ConstantOfShape", [size], scope, "zeros")
    return {data: b.op("ScatterElements", [zeros, positive, updates], scope, "relevance", axis=axis,
                       reduction="add")}
