"""Composites: which rule each linear layer gets, as Zennit's composites of the same name decide it.

A linear layer is a 'conv' (Zennit's Convolution types) or a 'dense' one (torch.nn.Linear: Gemm, MatMul[+Add]), or a
'recurrent' one (a dense map every time step of a recurrent cell applies: the dense rule, as Arras et al.'s LRP for
LSTMs; when the first layer in graph order is one, no layer gets the special first rule).
The special first layer is the first matching layer in graph order (Zennit uses module registration order, which
is the same for sequentially defined models).
"""
from dataclasses import dataclass

from .rules import make_rule


@dataclass(frozen=True)
class Composite:
    conv: str
    dense: str
    first: str = None
    first_kinds: tuple = ()
    form = "relevance"  # relevance is propagated rule by rule

    def assign(self, kinds, params):
        """kinds: 'conv'/'dense'/'recurrent' per linear layer in graph order -> list of Rules."""
        def build(name):
            if name == "epsilon":
                return make_rule("epsilon", epsilon=params["epsilon"])
            if name == "gamma":
                return make_rule("gamma", gamma=params["gamma"], stabilizer=params["stabilizer"])
            if name == "alpha-beta":
                return make_rule("alpha-beta", alpha=params["alpha"], beta=params["beta"],
                                 stabilizer=params["stabilizer"])
            if name == "z-box":
                return make_rule("z-box", low=params.get("low"), high=params.get("high"),
                                 stabilizer=params["stabilizer"])
            return make_rule(name, stabilizer=params["stabilizer"])

        rules, first_done = [], self.first is None
        for kind in kinds:
            if kind == "recurrent":  # a map shared by the time steps: the dense rule, and no layer is "first" then
                rules.append(build(self.dense))
                first_done = True
            elif not first_done and kind in self.first_kinds:
                rules.append(build(self.first))
                first_done = True
            else:
                rules.append(build(self.conv if kind == "conv" else self.dense))
        return rules


@dataclass(frozen=True)
class TransformerComposite:
    """LXT's composites for transformers (../shared/attnlrp.md), in gradient form: a modified gradient is propagated
    and the relevance is input x gradient at the end. Every linear layer is LRP-0 (no epsilon: LXT never divides);
    LayerNorm/RMSNorm keep their normalizer constant; activations get the identity rule. `attention`: "uniform"
    (attnlrp: the Softmax's own gradient, each factor of a product of two activations gets half) or "constant"
    (cp-lrp: attention weights and gates are constants)."""
    attention: str
    form = "gradient"

    def assign(self, kinds, params):
        return [make_rule("zero") for _ in kinds]


@dataclass(frozen=True)
class MixedComposite:
    """A Zennit composite given for a transformer: its rules on the linear layers and convs, attnlrp's rules on
    normalization, attention and activations, in gradient form (a rule's relevance R_x turns back into a gradient
    as R_x / x, x stabilized by 1e-10, as LXT's bridge to Zennit does)."""
    linear: Composite
    attention = "uniform"
    form = "gradient"

    def assign(self, kinds, params):
        return self.linear.assign(kinds, params)


COMPOSITES = {
    "epsilon": Composite(conv="epsilon", dense="epsilon"),
    "epsilon-plus": Composite(conv="z-plus", dense="epsilon"),
    "epsilon-plus-flat": Composite(conv="z-plus", dense="epsilon", first="flat", first_kinds=("conv", "dense")),
    "epsilon-gamma-box": Composite(conv="gamma", dense="epsilon", first="z-box", first_kinds=("conv",)),
    "epsilon-alpha2-beta1": Composite(conv="alpha-beta", dense="epsilon"),
    "epsilon-alpha2-beta1-flat": Composite(conv="alpha-beta", dense="epsilon", first="flat",
                                           first_kinds=("conv", "dense")),
    "attnlrp": TransformerComposite(attention="uniform"),
    "cp-lrp": TransformerComposite(attention="constant"),
}

ZENNIT_COMPOSITES = [name for name, c in COMPOSITES.items() if c.form == "relevance"]
TRANSFORMER_COMPOSITES = [name for name, c in COMPOSITES.items() if c.form == "gradient"]
DEFAULT_COMPOSITE = "epsilon-plus-flat"
DEFAULT_PARAMS = {"epsilon": 1e-6, "gamma": 0.25, "alpha": 2.0, "beta": 1.0, "stabilizer": 1e-6,
                  "low": None, "high": None}


_NORMALIZATIONS = {"LayerNormalization", "GroupNormalization", "InstanceNormalization", "SimplifiedLayerNormalization"}


def composite_for(name, model):
    """The composite object for `name` on this model: a Zennit composite on a transformer is mixed with attnlrp."""
    composite = COMPOSITES[name]
    if composite.form == "relevance" and default_composite(model) != DEFAULT_COMPOSITE:
        return MixedComposite(composite)
    return composite


def default_composite(model):
    """attnlrp for a transformer (attention: a MatMul of two computed tensors; LayerNorm, GroupNorm, or a norm
    written out as ReduceMean(Pow(x, 2))), else the default CNN composite."""
    graph = model.graph
    weights = {i.name for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type in _NORMALIZATIONS:
            return "attnlrp"
        if node.op_type == "MatMul" and not any(n in weights for n in node.input):
            return "attnlrp"
        source = producer.get(node.input[0]) if node.op_type == "ReduceMean" and node.input else None
        if source is not None and source.op_type == "Pow":
            return "attnlrp"
    return DEFAULT_COMPOSITE
