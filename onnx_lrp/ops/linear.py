"""Linear layers (Conv, Gemm, MatMul[+Add]) and the one engine that applies any declarative rule to them.

A LinearLayer is read from the graph at plan time: its input a, its output z (bias included), its weight and
bias as numpy arrays. ConvOps / DenseOps emit the layer's forward with modified parameters and its adjoint
(ConvTranspose with the same weight tensor; a matrix product with the transposed weight). Modified weights are
initializers computed at compile time.
"""
from dataclasses import dataclass, field

import numpy as np

from ..rules.base import IDENTITY, ONES
from .geometry import spatial_geometry, transpose_pads
from .registry import attrs_of, register, register_gradient


@dataclass
class LinearLayer:
    kind: str  # 'conv', 'conv_transpose' or 'dense'
    x: str
    z: str
    weight_source: object  # the weight, or a function that reads it (see `weight`)
    bias: np.ndarray  # [O], or None
    weight_name: str = None  # an initializer that already holds `weight` unmodified...
    weight_transposed: bool = False  # ...stored as weight.T (torch's [out, in] for Gemm transB=1)
    input_transposed: bool = False  # Gemm transA=1: x holds the input as [in, batch]
    nodes: list = field(default_factory=list)
    input_non_negative: bool = False  # the input is provably >= 0 (after a ReLU): a- terms are exactly zero
    weight_shape: tuple = None

    def __post_init__(self):
        if self.weight_shape is None:
            self.weight_shape = tuple(self.weight_source.shape)

    @property
    def weight(self):
        """conv: [O, C/group, k...]; dense: [in, out] (x @ weight). Read from the model only when a rule needs the
        values at compile time: protobuf hands out a copy of a tensor's bytes, and most rules reuse the model's
        initializer in the graph instead (weight_name)."""
        if callable(self.weight_source):
            self.weight_source = self.weight_source()
        return self.weight_source


def read_conv(node, ctx):
    consts = ctx.constants
    if len(node.input) < 2 or node.input[1] not in consts:
        return None, "the Conv weight is not a constant"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in consts:
        return None, "the Conv bias is not a constant"
    bias = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    name = node.input[1]
    return LinearLayer("conv", node.input[0], node.output[0], lambda: consts[name], bias, weight_name=name,
                       nodes=[node], weight_shape=consts.shape(name)), None


def read_conv_transpose(node, ctx):
    """ConvTranspose with constant weight [C_in, C_out / group, k...] and bias, explicit pads (auto_pad NOTSET or
    VALID) and no output_shape: a linear layer whose adjoint is the Conv with the same weight."""
    consts, a = ctx.constants, attrs_of(node)
    if len(node.input) < 2 or node.input[1] not in consts:
        return None, "the ConvTranspose weight is not a constant"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in consts:
        return None, "the ConvTranspose bias is not a constant"
    auto_pad = a.get("auto_pad", b"NOTSET")
    if "output_shape" in a or (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) not in ("NOTSET",
                                                                                                        "VALID"):
        return None, "ConvTranspose with output_shape or auto_pad SAME is not supported; export with explicit pads"
    name = node.input[1]
    bias = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
    return LinearLayer("conv_transpose", node.input[0], node.output[0], lambda: consts[name], bias,
                       weight_name=name, nodes=[node], weight_shape=consts.shape(name)), None


def read_gemm(node, ctx):
    consts, a = ctx.constants, attrs_of(node)
    if node.input[1] not in consts:
        return None, "the Gemm weight (input B) is not a constant"
    if len(node.input) > 2 and node.input[2] and node.input[2] not in consts:
        return None, "the Gemm bias (input C) is not a constant"
    name = node.input[1]
    alpha, beta, trans_b = a.get("alpha", 1.0), a.get("beta", 1.0), a.get("transB", 0)
    stored = consts.shape(name)
    shape = tuple(reversed(stored)) if trans_b else tuple(stored)

    def weight():
        w = consts[name]
        view = w.T if trans_b else w  # a view: VGG's first dense weight alone is 400 MB
        return (view * np.float32(alpha)).astype(w.dtype, copy=False) if alpha != 1.0 else view

    bias = None
    if len(node.input) > 2 and node.input[2]:
        c = consts[node.input[2]]
        if c.size not in (1, shape[1]):
            return None, f"the Gemm bias has shape {list(c.shape)}; only a per-output bias is supported"
        bias = np.broadcast_to(c.reshape(-1) * np.float32(beta), (shape[1],)).astype(c.dtype)
    return LinearLayer("dense", node.input[0], node.output[0], weight, bias,
                       weight_name=name if alpha == 1.0 else None, weight_transposed=bool(trans_b),
                       input_transposed=bool(a.get("transA", 0)), nodes=[node], weight_shape=shape), None


def read_matmul(node, ctx, add=None):
    """MatMul with a constant 2-D weight, optionally with the Add of a constant bias that follows it."""
    consts = ctx.constants
    name = node.input[1]
    if name not in consts or len(consts.shape(name)) != 2:
        return None, "MatMul is supported with a constant 2-D weight as its second input"
    shape = tuple(consts.shape(name))
    if add is None:
        return LinearLayer("dense", node.input[0], node.output[0], lambda: consts[name], None, weight_name=name,
                           nodes=[node], weight_shape=shape), None
    c = consts[add.input[1] if add.input[0] == node.output[0] else add.input[0]]
    bias = np.broadcast_to(c.reshape(-1), (shape[1],)).astype(c.dtype)
    return LinearLayer("dense", node.input[0], add.output[0], lambda: consts[name], bias, weight_name=name,
                       weight_shape=shape,
                       nodes=[node, add]), None


class ConvOps:
    def __init__(self, b, layer, scope):
        node = layer.nodes[0]
        self.b, self.layer, self.scope = b, layer, scope
        geo = spatial_geometry(b, node, layer.weight_shape[2:])
        self.attrs = dict(strides=geo["strides"], dilations=geo["dilations"], pads=geo["pads"],
                          group=attrs_of(node).get("group", 1))
        self.transpose_pads, out_pad = transpose_pads(geo)
        self.output_padding = out_pad if any(out_pad) else None
        self._flipped = {}  # param name -> the kernel of the stride-1 adjoint Conv
        self._weights = {}  # param name -> the modified weight

    def weight(self, param):
        """The modified weight: nodes on the model's own initializer where there is one (folded at load), else a
        compile-time constant."""
        if param.name not in self._weights:
            if self.layer.weight_name:
                self._weights[param.name] = param.graph(self.b, self.layer.weight_name, self.scope)
            else:
                self._weights[param.name] = self.b.const(param(self.layer.weight), self.scope, f"weight_{param.name}")
        return self._weights[param.name]

    def forward(self, x, param, bias, shift=0.0):
        inputs = [x, self.weight(param)]
        bias = _modified_bias(self.layer, param, bias, shift, self.layer.weight_shape[0])
        if bias is not None:
            inputs.append(self.b.const(bias, self.scope, f"bias_{param.name}"))
        return self.b.op("Conv", inputs, self.scope, f"conv_{param.name}", **self.attrs)

    def adjoint(self, g, param):
        """W^T g. With stride 1 it is itself a Conv, with the kernel flipped and its in/out channels swapped (in the
        graph, on the weight initializer: runtimes fold it once at load), and runtimes run a Conv faster than the
        ConvTranspose that serves the strided case."""
        if param is ONES and self.attrs["group"] == 1:
            return self._adjoint_of_ones(g)
        pads = self._adjoint_conv_pads()
        if pads is None:
            w = self.weight(param)
            out_channels, in_per_group = self.layer.weight_shape[:2]
            if out_channels == in_per_group * self.attrs["group"]:  # the same shape in both layouts
                w, g = distinct_weight(self.b, w, g, self.scope, param.name)
            return self.b.op("ConvTranspose", [g, w], self.scope, f"conv_T_{param.name}",
                             strides=self.attrs["strides"], dilations=self.attrs["dilations"],
                             group=self.attrs["group"], pads=self.transpose_pads, output_padding=self.output_padding)
        return self.b.op("Conv", [g, self._flipped_weight(param)], self.scope, f"conv_adjoint_{param.name}",
                         dilations=self.attrs["dilations"], group=self.attrs["group"], pads=pads)

    def _adjoint_of_ones(self, g):
        """ones^T g is the same in every input channel: the adjoint of a one-channel kernel of ones on g summed over
        the output channels, broadcast to the input's channels (flat's first layer: ResNet-50's 7x7/2 conv with 64
        output channels costs 1/64 of the ConvTranspose)."""
        b, scope = self.b, self.scope
        summed = b.reduce("ReduceSum", g, [1], scope, "output_channel_sum")
        kernel = b.const(np.ones([1, 1, *self.layer.weight_shape[2:]], np.float32), scope, "kernel_ones")
        pads = self._adjoint_conv_pads()
        if pads is None:
            spread = b.op("ConvTranspose", [summed, kernel], scope, "conv_T_ones", strides=self.attrs["strides"],
                          dilations=self.attrs["dilations"], pads=self.transpose_pads,
                          output_padding=self.output_padding)
        else:
            spread = b.op("Conv", [summed, kernel], scope, "conv_adjoint_ones", dilations=self.attrs["dilations"],
                          pads=pads)
        return b.op("Expand", [spread, b.op("Shape", [self.layer.x], scope, "input_shape")], scope, "spread_ones")

    def _adjoint_conv_pads(self):
        """Pads of the Conv that computes the stride-1 adjoint, d (k - 1) - p per side; None where it is no Conv."""
        if any(s != 1 for s in self.attrs["strides"]):
            return None
        reach = [(k - 1) * d for k, d in zip(self.layer.weight_shape[2:], self.attrs["dilations"])]
        pads = [r - p for r, p in zip(reach * 2, self.attrs["pads"])]
        return pads if all(p >= 0 for p in pads) else None

    def _flipped_weight(self, param):
        """[O, C/g, k...] -> [C, O/g, k...] with every spatial axis reversed, once per weight."""
        if param.name not in self._flipped:
            b, scope = self.b, self.scope
            out_channels, in_per_group, *kernel = self.layer.weight_shape
            groups = self.attrs["group"]
            spatial = list(range(2, 2 + len(kernel)))
            grouped_shape = b.const(np.array([groups, out_channels // groups, in_per_group, *kernel]), scope,
                                    "grouped_shape", np.int64)
            grouped = b.op("Reshape", [self.weight(param), grouped_shape], scope, f"w_grouped_{param.name}")
            swapped = b.op("Transpose", [grouped], scope, f"w_swapped_{param.name}",
                           perm=[0, 2, 1] + [a + 1 for a in spatial])
            adjoint_shape = b.const(np.array([in_per_group * groups, out_channels // groups, *kernel]), scope,
                                    "adjoint_shape", np.int64)
            transposed = b.op("Reshape", [swapped, adjoint_shape], scope, f"w_transposed_{param.name}")
            n = len(kernel)
            flip = [b.const(np.full(n, -1), scope, "flip_starts", np.int64),
                    b.const(np.full(n, np.iinfo(np.int64).min), scope, "flip_ends", np.int64),
                    b.const(np.array(spatial), scope, "flip_axes", np.int64),
                    b.const(np.full(n, -1), scope, "flip_steps", np.int64)]
            self._flipped[param.name] = b.op("Slice", [transposed, *flip], scope, f"w_flipped_{param.name}")
        return self._flipped[param.name]


class ConvTransposeOps(ConvOps):
    """ConvTranspose z = W^T x (weight [C_in, C_out/g, k...]): its modified forwards are ConvTransposes with the
    modified weight, its adjoint W g is the Conv with that same weight, strides, dilations, pads and groups."""

    def __init__(self, b, layer, scope):
        a = attrs_of(layer.nodes[0])
        nd = len(layer.weight_shape) - 2
        self.b, self.layer, self.scope = b, layer, scope
        auto_pad = a.get("auto_pad", b"NOTSET")
        valid = (auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad) == "VALID"
        self.attrs = dict(strides=list(a.get("strides", [1] * nd)), dilations=list(a.get("dilations", [1] * nd)),
                          pads=[0] * (2 * nd) if valid else list(a.get("pads", [0] * (2 * nd))),
                          group=a.get("group", 1))
        self.output_padding = a.get("output_padding")
        self._weights = {}

    def forward(self, x, param, bias, shift=0.0):
        inputs = [x, self.weight(param)]
        bias = _modified_bias(self.layer, param, bias, shift, self.layer.weight_shape[1] * self.attrs["group"])
        if bias is not None:
            inputs.append(self.b.const(bias, self.scope, f"bias_{param.name}"))
        return self.b.op("ConvTranspose", inputs, self.scope, f"conv_transpose_{param.name}",
                         output_padding=self.output_padding, **self.attrs)

    def adjoint(self, g, param):
        w = self.weight(param)
        in_channels, out_per_group = self.layer.weight_shape[:2]
        if in_channels == out_per_group * self.attrs["group"]:  # the same shape in both layouts (distinct_weight)
            w, g = distinct_weight(self.b, w, g, self.scope, param.name)
        return self.b.op("Conv", [g, w], self.scope, f"conv_transpose_T_{param.name}", **self.attrs)


class DenseOps:
    """x @ W (+ b). Rank-2 inputs use Gemm, whose transB reads either weight layout; higher ranks use MatMul."""

    def __init__(self, b, layer, scope):
        self.b, self.layer, self.scope = b, layer, scope
        self.rank2 = len(b.shapes.get(layer.x) or []) == 2
        self._modified = {}  # param name -> the modified weight, in the initializer's layout

    def _weight(self, param, transposed):
        """(name, stored_transposed) of the modified weight: nodes on the model's own initializer where there is one
        (Gemm reads either layout; MatMul gets a Transpose where it needs the other), else a constant."""
        layer, b, scope = self.layer, self.b, self.scope
        if layer.weight_name:
            if param.name not in self._modified:
                self._modified[param.name] = param.graph(b, layer.weight_name, scope)
            w = self._modified[param.name]
            if self.rank2 or layer.weight_transposed == transposed:
                return w, layer.weight_transposed
            return b.op("Transpose", [w], scope, f"weight_{param.name}_T", perm=[1, 0]), transposed
        w = param(layer.weight)
        return b.const(w.T if transposed else w, scope, f"weight_{param.name}{'_T' if transposed else ''}"), transposed

    def forward(self, x, param, bias, shift=0.0):
        b, scope = self.b, self.scope
        bias = _modified_bias(self.layer, param, bias, shift, self.layer.weight_shape[1])
        bias_name = b.const(bias, scope, f"bias_{param.name}") if bias is not None else None
        if self.rank2:
            w, t = self._weight(param, False)
            return b.op("Gemm", [x, w] + ([bias_name] if bias_name else []), scope, f"dense_{param.name}",
                        transB=int(t))
        w, _ = self._weight(param, False)
        y = b.op("MatMul", [x, w], scope, f"dense_{param.name}")
        return b.op("Add", [y, bias_name], scope, f"dense_bias_{param.name}") if bias_name else y

    def adjoint(self, g, param):
        b, scope = self.b, self.scope
        square = self.layer.weight_shape[0] == self.layer.weight_shape[1]
        if self.rank2:
            w, t = self._weight(param, False)
            if square:  # (Gemm's alpha takes the 1/2, so no extra pass over g)
                w = distinct_weight(b, w, None, scope, param.name)[0]
            return b.op("Gemm", [g, w], scope, f"dense_T_{param.name}", transB=int(not t),
                        alpha=0.5 if square else None)
        w, _ = self._weight(param, True)
        if square:
            w, g = distinct_weight(b, w, g, scope, param.name)
        return b.op("MatMul", [g, w], scope, f"dense_T_{param.name}")


OPS = {"conv": ConvOps, "conv_transpose": ConvTransposeOps, "dense": DenseOps}


def _modified_bias(layer, param, bias, shift, outputs):
    """The bias of a modified forward (None: none), plus `shift` (a stabilizer folded in)."""
    value = param(layer.bias) if bias and layer.bias is not None else None
    if shift:
        value = (np.zeros(outputs, np.float32) if value is None else value) + np.float32(shift)
    return value


def distinct_weight(b, w, g, scope, hint):
    """(2 w, g / 2) for an adjoint whose weight has the same shape in the forward and the transposed layout: the
    product is exact (powers of two), and the adjoint reads a constant of its own (folded once at load). OpenVINO
    2026.4's CPU plugin computes an op that reads a square constant transposed with the layout of another op that
    reads the same constant directly (MatMul(x, W) beside MatMul(r, W^T), Conv beside ConvTranspose)."""
    doubled = b.op("Mul", [w, b.scalar(2.0)], scope, f"weight_{hint}_doubled")
    return doubled, None if g is None else b.op("Mul", [g, b.scalar(0.5)], scope, f"adjoint_input_{hint}_halved")


def _constant_input_shape(b, layer):
    """Batch-1 shape of a constant input; a dense layer acts on the last axis, so [1, in] broadcasts."""
    if layer.kind in ("conv", "conv_transpose"):
        return [1] + b.static_shape(layer.x, layer.nodes[0])[1:]
    return [1, layer.weight_shape[0]]


def _rule_input(b, layer, x, kind, rule, scope, cache):
    """The tensor a term feeds its modified forward: a, a+, a-, a batch-1 constant of ones, or a - bound."""
    if kind in cache:
        return cache[kind]
    if kind == "a":
        out = x
    elif kind == "a+":
        out = b.op("Relu", [x], scope, "input_pos")
    elif kind == "a-":
        out = b.op("Min", [x, b.scalar(0.0)], scope, "input_neg")
    elif kind == "ones":
        out = b.const(np.ones(_constant_input_shape(b, layer), np.float32), scope, "input_ones")
    else:  # a - low, a - high (z-box)
        bound = rule.bounds[0] if kind == "a-low" else rule.bounds[1]
        shape = _constant_input_shape(b, layer)
        try:
            array = np.broadcast_to(np.asarray(bound, np.float32), shape)
        except ValueError:
            from ..errors import OnnxLrpError
            raise OnnxLrpError(f"node '{scope}': the z-box bound with shape {list(np.shape(bound))} does not "
                               f"broadcast to the layer input {shape}; give a scalar, or an array that "
                               "broadcasts to the input (e.g. [1, C, 1, 1] for one bound per channel).") from None
        out = b.op("Sub", [x, b.const(array, scope, kind.replace("a-", "bound_"))], scope, f"input_minus_{kind[2:]}")
    cache[kind] = out
    return out


def _stabilizer_folded_groups(rule, terms, layer):
    """Groups whose denominator is one modified forward that is >= 0 by construction (z-plus, flat, alpha's
    share): its stabilizer z + eps is folded into that forward's bias, so no pass over memory adds it."""
    if rule.stabilizer <= 0:
        return set()
    folded = set()
    for group, mask in enumerate(rule.masks):
        members = [t for t in terms if t.group == group]
        if (mask is None and len(members) == 1 and not members[0].reuses_forward
                and members[0].non_negative(layer.input_non_negative, layer.bias is not None)):
            folded.add(group)
    return folded


def apply_rule(b, layer, rule, relevance, scope):
    """Emit R_in for any declarative rule (see rules/base.py); returns the relevance at the layer input."""
    if rule.name == "pass":
        return relevance
    ops = OPS[layer.kind](b, layer, scope)
    # Gemm(transA=1) reads its input as [in, batch]: work on the transposed input, transpose the relevance back
    x = b.op("Transpose", [layer.x], scope, "input_T", perm=[1, 0]) if layer.input_transposed else layer.x
    inputs = {"a+": x} if layer.input_non_negative else {}
    has_bias = layer.bias is not None
    # on a non-negative input, a- is exactly 0: its terms add exactly 0 to every sum and are left out
    terms = [t for t in rule.terms if not (layer.input_non_negative and t.input == "a-")]
    folded = _stabilizer_folded_groups(rule, terms, layer)
    outs = [layer.z if t.reuses_forward else
            ops.forward(_rule_input(b, layer, x, t.input, rule, scope, inputs), t.param, t.bias and has_bias,
                        shift=rule.stabilizer if t.group in folded else 0.0)
            for t in terms]
    ratios = []
    for group, mask in enumerate(rule.masks):
        members = [(t, o) for t, o in zip(terms, outs) if t.group == group]
        denominator = b.sum([o for _, o in members], scope, "denominator")
        if group in folded:
            ratios.append(b.op("Div", [relevance, denominator], scope, "ratio"))
            continue
        non_negative = all(t.non_negative(layer.input_non_negative, has_bias) for t, _ in members)
        ratio = b.divide_stabilized(relevance, denominator, rule.stabilizer, scope, non_negative=non_negative)
        if mask:
            keep = b.op("Greater" if mask == "z>0" else "Less", [layer.z, b.scalar(0.0)], scope, "sign_mask")
            ratio = b.op("Where", [keep, ratio, b.scalar(0.0)], scope, "masked_ratio")
        ratios.append(ratio)
    parts = []
    for t in terms:
        part = ops.adjoint(ratios[t.group], t.param)
        if t.input != "ones":
            part = b.scaled(_rule_input(b, layer, x, t.input, rule, scope, inputs), part, scope, "contribution")
        if t.coef != 1.0:
            part = b.op("Mul", [part, b.scalar(t.coef)], scope, "weighted")
        parts.append(part)
    relevance_in = b.sum(parts, scope, "relevance")
    if layer.input_transposed:
        relevance_in = b.op("Transpose", [relevance_in], scope, "relevance_T", perm=[1, 0])
    return relevance_in


def _check_pass_shape(step, ctx):
    if step.rule is not None and step.rule.name == "pass":
        if ctx.shapes.get(step.layer.x) != ctx.shapes.get(step.layer.z):
            return "rule 'pass' needs the layer's input and output to have the same shape"
    return None


@register("Linear", check=_check_pass_shape)
def linear(b, step, rel_outs):
    return {step.layer.x: apply_rule(b, step.layer, step.rule, rel_outs[0], step.name)}


GRADIENT_INPUT_EPS = 1e-10  # a rule's relevance back to a gradient: R_x / (x + 1e-10 sign(x)), as LXT's bridge


@register_gradient("Linear")
def linear_gradient(b, step, grads):
    """Gradient form (the transformer composites): LRP-0 is the plain adjoint W^T g, the bias absorbing its share.
    Any other rule (a Zennit composite mixed in) works on the relevance z * g and hands back R_x / x."""
    layer, scope = step.layer, step.name
    if step.rule.name != "zero":
        relevance = apply_rule(b, layer, step.rule, b.op("Mul", [layer.z, grads[0]], scope, "output_relevance"), scope)
        return {layer.x: b.op("Div", [relevance, b.stabilize(layer.x, GRADIENT_INPUT_EPS, scope)], scope, "gradient")}
    g = OPS[layer.kind](b, layer, scope).adjoint(grads[0], IDENTITY)
    return {layer.x: b.op("Transpose", [g], scope, "gradient_T", perm=[1, 0]) if layer.input_transposed else g}
