"""Mul. An element-wise function of one tensor (`x * Sigmoid(x)`, a Mul by a constant) is handled as any other
(elementwise.py). A product of a signal and a gate, a factor whose values are bounded (dataflow.py's intervals: it
comes through a Sigmoid, HardSigmoid, Clip-based hard sigmoid or Tanh, with any element-wise ops with constants
around it; squeeze-excitation), treats the gate as a fixed weight: the signal takes all the relevance and the
gate branch none (the "signal-take-all" rule for gated units). In the transformer composites a Mul may also be a
normalization (normalization.py) or a gated product of two activations (Llama's `SiLU(gate) * up`): attnlrp gives
each factor half of the gradient (the uniform rule), cp-lrp keeps the activated factor constant. Other products
of two activations are refused.
"""
from dataclasses import dataclass

from .elementwise import emit_variant, gradient_variant, plan_elementwise
from .normalization import plan_two_activations
from .registry import register

PRODUCT = ("multiplies two activations and neither is a gate (a bounded factor: Sigmoid, HardSigmoid, a "
           "Clip-based hard sigmoid, ...); no relevance rule for a general product outside the transformer "
           "composites (attnlrp, cp-lrp)")


@dataclass
class GateStep:
    gate: str
    signal: str

    def describe(self):
        return "gate: the signal takes all"

    def emit(self, b, step, rel_outs):
        return {self.signal: rel_outs[0]}

    def gradient(self, b, step, grads):  # the gate is a constant factor
        return {self.signal: b.op("Mul", [grads[0], self.gate], step.name, "gradient")}


@dataclass
class ProductStep:
    """Gradient form: `uniform` gives each factor half of its gradient (attnlrp); else `constant` is a fixed
    factor and the other takes the whole gradient (cp-lrp)."""
    factors: tuple
    constant: str = None

    def describe(self):
        return f"product: '{self.constant}' constant" if self.constant else "product: uniform (half each)"

    def emit(self, b, step, rel_outs):  # pragma: no cover - planned only in gradient form
        raise NotImplementedError

    def gradient(self, b, step, grads):
        scope, out = step.name, step.node.output[0]
        a, c = self.factors
        if self.constant:
            other = a if self.constant == c else c
            return {other: b.unbroadcast(b.op("Mul", [grads[0], self.constant], scope, "gradient"), other, out,
                                         scope)}
        half = b.op("Mul", [grads[0], b.scalar(0.5)], scope, "half")
        return {x: b.unbroadcast(b.op("Mul", [half, y], scope, f"gradient_{k}"), x, out, scope)
                for k, (x, y) in enumerate(((a, c), (c, a)))}


def _pick_gate(live, ctx):
    """The gate of two squashed factors: the one in [0, 1] (a Sigmoid, 1 - Sigmoid) against one that takes negative
    values (a Tanh: the signal), as an LSTM's `o * tanh(c)` and `i * tanh(g)`; None where that does not decide."""
    unit = [n for n in live if ctx.flow.bounds(n).non_negative and ctx.flow.bounds(n).hi <= 1]
    return unit[0] if len(unit) == 1 else None


def _check(step, ctx):
    why = plan_elementwise(step, ctx)
    live = [n for n in step.node.input if n and n in ctx.live]
    fixed = [n for n in step.node.input if n and n not in ctx.live and n not in ctx.constants]
    if why is not None and len(live) == 1 and len(fixed) == 1 and ctx.flow.is_squashed(live[0]):
        # a gate times a tensor that no input value reaches (a zero state built from shapes, a product with one):
        # the signal is fixed, so its share is absorbed as a bias's, and the gate takes none
        step.extra, step.live_inputs = GateStep(live[0], fixed[0]), []
        return None
    if why is None or len(live) != 2 or live[0] == live[1]:
        return why
    out_shape = ctx.shapes.get(step.node.output[0])
    gates = [n for n in live if ctx.flow.is_squashed(n)]
    signals = [n for n in live if n not in gates or (len(gates) == 2 and ctx.shapes.get(n) == out_shape)]
    if len(gates) == 2 and len(signals) == 2 and (gate := _pick_gate(live, ctx)) is not None:
        signals = [n for n in live if n != gate]
    if gates and len(signals) == 1:
        signal = signals[0]
        if ctx.shapes.get(signal) != out_shape:
            return f"the gated signal {ctx.shapes.get(signal)} is broadcast to {out_shape}"
        step.extra = GateStep(next(n for n in live if n != signal), signal)
        step.live_inputs = [signal]
        return None
    if ctx.composite.form != "gradient":
        return PRODUCT
    if plan_two_activations(step, ctx, why) is None:  # a normalization (RMSNorm's x * 1 / rms)
        return None
    activated = [n for n in live if n in ctx.flow.region and ctx.flow.region[n].affine is None]
    if ctx.composite.attention == "constant" and len(activated) != 1:
        return "a product of two activations where not exactly one factor is an activation output (the gate)"
    step.extra = ProductStep(tuple(live), activated[0] if ctx.composite.attention == "constant" else None)
    return None


register("Mul", check=_check, gradient=gradient_variant)(emit_variant)
