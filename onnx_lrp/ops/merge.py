"""Add / Sum of activations (residual connections): the Norm rule, R_k = x_k * R / s(x_1 + ... + x_n), as Zennit's
ResNet canonizer gives its `Sum` module. With one activation and constants, Add passes relevance through to it
(a constant takes no relevance)."""
from collections import Counter

from .elementwise import one_data_input
from .registry import register


def _merge_check(step, ctx):
    node = step.node
    live = [n for n in node.input if n and n in ctx.live]
    if len(live) == 1:
        return one_data_input(step, ctx)
    out_shape = ctx.shapes.get(node.output[0])
    if any(ctx.shapes.get(n) != out_shape for n in node.input):
        return "adds activations of different shapes (broadcasting); only same-shape residual sums are supported"
    return None


@register("Add", "Sum", check=_merge_check)
def add_norm(b, step, rel_outs):
    node, scope = step.node, step.name
    live = Counter(step.live_inputs)  # the same tensor added twice (x + x) takes both shares
    if len(live) == 1 and sum(live.values()) == 1:
        return {step.live_inputs[0]: rel_outs[0]}
    ratio = b.divide_stabilized(rel_outs[0], node.output[0], b.norm_stabilizer, scope)
    relevance = {}
    for k, (x, count) in enumerate(live.items()):
        share = b.op("Mul", [x, ratio], scope, f"relevance_{k}")
        relevance[x] = share if count == 1 else b.op("Mul", [share, b.scalar(float(count))], scope, "repeat")
    return relevance
