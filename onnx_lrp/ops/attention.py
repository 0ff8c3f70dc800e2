"""Attention in the transformer composites (gradient form, ../shared/attnlrp.md): the attention Softmax and the
MatMuls of two activations (Q.K^T, A.V).

- attnlrp (AttnLRP): the Softmax keeps its own gradient, g_s = A * (g_A - sum_j A_j g_A,j); each operand of a
  product of two activations gets half of its gradient (the uniform rule).
- cp-lrp (CP-LRP): the attention weights are constants: nothing flows into the Softmax, and A.V is a linear map of V
  with its whole gradient A^T g.
Both have no rule in the CNN composites, which refuse them with the node named.
"""
from dataclasses import dataclass

from .registry import SAME, attrs_of, register

_THROUGH = ("Identity", "Dropout", "Cast")  # ops between a Softmax and the A.V MatMul that keep A as it is
NEEDS_TRANSFORMER = ("has a rule in the transformer composites only (attention): use --composite attnlrp or "
                     "cp-lrp")


@dataclass
class SoftmaxStep:
    axis: int
    constant: bool  # cp-lrp

    def describe(self):
        return "constant attention weights" if self.constant else "softmax gradient"


def _softmax_check(step, ctx):
    if ctx.composite.form != "gradient":
        return f"a Softmax inside the network {NEEDS_TRANSFORMER}"
    rank = len(ctx.shapes.get(step.node.input[0]) or [])
    axis = attrs_of(step.node).get("axis", -1)
    if not rank:
        return "its input has no known rank"
    step.extra = SoftmaxStep(axis + rank if axis < 0 else axis, ctx.composite.attention == "constant")
    if step.extra.constant:
        step.live_inputs = []  # cp-lrp: the attention weights are constants
    return None


@register("Softmax", check=_softmax_check, gradient=SAME)
def softmax_gradient(b, step, grads):
    if not step.live_inputs:
        return {}
    node, scope = step.node, step.name
    a = node.output[0]
    weighted = b.op("Mul", [a, grads[0]], scope, "weighted")
    total = b.reduce("ReduceSum", weighted, [step.extra.axis], scope, "weighted_sum")
    return {node.input[0]: b.op("Mul", [a, b.op("Sub", [grads[0], total], scope, "centered")], scope, "gradient")}


@dataclass
class BilinearStep:
    constant: str = None  # cp-lrp: the attention weights operand; None: uniform (attnlrp)

    def describe(self):
        return f"'{self.constant}' constant" if self.constant else "uniform (half each)"


def _from_softmax(name, ctx):
    node = ctx.producers.get(name)
    while node is not None and node.op_type in _THROUGH:
        node = ctx.producers.get(node.input[0])
    return node is not None and node.op_type == "Softmax"


def _matmul_check(step, ctx):
    if ctx.composite.form != "gradient":
        return f"a MatMul of two activations {NEEDS_TRANSFORMER}"
    a, v = step.node.input[:2]
    if any(len(ctx.shapes.get(n) or []) < 2 for n in (a, v)):
        return "its operands have no known rank of at least 2"
    if ctx.composite.attention == "constant":
        weights = [n for n in (a, v) if _from_softmax(n, ctx)]
        step.extra = BilinearStep(weights[0] if weights else a)
        step.live_inputs = [v] if weights else []  # Q.K^T feeds only the constant attention weights
    else:
        step.extra = BilinearStep()
    return None


def _swap_last(b, x, scope, hint):
    rank = len(b.shapes[x]) if x in b.shapes else None
    perm = list(range(rank - 2)) + [rank - 1, rank - 2]
    return b.op("Transpose", [x], scope, hint, perm=perm)


@register("MatMulOfActivations", check=_matmul_check, gradient=SAME)
def bilinear_gradient(b, step, grads):
    (a, c), scope, out = step.node.input[:2], step.name, step.node.output[0]
    if step.extra.constant is not None:
        if not step.live_inputs:
            return {}
        g = b.op("MatMul", [_swap_last(b, a, scope, "weights_T"), grads[0]], scope, "gradient")
        return {c: b.unbroadcast(g, c, out, scope, batch_only=True)}
    half = b.op("Mul", [grads[0], b.scalar(0.5)], scope, "half")
    g_a = b.unbroadcast(b.op("MatMul", [half, _swap_last(b, c, scope, "right_T")], scope, "gradient_left"), a, out,
                        scope, batch_only=True)
    g_c = b.unbroadcast(b.op("MatMul", [_swap_last(b, a, scope, "left_T"), half], scope, "gradient_right"), c, out,
                        scope, batch_only=True)
    if a == c:
        return {a: b.op("Add", [g_a, g_c], scope, "gradient")}
    return {a: g_a, c: g_c}
