"""Resize in linear and cubic mode (feature pyramids, segmentation decoders): relevance goes back by the op's exact
adjoint, R_x = A^T R_y, one interpolation matrix A [out, in] per resized axis.

Why the adjoint: Resize is linear in its input and computes no learnt mapping, so it is routed like the other ops
that only move values (movement.py: nearest Resize, Slice, Pad route relevance along their copies, which is their
adjoint too), as Zennit's plain gradient passes relevance through modules that have no rule. Interpolation weights
sum to 1 per output, so relevance is conserved where no output reads past the border.

Each axis's matrix is found once at compile time by running the model's own Resize (onnx.reference) on basis vectors
along that axis alone, whatever the coordinate transformation, cubic coefficient or exclude_outside; the product of
the per-axis maps is then checked against the op on a random input, so a mode that is not separable is refused
rather than approximated. Nearest Resize stays with movement.py.
"""
from dataclasses import dataclass

import numpy as np
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from . import movement
from .registry import SAME, attrs_of, register


@dataclass
class Interpolation:
    matrices: dict  # axis -> A [out, in], float32

    def describe(self):
        return "adjoint (interpolation weights)"


def _run(node, x, scales, sizes, opsets, roi=None):
    inputs = {node.input[0]: x}
    names = list(node.input) + [""] * (4 - len(node.input))
    if names[1]:
        inputs[names[1]] = roi if roi is not None else np.zeros(0, np.float32)
    if names[2] and scales is not None:
        inputs[names[2]] = scales
    if names[3] and sizes is not None:
        inputs[names[3]] = sizes
    probe = helper.make_node("Resize", [n if n in inputs else "" for n in names[:4]], ["y"], **attrs_of(node))
    graph = helper.make_graph([probe], "resize", [], [helper.make_tensor_value_info("y", 1, None)],
                              [numpy_helper.from_array(np.asarray(v), n) for n, v in inputs.items()])
    return np.asarray(ReferenceEvaluator(helper.make_model(graph, opset_imports=opsets)).run(None, {})[0])


def _check(step, ctx):
    node = step.node
    a = attrs_of(node)
    if a.get("mode", b"nearest") == b"nearest":
        return movement.check(step, ctx)
    if node.op_type != "Resize" or len(node.input) < 3:
        return "Upsample in linear mode: convert the model to opset 11 or later"
    if a.get("coordinate_transformation_mode", b"half_pixel") == b"tf_crop_and_resize":
        return "Resize with coordinate_transformation_mode tf_crop_and_resize has no relevance rule"
    if [n for n in node.input if n and n in ctx.live] != [node.input[0]]:
        return "the explained input reaches the scales or sizes of this Resize"
    missing = [n for n in node.input[1:] if n and n not in ctx.constants]
    if missing:
        return f"its inputs {missing} are computed at run time; onnx-lrp needs them constant"
    dims, out = ctx.shapes.get(node.input[0]), ctx.shapes.get(node.output[0])
    if not dims or not out or len(dims) != len(out) or any(d is None for d in dims[1:] + out[1:]):
        return f"its input {dims} or output {out} has no static shape beyond the batch"
    names = list(node.input) + [""] * (4 - len(node.input))
    scales = np.asarray(ctx.constants[names[2]], np.float32) if names[2] and np.size(ctx.constants[names[2]]) else None
    sizes = np.asarray(ctx.constants[names[3]], np.int64) if names[3] else None
    roi = np.asarray(ctx.constants[names[1]], np.float32) if names[1] else None
    rank = len(dims)
    changed = [k for k in range(1, rank) if dims[k] != out[k] or (scales is not None and scales[k] != 1)]
    if scales is not None and scales[0] != 1 or sizes is not None and dims[0] is not None and sizes[0] != dims[0]:
        return "this Resize scales the batch dimension"
    matrices = {}
    for k in changed:
        shape = [dims[k]] + [1] * (rank - 1)
        shape[k] = dims[k]
        basis = np.zeros(shape, np.float32)
        for i in range(dims[k]):
            basis[(i,) + (0,) * (k - 1) + (i,) + (0,) * (rank - k - 1)] = 1
        axis_scales = None if scales is None else np.where(np.arange(rank) == k, scales, 1).astype(np.float32)
        axis_sizes = None if sizes is None else np.array(shape[:k] + [out[k]] + shape[k + 1:], np.int64)
        try:
            y = _run(node, basis, axis_scales, axis_sizes, ctx.opsets, roi)
        except Exception as exc:  # noqa: BLE001 - reported as an unsupported node
            return f"cannot trace this Resize's interpolation ({type(exc).__name__}: {exc})"
        matrices[k] = np.moveaxis(y.reshape([dims[k]] + [y.shape[j] for j in range(1, rank)]), k, -1).reshape(
            dims[k], out[k]).T.astype(np.float32)
    x = np.random.default_rng(0).normal(size=[1] + list(dims[1:])).astype(np.float32)
    try:
        expected = _run(node, x, scales, None if sizes is None else np.array([1] + list(sizes[1:]), np.int64),
                        ctx.opsets, roi)
    except Exception as exc:  # noqa: BLE001
        return f"cannot run this Resize at compile time ({type(exc).__name__}: {exc})"
    separable = x.astype(np.float64)
    for k, m in matrices.items():
        separable = np.moveaxis(np.moveaxis(separable, k, -1) @ m.T.astype(np.float64), -1, k)
    if separable.shape != expected.shape or not np.allclose(separable, expected, atol=1e-4):
        return "this Resize's interpolation is not one matrix per axis (antialias?); it has no relevance rule yet"
    step.extra = Interpolation(matrices)
    return None


@register("Resize", "Upsample", check=_check, gradient=SAME)
def resize_back(b, step, rel_outs):
    if not isinstance(step.extra, Interpolation):
        return movement.scatter_back(b, step, rel_outs)
    relevance, scope = rel_outs[0], step.name
    rank = len(b.shapes[step.node.input[0]])
    for k, matrix in sorted(step.extra.matrices.items()):
        a = b.const(matrix, scope, f"interpolation_{k}")
        if k == rank - 1:  # R [..., out] @ A [out, in]
            relevance = b.op("MatMul", [relevance, a], scope, f"adjoint_{k}")
        elif k == rank - 2:  # A^T [in, out] @ R [..., out, W]
            relevance = b.op("MatMul", [b.const(matrix.T, scope, f"interpolation_T_{k}"), relevance], scope,
                             f"adjoint_{k}")
        else:
            perm = [j for j in range(rank) if j != k] + [k]
            moved = b.op("Transpose", [relevance], scope, f"axis_{k}_last", perm=perm)
            moved = b.op("MatMul", [moved, a], scope, f"adjoint_{k}")
            relevance = b.op("Transpose", [moved], scope, f"axis_{k}_back", perm=list(np.argsort(perm)))
    return {step.node.input[0]: relevance}
