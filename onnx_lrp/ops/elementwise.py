"""Element-wise ops, recognised by dataflow (dataflow.py) rather than by spelling: the relevance of an
element-wise function of one tensor goes straight back to that tensor.

- An activation in any spelling (Relu, `x * Sigmoid(x)`, paddle2onnx's `x * Clip(x + 3, 0, 6) / 6`, erf or tanh
  GELU, Mish, ...) passes relevance unchanged (Zennit's Pass) to the affine tensor its non-linear ops read, or to
  the region's root where they read several. In gradient form (transformer composites) that is LXT's identity
  rule, g_x = g_y * y / (x + 1e-10).
- A standalone affine y = s * x + t (BatchNorm as Mul + Add after a Concat or before a ReLU; a BatchNormalization
  with no linear layer before it) is a diagonal linear layer with the Epsilon rule, R_x = s*x / (y + eps*sign(y))
  * R_y, computed as (y - t) / s(y) * R_y: its shift absorbs its share like a bias, with the composite's epsilon.
  A pure scale (t = 0) and input preprocessing (no Conv/Gemm/MatMul upstream) pass relevance through. In gradient
  form an affine is LRP-0: g_x = s * g_y.

The variants of two-input ops that are not one tensor's function (gates, normalizers, products of activations,
residual sums) live in gate.py, normalization.py and merge.py; every planned variant is a small class with
`describe`, `emit` (relevance form) and `gradient` (gradient form), which the registered emitters dispatch to.
"""
from dataclasses import dataclass

import numpy as np

from ..dataflow import ELEMENTWISE
from .normalization import plan_two_activations
from .registry import register

IDENTITY_RULE_EPS = 1e-10  # LXT's identity rule adds it (not sign-aware)


@dataclass
class ElementwiseStep:
    target: str  # the tensor relevance (or the gradient) goes to
    scale: np.ndarray = None  # y = scale * target + shift; None: y is an activation of target
    shift: np.ndarray = None  # relevance form: the shift absorbs (diagonal Epsilon); None: pass through
    epsilon: float = 0.0
    combines: bool = False  # several of the node's inputs derive from the target (x * Sigmoid(x))

    def describe(self):
        if self.shift is not None:
            return f"epsilon (diagonal affine, epsilon={self.epsilon:g})"
        return f"pass (activation of '{self.target}')" if self.combines else "pass"

    def emit(self, b, step, rel_outs):
        if self.shift is None:
            return {self.target: rel_outs[0]}
        scope, y = step.name, step.node.output[0]
        scaled = b.op("Sub", [y, b.const(self.shift, scope, "shift")], scope, "scaled_input")
        ratio = b.divide_stabilized(rel_outs[0], y, self.epsilon, scope)
        return {self.target: b.op("Mul", [scaled, ratio], scope, "relevance")}

    def gradient(self, b, step, grads):
        scope = step.name
        if self.scale is not None:
            if np.all(self.scale == 1):
                return {self.target: grads[0]}
            return {self.target: b.op("Mul", [grads[0], b.const(self.scale, scope, "scale")], scope, "gradient")}
        shifted = b.op("Add", [self.target, b.scalar(IDENTITY_RULE_EPS)], scope, "input_shifted")
        ratio = b.op("Div", [step.node.output[0], shifted], scope, "identity_ratio")
        return {self.target: b.op("Mul", [grads[0], ratio], scope, "gradient")}


def plan_elementwise(step, ctx):
    """Fill step.extra for an element-wise function of one tensor; else return why the node is not one."""
    out = step.node.output[0]
    region = ctx.flow.region.get(out)
    if region is None:
        return ctx.flow.why_not.get(out, "no relevance rule for this op")
    if region.affine is not None:
        base, scale, shift = region.root, *region.affine
    elif region.suffix is not None:
        base, scale, shift = region.suffix
    else:
        base, scale, shift = None, None, 0.0
    if base is not None and np.any(shift != 0) and not ctx.flow.is_preprocessing(base):
        step.extra = ElementwiseStep(base, _f32(scale), np.asarray(shift, np.float32), ctx.params["epsilon"])
    elif region.affine is not None:
        step.extra = ElementwiseStep(region.root, _f32(scale))
    else:
        target = next(iter(region.frontier)) if len(region.frontier) == 1 else region.root
        step.extra = ElementwiseStep(target, combines=len([n for n in step.node.input if n in ctx.live]) > 1)
    step.live_inputs = [step.extra.target]
    return None


def _f32(array):
    return np.asarray(array, np.float32)


def emit_variant(b, step, rel_outs):
    return step.extra.emit(b, step, rel_outs)


def gradient_variant(b, step, grads):
    return step.extra.gradient(b, step, grads)


def _check(step, ctx):
    why = plan_elementwise(step, ctx)
    if why is not None and ctx.composite.form == "gradient":
        return plan_two_activations(step, ctx, why)
    return why


register(*sorted(ELEMENTWISE - {"Mul", "Add", "Sum"}), check=_check, gradient=gradient_variant)(emit_variant)
