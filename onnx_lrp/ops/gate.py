"""Mul. An element-wise function of one tensor (`x * Sigmoid(x)`, a Mul by a constant) is handled as any other
(elementwise.py). A product of a signal and a gate, a factor whose values are bounded (dataflow.py's intervals: it
comes through a Sigmoid, HardSigmoid, Clip-based hard sigmoid or Tanh, with any element-wise ops with constants
around it; squeeze-excitation), treats the gate as a fixed weight: the signal takes all the relevance and the
gate branch none (the "signal-take-all" rule for gated units). Other products of two activations are refused.
"""
from dataclasses import dataclass

from .elementwise import ElementwiseStep, emit_elementwise, plan_elementwise
from .registry import register


@dataclass
class GateStep:
    gate: str
    signal: str

    def describe(self):
        return "gate: the signal takes all"


def _check(step, ctx):
    why = plan_elementwise(step, ctx)
    live = [n for n in step.node.input if n and n in ctx.live]
    if why is None or len(live) != 2 or live[0] == live[1]:
        return why
    out_shape = ctx.shapes.get(step.node.output[0])
    gates = [n for n in live if ctx.flow.bounds(n).bounded]
    signals = [n for n in live if n not in gates or (len(gates) == 2 and ctx.shapes.get(n) == out_shape)]
    if not gates or len(signals) != 1:
        return ("multiplies two activations and neither is a gate (a bounded factor: Sigmoid, HardSigmoid, a "
                "Clip-based hard sigmoid, ...); no relevance rule for a general product")
    signal = signals[0]
    if ctx.shapes.get(signal) != out_shape:
        return f"the gated signal {ctx.shapes.get(signal)} is broadcast to {out_shape}"
    step.extra = GateStep(next(n for n in live if n != signal), signal)
    step.live_inputs = [signal]
    return None


@register("Mul", check=_check)
def multiply(b, step, rel_outs):
    if isinstance(step.extra, ElementwiseStep):
        return emit_elementwise(b, step, rel_outs)
    return {step.extra.signal: rel_outs[0]}
