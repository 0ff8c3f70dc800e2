"""Normalization layers in the transformer composites (gradient form, ../shared/attnlrp.md): the normalizer is a
constant, the rest keeps its gradient.

- LayerNormalization, GroupNormalization and InstanceNormalization (which torch also writes for GroupNorm, on a
  reshaped tensor before a per-channel affine): g_x = u - mean(u) over the normalized axes, u = gamma * g_y / sigma
  (sigma constant: LXT's `layer_norm_forward` detaches the std).
- The same written out (LayerNorm before opset 17, RMSNorm always), found by dataflow: a Div by, or a Mul with, a
  tensor computed from the other operand through a reduction over it and element-wise ops (sqrt, + eps, 1 / .)
  is a normalization by that constant; the centering `x - mean(x)` is a difference of two activations with the
  plain gradient.
"""
from dataclasses import dataclass

import numpy as np

from .registry import SAME, attrs_of, register


@dataclass
class NormalizedStep:
    data: str
    normalizer: str

    def describe(self):
        return f"normalizer '{self.normalizer}' constant"

    def emit(self, b, step, rel_outs):  # pragma: no cover - planned only in gradient form
        raise NotImplementedError

    def gradient(self, b, step, grads):
        op = "Div" if step.node.op_type == "Div" else "Mul"
        return {self.data: b.op(op, [grads[0], self.normalizer], step.name, "gradient")}


@dataclass
class PlainSumStep:
    """a + b or a - b of activations (residuals, embedding sums, masks, LayerNorm's centering), gradient form: each
    summand gets the plain gradient (negated for a subtrahend), summed over what it was broadcast along."""

    def describe(self):
        return "gradient"

    def emit(self, b, step, rel_outs):  # pragma: no cover - planned only in gradient form
        raise NotImplementedError

    def gradient(self, b, step, grads):
        node, scope, out = step.node, step.name, step.node.output[0]
        result = {}
        for k, name in enumerate(node.input):
            if name not in step.live_inputs:
                continue
            g = grads[0] if k == 0 or node.op_type != "Sub" else b.op("Neg", [grads[0]], scope, "negated")
            g = b.unbroadcast(g, name, out, scope)
            result[name] = b.op("Add", [result[name], g], scope, "repeat") if name in result else g
        return result


def plan_two_activations(step, ctx, why):
    """Gradient form: Div/Mul by a normalizer of the other operand, or Sub of two activations; else `why`."""
    node = step.node
    live = [n for n in node.input if n and n in ctx.live]
    if len(live) != 2:
        return why
    if node.op_type == "Sub":
        step.extra = PlainSumStep()
        return None
    data, other = live
    candidates = [(data, other)] if node.op_type == "Div" else [(data, other), (other, data)]
    for a, normalizer in candidates:
        if ctx.flow.normalizer_of(normalizer, a):
            step.extra = NormalizedStep(a, normalizer)
            step.live_inputs = [a]
            return None
    return why


def _check_norm(step, ctx):
    if ctx.composite.form != "gradient":
        return (f"{step.node.op_type} has a rule in the transformer composites only: use --composite attnlrp or "
                "cp-lrp")
    node = step.node
    if [n for n in node.input if n in ctx.live] != [node.input[0]]:
        return f"the explained input reaches the scale or bias of {node.op_type}"
    dims = ctx.shapes.get(node.input[0]) or []
    rank = len(dims)
    if rank < 2:
        return "its input has no known rank"
    if node.op_type == "InstanceNormalization":  # per sample and channel, over the spatial axes
        step.extra = NormalizationStep(list(range(2, rank)), [-1] + [1] * (rank - 2))
    elif node.op_type == "GroupNormalization":  # per sample and group of channels
        groups, scale = attrs_of(node)["num_groups"], ctx.constants.get(node.input[1])
        if scale is None or dims[1] is None:
            return "GroupNormalization needs a constant scale and a known number of channels"
        per_channel = np.repeat(scale, dims[1] // groups) if scale.size == groups else scale  # opset 18 or 21
        step.extra = NormalizationStep([2], None, groups, per_channel.reshape([-1] + [1] * (rank - 2)))
    else:
        axis = attrs_of(node).get("axis", -1)
        step.extra = NormalizationStep(list(range(axis + rank if axis < 0 else axis, rank)), None)
    return None


@dataclass
class NormalizationStep:
    axes: list  # the normalized axes (of the [N, groups, -1] view for GroupNormalization)
    scale_shape: list  # how the scale input broadcasts onto the input (None: as it is)
    groups: int = None
    channel_scale: np.ndarray = None  # GroupNormalization: the scale per channel, [C, 1, ...]

    def describe(self):
        return "normalizer constant"


@register("LayerNormalization", "InstanceNormalization", "GroupNormalization", check=_check_norm, gradient=SAME)
def normalization_gradient(b, step, grads):
    """g_x = u - mean(u) over the normalized axes, u = scale * g_y / sigma, sigma recomputed from x with plain ops
    (one way for all three ops, and no reliance on LayerNormalization's optional outputs, which not every runtime
    implements)."""
    node, scope, x, extra = step.node, step.name, step.node.input[0], step.extra
    if extra.channel_scale is not None:
        scale = b.const(extra.channel_scale, scope, "channel_scale")
    elif extra.scale_shape:
        scale = b.op("Reshape", [node.input[1], b.const(np.array(extra.scale_shape, np.int64), scope, "scale_shape",
                                                        np.int64)], scope, "scale")
    else:
        scale = node.input[1]
    g, normalized = b.op("Mul", [grads[0], scale], scope, "scaled"), x
    if extra.groups:
        grouped = b.const(np.array([0, extra.groups, -1], np.int64), scope, "group_shape", np.int64)
        g = b.op("Reshape", [g, grouped], scope, "scaled_grouped")
        normalized = b.op("Reshape", [x, grouped], scope, "grouped")
    axes = extra.axes
    centered = b.op("Sub", [normalized, b.reduce("ReduceMean", normalized, axes, scope, "mean")], scope, "centered")
    variance = b.reduce("ReduceMean", b.op("Mul", [centered, centered], scope, "squared"), axes, scope, "variance")
    epsilon = b.scalar(float(attrs_of(node).get("epsilon", 1e-5)))
    inv_std = b.op("Reciprocal", [b.op("Sqrt", [b.op("Add", [variance, epsilon], scope, "variance_eps")], scope,
                                       "std")], scope, "inv_std")
    u = b.op("Mul", [g, inv_std], scope, "u")
    gradient = b.op("Sub", [u, b.reduce("ReduceMean", u, axes, scope, "u_mean")], scope, "gradient")
    if extra.groups:
        gradient = b.op("Reshape", [gradient, b.op("Shape", [x], scope, "shape")], scope, "gradient_ungrouped")
    return {x: gradient}
