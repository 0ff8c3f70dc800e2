"""Where relevance provably vanishes, and the cheaper stabilizer that follows.

Most rules hand back relevance as the input times something (Epsilon, z-plus, gamma, alpha-beta: x ⊙ W^T g; the
Norm rule of sums and averages: x ⊙ ratio), so it is exactly 0 wherever the input is 0; routing ops (MaxPool,
reshapes, ReLU's pass) keep that. For a layer output z read only by a ReLU, a = relu(z), whose relevance vanishes
where a = 0, the relevance at z is 0 wherever z <= 0. There Zennit's stabilized denominator z + eps·sign0(z) meets
a zero numerator, and elsewhere it is z + eps = a + eps: so R / (a + eps) gives the same values (a zero may lose
its sign) with one Add instead of the sign's Less, Cast, Mul, Add, Add.
"""
from .ops.elementwise import ElementwiseStep
from .ops.merge import NormStep

_INPUT_TIMES = {"a", "a+", "a-"}  # rule term inputs that make R_in a product with the input
_ROUTING = {"MaxPool", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose", "Identity", "Dropout"}
_AVERAGES = {"AveragePool", "GlobalAveragePool", "ReduceSum", "ReduceMean"}


def _is_relu_pass(step):
    extra = step.extra
    return (step.node.op_type == "Relu" and isinstance(extra, ElementwiseStep) and extra.shift is None
            and extra.scale is None and extra.target == step.node.input[0])


def _times_input(step):
    """Does this step hand back relevance that is a product with the input it reads?"""
    if step.kind == "Linear":
        terms = [t for t in step.rule.terms if not (step.layer.input_non_negative and t.input == "a-")]
        return step.rule.name != "pass" and all(t.input in _INPUT_TIMES for t in terms)
    if step.kind in ("Add", "Sum"):
        return isinstance(step.extra, NormStep)
    return step.kind in _AVERAGES


def positive_parts(plan, seed):
    """{z: a} for the tensors whose stabilized denominators may read a + eps, a = relu(z) (see the module text).
    Relevance form only: in gradient form what flows is no relevance."""
    if plan.form != "relevance":
        return {}
    consumers = {}
    for step in plan.steps:
        for name in step.live_inputs:
            consumers.setdefault(name, []).append(step)
    vanishes = {}  # tensor -> does its relevance vanish wherever it is 0?

    def holds(name):
        if name not in vanishes:
            vanishes[name] = False  # (no cycles in a DAG; a guard all the same)
            users = consumers.get(name, [])
            seeded = name == plan.logits
            ok = (bool(users) or seeded) and (not seeded or seed == "logit")
            for step in users:
                if _times_input(step):
                    continue
                if step.kind in _ROUTING or _is_relu_pass(step):
                    ok = ok and all(holds(out) for out in step.outputs)
                else:
                    ok = False
                if not ok:
                    break
            vanishes[name] = ok
        return vanishes[name]

    parts = {}
    for z, users in consumers.items():
        if len(users) == 1 and _is_relu_pass(users[0]) and z != plan.logits and holds(users[0].outputs[0]):
            parts[z] = users[0].outputs[0]
    return parts
