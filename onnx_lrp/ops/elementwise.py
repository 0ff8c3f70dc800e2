"""Element-wise ops that pass relevance through unchanged (Zennit's Pass rule for activation modules).

An element-wise op whose other inputs are constants (Clip bounds, PRelu slopes, Add/Sub/Mul/Div by a constant
such as input normalisation) hands the relevance to its one data input: a constant takes no relevance.
"""
from .registry import register

ACTIVATIONS = ("Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Softplus",
               "Softsign", "HardSigmoid", "HardSwish", "Gelu", "Mish", "ThresholdedRelu", "Shrink")
IDENTITIES = ("Identity", "Dropout", "BatchNormalization", "Cast")  # Cast: only float-to-float casts are live
WITH_CONSTANT = ("Sub", "Mul", "Div")  # Add: see merge.py; Mul of two activations: gate.py


def one_data_input(step, ctx):
    node = step.node
    live = [n for n in node.input if n and n in ctx.live]
    if len(live) != 1:
        return "combines several inputs that depend on the explained input (not supported yet)"
    if node.op_type not in (*WITH_CONSTANT, "Add") and node.input[0] != live[0]:
        return "the explained input reaches a parameter input of this op, not its data input"
    if ctx.shapes.get(live[0]) != ctx.shapes.get(node.output[0]):
        return (f"broadcasts its input {ctx.shapes.get(live[0])} to a larger output "
                f"{ctx.shapes.get(node.output[0])}")
    return None


@register(*ACTIVATIONS, *IDENTITIES, "Sub", "Div", check=one_data_input)
def pass_through(b, step, rel_outs):
    return {step.live_inputs[0]: rel_outs[0]}
