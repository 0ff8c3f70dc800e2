"""A rule is a declarative recipe, as in Zennit's `BasicHook`: a list of modified forwards and how they combine.

For a linear layer f(a; W, B) and the relevance R at its output, every rule computes

    out_k = f(input_k(a); param_k(W), param_k(B) if bias_k)          one modified forward per term k
    D_j   = sum_k out_k   over the terms of group j                  (Zennit's gradient_mapper)
    g_j   = mask_j(z) * R / stabilize(D_j)
    R_in  = sum_k coef_k * input_k(a) * param_k(W)^T g_group(k)      (Zennit's reducer; no product for 'ones')

so one emitter (ops/linear.py) serves every rule. Weight modifications are numpy functions applied at compile time,
and ONNX recipes on the model's own weight initializer where there is one.
"""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

# Term.input, what a term feeds into its modified forward: the layer input "a", its positive / negative part
# "a+" / "a-", "ones", or the input's distance to the z-box bounds "a-low" / "a-high".
# Rule.masks, per denominator group: None, "z>0" or "z<0" (by the sign of the layer's original output z).


@dataclass(frozen=True)
class ParamMod:
    """A modification of the layer's weight and bias (Zennit's ParamMod): `fn` computes it at compile time (biases,
    weights that are no initializer of the model); `graph(b, w, scope)` writes it as ONNX nodes on the model's own
    weight initializer `w`, which runtimes fold once at load, so the compiled file holds no modified copies."""
    name: str
    fn: Callable[[np.ndarray], np.ndarray] = field(compare=False)
    graph: Callable = field(default=None, compare=False)
    sign: int = 0  # +1: every modified value is >= 0; -1: <= 0; 0: either

    def __call__(self, param):
        return None if param is None else np.asarray(self.fn(param), dtype=param.dtype)


def _positive(b, w, scope):
    return b.op("Relu", [w], scope, "weight_positive")


def _negative(b, w, scope):
    return b.op("Min", [w, b.scalar(0.0)], scope, "weight_negative")


IDENTITY = ParamMod("W", lambda p: p, lambda b, w, scope: w)
POSITIVE = ParamMod("W+", lambda p: np.clip(p, 0, None), _positive, sign=1)
NEGATIVE = ParamMod("W-", lambda p: np.clip(p, None, 0), _negative, sign=-1)
ONES = ParamMod("ones", np.ones_like,
                lambda b, w, scope: b.op("Expand", [b.scalar(1.0), b.op("Shape", [w], scope, "weight_shape")], scope,
                                         "weight_ones"), sign=1)
SQUARE = ParamMod("W^2", np.square, lambda b, w, scope: b.op("Mul", [w, w], scope, "weight_squared"), sign=1)

INPUT_SIGN = {"a+": 1, "a-": -1, "ones": 1}  # "a": +1 on a provably non-negative input; the z-box distances: either


def gamma_mod(gamma, part):
    """W + gamma * W+ (part='+') or W + gamma * W- (part='-'): the whole weight plus a share of one sign."""
    clip = (lambda p: np.clip(p, 0, None)) if part == "+" else (lambda p: np.clip(p, None, 0))
    share = _positive if part == "+" else _negative

    def graph(b, w, scope):
        scaled = b.op("Mul", [share(b, w, scope), b.scalar(float(np.float32(gamma)))], scope, "weight_share")
        return b.op("Add", [w, scaled], scope, "weight_gamma")
    return ParamMod(f"W{'+' if part == '+' else '-'}gamma{gamma:g}", lambda p: p + gamma * clip(p), graph)


@dataclass(frozen=True)
class Term:
    input: str
    param: ParamMod
    bias: bool
    group: int = 0
    coef: float = 1.0

    def non_negative(self, input_non_negative, has_bias):
        """Is this term's modified forward >= 0 for every input (W+ a+, W- a-, ones, W^2 ones, ...)?"""
        input_sign = 1 if self.input == "a" and input_non_negative else INPUT_SIGN.get(self.input, 0)
        bias_ok = not (self.bias and has_bias) or self.param.sign == 1
        return self.param.sign * input_sign == 1 and bias_ok

    @property
    def reuses_forward(self):
        """The unmodified forward with bias is the layer's own output: reuse it instead of computing it again."""
        return self.input == "a" and self.param == IDENTITY and self.bias


@dataclass(frozen=True)
class Rule:
    name: str
    terms: tuple = ()
    stabilizer: float = 1e-6
    masks: tuple = (None,)
    params: dict = field(default_factory=dict, compare=False)
    bounds: tuple = None  # (low, high) for z-box

    @property
    def groups(self):
        return range(len(self.masks))

    def describe(self):
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({args})" if args else self.name


def check_positive(name, value, allow_zero=False):
    value = float(value)
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value}")
    return value
