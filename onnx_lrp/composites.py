"""Composites: which rule each linear layer gets, as Zennit's composites of the same name decide it.

A linear layer is a 'conv' (Zennit's Convolution types) or a 'dense' one (torch.nn.Linear: Gemm, MatMul[+Add]).
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

    def assign(self, kinds, params):
        """kinds: 'conv'/'dense' per linear layer in graph order -> list of Rules."""
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
            if not first_done and kind in self.first_kinds:
                rules.append(build(self.first))
                first_done = True
            else:
                rules.append(build(self.conv if kind == "conv" else self.dense))
        return rules


COMPOSITES = {
    "epsilon": Composite(conv="epsilon", dense="epsilon"),
    "epsilon-plus": Composite(conv="z-plus", dense="epsilon"),
    "epsilon-plus-flat": Composite(conv="z-plus", dense="epsilon", first="flat", first_kinds=("conv", "dense")),
    "epsilon-gamma-box": Composite(conv="gamma", dense="epsilon", first="z-box", first_kinds=("conv",)),
    "epsilon-alpha2-beta1": Composite(conv="alpha-beta", dense="epsilon"),
    "epsilon-alpha2-beta1-flat": Composite(conv="alpha-beta", dense="epsilon", first="flat",
                                           first_kinds=("conv", "dense")),
}

DEFAULT_COMPOSITE = "epsilon-plus-flat"
DEFAULT_PARAMS = {"epsilon": 1e-6, "gamma": 0.25, "alpha": 2.0, "beta": 1.0, "stabilizer": 1e-6,
                  "low": None, "high": None}
