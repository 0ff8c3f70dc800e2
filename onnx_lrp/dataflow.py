"""What each tensor computes, found by dataflow rather than by one exporter's spelling.

Three facts per tensor, in one topological sweep:
- `Region`: the tensor is an element-wise function of one tensor, its `root` (same shape), when every op between
  them is element-wise and reads only root-derived tensors and constants. `x * Sigmoid(x)`, paddle2onnx's
  `x * Clip(x + 3, 0, 6) / 6` and torch's erf GELU are all regions of their `x`. Within a region, `affine` holds
  `(scale, shift)` where the tensor is `scale * root + shift` (Mul/Add/Sub/Div by constants, Neg,
  BatchNormalization); `frontier` holds, for a non-affine tensor, the affine tensors its non-affine ops read.
- `Interval`: bounds that hold for every element (Sigmoid gives [0, 1]); a bounded factor of a product is a gate.
- `after_linear`: whether a Conv/Gemm/MatMul lies upstream; an affine before any is input preprocessing.
"""
import math
from dataclasses import dataclass

import numpy as np

from .ops.registry import attrs_of
from .passes.affine import batchnorm_affine

INF = math.inf
UNARY = {"Relu", "LeakyRelu", "PRelu", "Clip", "Sigmoid", "Tanh", "Elu", "Selu", "Celu", "Softplus", "Softsign",
         "HardSigmoid", "HardSwish", "Gelu", "Mish", "ThresholdedRelu", "Shrink", "Erf", "Exp", "Log", "Sqrt",
         "Abs", "Neg", "Reciprocal", "Sin", "Cos", "Identity", "Dropout", "Cast", "BatchNormalization", "Pow"}
BINARY = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"}
ELEMENTWISE = UNARY | BINARY
LINEAR = {"Conv", "Gemm", "MatMul", "ConvTranspose"}
_REDUCTIONS = {"ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2"}
# ops whose every output element is one of the input's elements (or an average of them): bounds carry over
_SAME_BOUNDS = {"MaxPool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax", "ReduceMin", "Reshape",
                "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Slice", "Gather", "Identity", "Dropout", "Cast",
                "Expand", "Tile", "DepthToSpace", "SpaceToDepth", "Split", "Concat"}
# monotone non-decreasing unary functions and their value at -inf / +inf
_MONOTONE = {"Sigmoid": (lambda v: 1 / (1 + math.exp(-v)) if v > -700 else 0.0, 0.0, 1.0),
             "Tanh": (math.tanh, -1.0, 1.0), "Erf": (math.erf, -1.0, 1.0),
             "Softsign": (lambda v: v / (1 + abs(v)), -1.0, 1.0),
             "Softplus": (lambda v: math.log1p(math.exp(v)) if v < 30 else v, 0.0, INF),
             "Exp": (lambda v: math.exp(v) if v < 700 else INF, 0.0, INF),
             "Relu": (lambda v: max(v, 0.0), 0.0, INF)}


@dataclass(frozen=True)
class Interval:
    lo: float = -INF
    hi: float = INF

    @property
    def bounded(self):
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    @property
    def non_negative(self):
        return self.lo >= 0

    def union(self, other):
        return Interval(min(self.lo, other.lo), max(self.hi, other.hi))

    def add(self, other):
        return Interval(self.lo + other.lo, self.hi + other.hi)

    def neg(self):
        return Interval(-self.hi, -self.lo)

    def mul(self, other):
        products = [_times(a, b) for a in (self.lo, self.hi) for b in (other.lo, other.hi)]
        return Interval(min(products), max(products))

    def clip(self, low, high):
        return Interval(min(max(self.lo, low), high), max(min(self.hi, high), low))


UNBOUNDED = Interval()


def _times(a, b):
    return 0.0 if a == 0 or b == 0 else a * b


def _of(array):
    a = np.asarray(array, np.float64)
    return Interval(float(a.min()), float(a.max())) if a.size and np.all(np.isfinite(a)) else UNBOUNDED


@dataclass
class Region:
    root: str
    affine: tuple = None  # (scale, shift) arrays: tensor = scale * root + shift
    frontier: frozenset = frozenset()  # non-affine tensors: the affine tensors of the region its ops read
    suffix: tuple = None  # (base, scale, shift): an affine of a non-affine tensor `base` of the region


class Dataflow:
    """Regions, intervals and linear ancestry of every live tensor of a graph (see the module docstring)."""

    def __init__(self, graph, constants, shapes, live, layer_outputs=()):
        """layer_outputs: tensors a linear layer writes through another node (a MatMul's bias Add)."""
        self.constants, self.shapes, self.live = constants, shapes, live
        self.region, self.interval, self.after_linear, self.why_not = {}, {}, set(), {}
        self.producer = {o: n for n in graph.node for o in n.output if o}
        for node in graph.node:
            inputs = [n for n in node.input if n]
            if any(n in self.after_linear for n in inputs) or (node.op_type in LINEAR and inputs[0] in live):
                self.after_linear.update(node.output)
            bounds = self._bounds(node)
            for out in node.output:
                if out:
                    self.interval[out] = bounds
            if node.output and node.output[0] in live and node.op_type in ELEMENTWISE \
                    and node.output[0] not in layer_outputs:
                region = self._region(node)
                if isinstance(region, Region):
                    self.region[node.output[0]] = region
                else:
                    self.why_not[node.output[0]] = region

    def bounds(self, name):
        if name in self.constants:
            return _of(self.constants[name])
        return self.interval.get(name, UNBOUNDED)

    def root(self, name):
        region = self.region.get(name)
        return region.root if region else name

    def is_squashed(self, name):
        """A bounded output of a non-linear element-wise function (a gate: Sigmoid, a hard sigmoid, ...); a finite
        table looked up (an embedding) is bounded too, but no gate."""
        region = self.region.get(name)
        return region is not None and region.affine is None and self.bounds(name).bounded

    def normalizer_of(self, normalizer, data):
        """True when `normalizer` is computed from `data` through reductions and element-wise ops only (the
        sigma of a LayerNorm, the 1 / rms of an RMSNorm): a scale that depends on the data's statistics."""
        target, t, reductions = self.root(data), normalizer, 0
        for _ in range(8):
            t = self.root(t)
            if t == target:
                return reductions > 0
            node = self.producer.get(t)
            if node is None or node.op_type not in _REDUCTIONS:
                return False
            reductions += 1
            t = node.input[0]
        return False

    def is_preprocessing(self, name):
        """True for tensors that no Conv/Gemm/MatMul precedes: an affine there normalizes the model input."""
        return name not in self.after_linear

    # -- regions ---------------------------------------------------------------------------------------------------
    def _region(self, node):
        """The node's Region, or the reason it is no element-wise function of one tensor."""
        live = [n for n in node.input if n and n in self.live]
        roots = {self.root(n) for n in live}
        if len(roots) != 1:
            return "combines activations that come from different tensors"
        (root,) = roots
        data_inputs = {"Pow": 1, "PRelu": 1, "Clip": 1, "BatchNormalization": 1}.get(node.op_type)
        if data_inputs and any(n in self.live for n in node.input[data_inputs:]):
            return "the explained input reaches a parameter input of this op"
        others = [n for n in node.input if n and n not in self.live]
        if node.op_type in BINARY and any(n not in self.constants for n in others):
            return "combines an activation with a tensor computed at run time (not a constant)"
        out_shape, root_shape = self.shapes.get(node.output[0]), self.shapes.get(root)
        if out_shape is None or out_shape != root_shape:
            return f"broadcasts its input {root_shape} to a larger output {out_shape}"
        inner = self.region.get(live[0]) if len(live) == 1 else None
        if inner is None or inner.affine is not None:  # an affine of the root, or a first non-linear op
            affine = self._affine(node, live, *(inner.affine if inner else (1.0, 0.0)))
            if affine is not None:
                return Region(root, affine)
        else:  # an affine after a non-linear op (ReLU -> BatchNorm)
            base, scale, shift = inner.suffix or (live[0], 1.0, 0.0)
            suffix = self._affine(node, live, scale, shift)
            if suffix is not None:
                return Region(root, None, inner.frontier, (base, *suffix))
        frontier = set()
        for n in live:
            inner = self.region.get(n)
            frontier |= {n} if inner is None or inner.affine is not None else inner.frontier
        return Region(root, None, frozenset(frontier))

    def _affine(self, node, live, scale, shift):
        """(scale', shift') of the node's output, where its one live input is scale * t + shift of some t."""
        op = node.op_type
        if len(live) != 1:
            return None
        x = live[0]
        if op in ("Identity", "Dropout", "Cast"):
            return scale, shift
        if op == "Neg":
            return -scale, -shift
        if op == "BatchNormalization":
            rank = len(self.shapes.get(x) or [])
            s_c, t_c = (a.reshape((-1,) + (1,) * (rank - 2)) for a in batchnorm_affine(node, self.constants))
            return scale * s_c, shift * s_c + t_c
        if op not in ("Add", "Sub", "Mul", "Div"):
            return None
        other = next(n for n in node.input if n != x)
        c = np.asarray(self.constants[other], np.float64)
        first = node.input[0] == x
        if op == "Mul":
            return scale * c, shift * c
        if op == "Div":
            return (scale / c, shift / c) if first and np.all(c != 0) else None
        if op == "Add":
            return scale, shift + c
        return (scale, shift - c) if first else (-scale, c - shift)

    def _scalar(self, node, k, default):
        name = node.input[k] if k < len(node.input) else ""
        return float(np.asarray(self.constants[name]).reshape(-1)[0]) if name in self.constants else default

    # -- intervals -------------------------------------------------------------------------------------------------
    def _bounds(self, node):
        op, inputs = node.op_type, [n for n in node.input if n]
        if not inputs:
            return UNBOUNDED
        x = self.bounds(inputs[0])
        if op in _MONOTONE:
            f, low, high = _MONOTONE[op]
            return Interval(low if x.lo == -INF else f(x.lo), high if x.hi == INF else f(x.hi))
        if op == "Clip":  # bounds as attributes (opset < 11) or as constant inputs
            attrs = attrs_of(node)
            return x.clip(self._scalar(node, 1, attrs.get("min", -INF)), self._scalar(node, 2, attrs.get("max", INF)))
        if op == "HardSigmoid":
            return Interval(0.0, 1.0)
        if op == "Abs":
            return Interval(0.0 if x.lo <= 0 <= x.hi else min(abs(x.lo), abs(x.hi)), max(abs(x.lo), abs(x.hi)))
        if op in _SAME_BOUNDS:
            result = x
            for n in inputs[1:] if op == "Concat" else ():
                result = result.union(self.bounds(n))
            return result
        if op == "AveragePool":  # padding may count as zeros
            return x.union(Interval(0.0, 0.0))
        if op == "Pad":
            pad = self.bounds(inputs[2]) if len(inputs) > 2 else Interval(0.0, 0.0)
            return x.union(pad)
        if op in ("Add", "Sum"):
            result = x
            for n in inputs[1:]:
                result = result.add(self.bounds(n))
            return result
        if op == "Sub" and len(inputs) == 2:
            return x.add(self.bounds(inputs[1]).neg())
        if op == "Neg":
            return x.neg()
        if op == "Mul" and len(inputs) == 2:
            return x.mul(self.bounds(inputs[1]))
        if op == "Div" and len(inputs) == 2 and inputs[1] in self.constants:
            c = np.asarray(self.constants[inputs[1]], np.float64)
            return x.mul(_of(1.0 / c)) if np.all(c != 0) else UNBOUNDED
        if op in ("Max", "Min") and len(inputs) == 2:
            y = self.bounds(inputs[1])
            pick = max if op == "Max" else min
            return Interval(pick(x.lo, y.lo), pick(x.hi, y.hi))
        return UNBOUNDED


