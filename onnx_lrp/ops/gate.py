"""Mul. With a constant it passes relevance to its data input (elementwise.py). With two activations, one of
them a gate (the output of a Sigmoid or HardSigmoid: SiLU/Swish as `x * Sigmoid(x)`, squeeze-excitation scales),
the gate is treated as a fixed weight: the signal takes all the relevance and the gate branch none (the
"signal-take-all" rule for gated units). `x * Sigmoid(x)` is thereby one activation that passes relevance through.
"""
from .elementwise import one_data_input, pass_through
from .registry import register

GATES = ("Sigmoid", "HardSigmoid")


def gate_and_signal(step, ctx):
    node = step.node
    live = [n for n in node.input if n and n in ctx.live]
    out_shape = ctx.shapes.get(node.output[0])
    gates = [n for n in live if getattr(ctx.producers.get(n), "op_type", None) in GATES]
    signals = [n for n in live if n not in gates or (len(gates) == 2 and ctx.shapes.get(n) == out_shape)]
    if len(live) != 2 or not gates or len(signals) != 1:
        return None, None
    signal = signals[0]
    gate = next(n for n in live if n != signal)
    return gate, signal


def _check(step, ctx):
    node = step.node
    if len([n for n in node.input if n and n in ctx.live]) == 1:
        return one_data_input(step, ctx)
    gate, signal = gate_and_signal(step, ctx)
    if gate is None:
        return ("multiplies two activations and neither is a gate (the output of a Sigmoid or HardSigmoid); "
                "no relevance rule for a general product")
    if ctx.shapes.get(signal) != ctx.shapes.get(node.output[0]):
        return f"the gated signal {ctx.shapes.get(signal)} is broadcast to {ctx.shapes.get(node.output[0])}"
    step.extra = (gate, signal, ctx.producers[gate].input[0] == signal)  # the last: SiLU
    return None


@register("Mul", check=_check)
def multiply(b, step, rel_outs):
    if step.extra is None:
        return pass_through(b, step, rel_outs)
    _, signal, _ = step.extra
    return {signal: rel_outs[0]}
