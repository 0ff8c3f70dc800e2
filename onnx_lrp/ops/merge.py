"""Add / Sum of activations from different tensors (residual connections): the Norm rule,
R_k = x_k * R / s(x_1 + ... + x_n), as Zennit's ResNet canonizer gives its `Sum` module. An Add that is an
element-wise function of one tensor (an Add of a constant, `x + 0.044715 * x^3` in tanh GELU) is handled as any
other (elementwise.py)."""
from collections import Counter
from dataclasses import dataclass

from .elementwise import ElementwiseStep, emit_elementwise, plan_elementwise
from .registry import register


@dataclass
class NormStep:
    def describe(self):
        return "norm"


def _merge_check(step, ctx):
    why = plan_elementwise(step, ctx)
    live = [n for n in step.node.input if n and n in ctx.live]
    if why is None or len(set(live)) < 2:
        return why
    out_shape = ctx.shapes.get(step.node.output[0])
    if any(ctx.shapes.get(n) != out_shape for n in step.node.input):
        return "adds activations of different shapes (broadcasting); only same-shape residual sums are supported"
    step.extra = NormStep()
    return None


@register("Add", "Sum", check=_merge_check)
def add_norm(b, step, rel_outs):
    if isinstance(step.extra, ElementwiseStep):
        return emit_elementwise(b, step, rel_outs)
    node, scope = step.node, step.name
    live = Counter(step.live_inputs)  # the same tensor added twice (x + x) takes both shares
    ratio = b.divide_stabilized(rel_outs[0], node.output[0], b.norm_stabilizer, scope)
    relevance = {}
    for k, (x, count) in enumerate(live.items()):
        share = b.op("Mul", [x, ratio], scope, f"relevance_{k}")
        relevance[x] = share if count == 1 else b.op("Mul", [share, b.scalar(float(count))], scope, "repeat")
    return relevance
