"""Add / Sum of activations from different tensors (residual connections): the Norm rule,
R_k = x_k * R / s(x_1 + ... + x_n), as Zennit's ResNet canonizer gives its `Sum` module. An Add that is an
element-wise function of one tensor (an Add of a constant, `x + 0.044715 * x^3` in tanh GELU) is handled as any
other (elementwise.py); an Add of a tensor computed at run time that no input value reaches (a recurrent cell's
`h R^T + b` on a zero state built from the input's shape) is a bias: the Norm rule over the one live summand. In gradient form (transformer composites) every summand that depends on the explained
input gets the plain gradient (LRP-0 on the sum: LXT leaves residual, embedding and mask sums unpatched)."""
from collections import Counter
from dataclasses import dataclass

from .elementwise import emit_variant, gradient_variant, plan_elementwise
from .normalization import PlainSumStep
from .registry import register


@dataclass
class NormStep:
    def describe(self):
        return "norm"

    def emit(self, b, step, rel_outs):
        node, scope = step.node, step.name
        live = Counter(step.live_inputs)  # the same tensor added twice (x + x) takes both shares
        ratio = b.divide_stabilized(rel_outs[0], node.output[0], b.norm_stabilizer, scope)
        relevance = {}
        for k, (x, count) in enumerate(live.items()):
            share = b.scaled(x, ratio, scope, f"relevance_{k}")
            relevance[x] = share if count == 1 else b.op("Mul", [share, b.scalar(float(count))], scope, "repeat")
        return relevance


def _merge_check(step, ctx):
    why = plan_elementwise(step, ctx)
    live = [n for n in step.node.input if n and n in ctx.live]
    if why is None:
        return None
    if ctx.composite.form == "gradient":  # any sum, masks and broadcast constants included
        step.extra = PlainSumStep()
        return None
    fixed = [n for n in step.node.input if n and n not in ctx.live and n not in ctx.constants]
    if len(set(live)) == 1 and fixed and step.node.op_type == "Add" and \
            ctx.shapes.get(live[0]) == ctx.shapes.get(step.node.output[0]) is not None:
        # a tensor computed at run time that no input value reaches (a zero state's h R^T + b, built from shapes):
        # a bias, which absorbs its share as a linear layer's bias does
        step.extra = NormStep()
        return None
    if len(set(live)) < 2:
        return why
    out_shape = ctx.shapes.get(step.node.output[0])
    if any(ctx.shapes.get(n) != out_shape for n in step.node.input):
        return "adds activations of different shapes (broadcasting); only same-shape residual sums are supported"
    step.extra = NormStep()
    return None


register("Add", "Sum", check=_merge_check, gradient=gradient_variant)(emit_variant)
