"""Element-wise ops, recognised by dataflow (dataflow.py) rather than by spelling: the relevance of an
element-wise function of one tensor goes straight back to that tensor.

- An activation in any spelling (Relu, `x * Sigmoid(x)`, paddle2onnx's `x * Clip(x + 3, 0, 6) / 6`, erf or tanh
  GELU, Mish, ...) passes relevance unchanged (Zennit's Pass) to the affine tensor its non-linear ops read, or to
  the region's root where they read several.
- A standalone affine y = s * x + t (BatchNorm as Mul + Add after a Concat or before a ReLU; a BatchNormalization
  with no linear layer before it) is a diagonal linear layer with the Epsilon rule, R_x = s*x / (y + eps*sign(y))
  * R_y, computed as (y - t) / s(y) * R_y: its shift absorbs its share like a bias, with the composite's epsilon.
  A pure scale (t = 0) and input preprocessing (no Conv/Gemm/MatMul upstream) pass relevance through.
"""
from dataclasses import dataclass

import numpy as np

from ..dataflow import ELEMENTWISE
from .registry import register


@dataclass
class ElementwiseStep:
    target: str  # the tensor the relevance goes to
    shift: np.ndarray = None  # a diagonal affine with this shift; None: pass through
    epsilon: float = 0.0
    activation: bool = False

    def describe(self):
        if self.shift is not None:
            return f"epsilon (diagonal affine, epsilon={self.epsilon:g})"
        return f"pass (activation of '{self.target}')" if self.activation else "pass"


def plan_elementwise(step, ctx):
    """Fill step.extra for an element-wise function of one tensor; else return why the node is not one."""
    out = step.node.output[0]
    region = ctx.flow.region.get(out)
    if region is None:
        return ctx.flow.why_not.get(out, "no relevance rule for this op")
    if region.affine is not None:
        base, shift = region.root, region.affine[1]
    elif region.suffix is not None:
        base, _, shift = region.suffix
    else:
        base, shift = None, 0.0
    if base is not None and np.any(shift != 0) and not ctx.flow.is_preprocessing(base):
        step.extra = ElementwiseStep(base, np.asarray(shift, np.float32), ctx.params["epsilon"])
    elif region.affine is not None:
        step.extra = ElementwiseStep(region.root)
    else:
        target = next(iter(region.frontier)) if len(region.frontier) == 1 else region.root
        step.extra = ElementwiseStep(target, activation=len([n for n in step.node.input if n in ctx.live]) > 1)
    step.live_inputs = [step.extra.target]
    return None


def emit_elementwise(b, step, rel_outs):
    extra, scope = step.extra, step.name
    if extra.shift is None:
        return {extra.target: rel_outs[0]}
    y = step.node.output[0]
    scaled = b.op("Sub", [y, b.const(extra.shift, scope, "shift")], scope, "scaled_input")
    ratio = b.divide_stabilized(rel_outs[0], y, extra.epsilon, scope)
    return {extra.target: b.op("Mul", [scaled, ratio], scope, "relevance")}


register(*sorted(ELEMENTWISE - {"Mul", "Add", "Sum"}), check=plan_elementwise)(emit_elementwise)
