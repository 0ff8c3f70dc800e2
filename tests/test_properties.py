"""Property-based tests: random small networks, every rule and composite, against a float64 numpy reference.

Hypothesis draws an architecture (a CNN: 1-3 Convs with random kernels, strides, pads, dilations and depthwise
groups, activations, MaxPool / AveragePool, a residual block Conv-act-Conv + Add, GlobalAveragePool or
Flatten / Reshape, 0-2 hidden dense layers and the logits in Gemm / Gemm transB / MatMul(+Add) form; or an
MLP, with a dense residual block), its weights (per layer a magnitude 1e-3, 1 or 1e3, a fraction of exact zeros
up to all of them, dead output neurons, biases absent / zero / random) and its inputs (all-zero, signed,
non-negative, sparse; magnitude 1e-3, 1 or 1e3). The model is built with onnx.helper, compiled with each
composite (drawn epsilon, gamma, alpha/beta, z-box bounds) or with each rule on every linear layer
(rules=['*=RULE']), and run in onnxruntime with random targets (negative: the top class) and the one-hot or
the logit seed. tests/numpy_network.py computes the same relevance in float64 with the single-layer rules of
tests/numpy_lrp.py; the rules a composite gives each layer are read off lrp-rules.md (composite_rules below).

Every example must give finite relevance that agrees with the reference: max|ours - ref| <= RTOL * max|ref|
plus a conditioning term. float32 (onnxruntime) and float64 (reference) legitimately differ where a
denominator nearly cancels (epsilon, zero, gamma, z-box outside its box, and the Norm of pooling and residual
sums over signed activations): the relevance through such a neuron is amplified, and so is float32's rounding.
The term is K times how far the reference itself moves when every weight, bias and activation is multiplied
by (1 + ETA * N(0, 1)), ETA = 16x float32's unit roundoff; exact zeros stay zero, so exact zero denominators
stay exact. In a well-conditioned example it is negligible and RTOL = 1e-4 is the bound (measured there: at
most about 3e-6), so a wrong rule, bias term, divisor, first-layer choice, routing or a NaN cannot hide.
Two discrete decisions are not left to the float64 forward: which element of a MaxPool window wins is decided
on the pool's input as onnxruntime computed it (exposed as an extra graph output), by the reference's own
first-maximum-in-row-major-order rule: values equal in float32 but not in float64 (a saturated Elu, an
average of equal numbers) are ties for the model. And an example with a denominator within 1e-5 of its terms'
magnitude, yet not exactly 0 (its sign, hence the stabilizer's sign or gamma's mask, is rounding noise), is
checked for finite relevance only (numpy_network.ambiguities; a few percent of the examples).
Dedicated tests below construct zero denominators on purpose: such a neuron passes no relevance, never NaN.
"""
import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import numpy_network as nn
import onnx_lrp
from conftest import run

RTOL = 1e-4  # relative to max|reference|
EXAMPLES_PER_COMPOSITE, EXAMPLES_PER_RULE = 60, 40  # about 35 ms each: some 30 s for the whole file
ETA, DRAWS, K = 1e-6, 2, 10.0  # the conditioning term: K * max over DRAWS perturbed references of |ref' - ref|
FLOAT32_SAFE = 1e30  # reference magnitudes beyond this may overflow float32 in the rules without a stabilizer
TINY = 1e-36  # float32 denormals: below ~1e-38 float32 has no relative precision left (large biases through
# w-square, B^2 ~ 1e18, can shrink the relevance that far; the reference then says 1e-54, float32 says 0)

SETTINGS = dict(deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ACTIVATIONS = [None, "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Elu"]

# (rule spec for rules=['*=SPEC'], reference rule, reference parameters)
RULE_SPECS = [
    ("zero", "zero", {}),
    ("epsilon", "epsilon", {}),
    ("epsilon:epsilon=0.01", "epsilon", {"epsilon": 0.01}),
    ("z-plus", "z-plus", {}),
    ("alpha-beta", "alpha-beta", {}),
    ("alpha-beta:alpha=1,beta=0", "alpha-beta", {"alpha": 1.0, "beta": 0.0}),
    ("gamma", "gamma", {}),
    ("gamma:gamma=0.5", "gamma", {"gamma": 0.5}),
    ("z-box", "z-box", {}),  # low / high given to compile(), see bounds()
    ("flat", "flat", {}),
    ("w-square", "w-square", {}),
    ("norm", "norm", {}),
]
COMPOSITES = ["epsilon", "epsilon-plus", "epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1",
              "epsilon-alpha2-beta1-flat"]


# -- the reference's own reading of the composites (/work/shared/lrp-rules.md, section 2) --------------------------

def composite_rules(composite, layers, p):
    """(rule, params) per linear layer in graph order. Convs get the composite's conv rule, dense layers epsilon;
    *-flat: the first linear layer (conv or dense) gets flat; epsilon-gamma-box: the first conv gets z-box."""
    conv_rule = {"epsilon": ("epsilon", {"epsilon": p["epsilon"]}),
                 "epsilon-plus": ("z-plus", {}), "epsilon-plus-flat": ("z-plus", {}),
                 "epsilon-gamma-box": ("gamma", {"gamma": p["gamma"]}),
                 "epsilon-alpha2-beta1": ("alpha-beta", {"alpha": p["alpha"], "beta": p["beta"]}),
                 "epsilon-alpha2-beta1-flat": ("alpha-beta", {"alpha": p["alpha"], "beta": p["beta"]})}[composite]
    rules = [conv_rule if layer.kind == "conv" else ("epsilon", {"epsilon": p["epsilon"]}) for layer in layers]
    first_kinds = {"epsilon-plus-flat": ("conv", "dense"), "epsilon-alpha2-beta1-flat": ("conv", "dense"),
                   "epsilon-gamma-box": ("conv",)}.get(composite, ())
    first = next((i for i, layer in enumerate(layers) if layer.kind in first_kinds), None)
    if first is not None:
        rules[first] = ("z-box", {"low": p["low"], "high": p["high"]}) if composite == "epsilon-gamma-box" \
            else ("flat", {})
    return rules


# -- ONNX model of a numpy_network.Network -------------------------------------------------------------------------

def to_onnx(net, classes, pool_inputs=None):
    """The ONNX model of `net`; pool_inputs, if a list, receives the names of the MaxPools' input tensors."""
    nodes, inits, count = [], [], [0]

    def name(prefix):
        count[0] += 1
        return f"{prefix}{count[0]}"

    def const(array, prefix):
        key = name(prefix)
        inits.append(numpy_helper.from_array(np.asarray(array), key))
        return key

    def emit(node_list, x):
        for node in node_list:
            if isinstance(node, nn.Conv):
                n = name("conv")
                inputs = [x, const(node.W, f"{n}_w")] + ([const(node.B, f"{n}_b")] if node.B is not None else [])
                nodes.append(helper.make_node("Conv", inputs, [n], name=n, kernel_shape=list(node.W.shape[2:]),
                                              strides=list(node.strides), pads=list(node.pads),
                                              dilations=list(node.dilations), group=node.group))
                x = n
            elif isinstance(node, nn.Dense):
                n = name("dense")
                if node.form == "matmul":
                    out = n if node.B is None else f"{n}_mm"
                    nodes.append(helper.make_node("MatMul", [x, const(node.W, f"{n}_w")], [out], name=n))
                    if node.B is not None:
                        b = const(node.B, f"{n}_b")
                        nodes.append(helper.make_node("Add", [out, b] if count[0] % 2 else [b, out], [n],
                                                      name=f"{n}_bias"))
                else:
                    t = node.form == "gemm_t"
                    inputs = [x, const(node.W.T if t else node.W, f"{n}_w")]
                    inputs += [const(node.B, f"{n}_b")] if node.B is not None else []
                    nodes.append(helper.make_node("Gemm", inputs, [n], name=n, transB=int(t)))
                x = n
            elif isinstance(node, nn.Act):
                n = name(node.name.lower())
                attrs = {"alpha": node.alpha} if node.name in ("LeakyRelu", "Elu") else {}
                nodes.append(helper.make_node(node.name, [x], [n], name=n, **attrs))
                x = n
            elif isinstance(node, nn.MaxPool):
                if pool_inputs is not None:
                    pool_inputs.append(x)
                n = name("maxpool")
                nodes.append(helper.make_node("MaxPool", [x], [n], name=n, kernel_shape=list(node.kernel),
                                              strides=list(node.strides), pads=list(node.pads)))
                x = n
            elif isinstance(node, nn.AvgPool):
                n = name("avgpool")
                nodes.append(helper.make_node("AveragePool", [x], [n], name=n, kernel_shape=list(node.kernel),
                                              strides=list(node.strides), pads=list(node.pads),
                                              count_include_pad=node.count_include_pad))
                x = n
            elif isinstance(node, nn.GlobalAvgPool):
                n = name("gap")
                nodes.append(helper.make_node("GlobalAveragePool", [x], [n], name=n))
                x = n
            elif isinstance(node, nn.Flatten):
                n = name("flatten")
                if node.reshape:
                    shape = const(np.array([0, -1], np.int64), f"{n}_shape")
                    nodes.append(helper.make_node("Reshape", [x, shape], [n], name=n))
                else:
                    nodes.append(helper.make_node("Flatten", [x], [n], name=n, axis=1))
                x = n
            elif isinstance(node, nn.Residual):
                y = emit(node.body, x)
                n = name("add")
                nodes.append(helper.make_node("Add", [y, x] if node.body_first else [x, y], [n], name=n))
                x = n
            else:
                raise TypeError(node)
        return x

    logits = emit(net.nodes, "x")
    nodes.append(helper.make_node("Identity", [logits], ["logits"], name="output"))
    graph = helper.make_graph(nodes, "random_net",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *net.in_shape])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# -- strategies --------------------------------------------------------------------------------------------------

class Drawer:
    """Structure comes from hypothesis (so it shrinks), array values from a numpy generator it seeds."""

    def __init__(self, draw):
        self.draw = draw
        self.rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
        self.scale = 1.0  # the typical magnitude of the current activations

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def int(self, lo, hi):
        return self.draw(st.integers(lo, hi))

    def params(self, shape, fan_in, out_axis):
        """Weight and bias of a linear layer: magnitude, exact zeros, dead outputs, absent / zero biases.
        Keeps the activations' typical magnitude within [1e-9, 1e9] so float32 stays finite and normal."""
        magnitudes = [m for m in (1e-3, 1.0, 1e3) if 1e-9 <= self.scale * m <= 1e9]
        magnitude = self.pick(magnitudes)
        W = self.rng.standard_normal(shape) * (magnitude / np.sqrt(fan_in))
        W[self.rng.random(shape) < self.pick([0.0, 0.0, 0.3, 0.7, 1.0])] = 0.0  # 1.0: every weight zero
        out = shape[out_axis]
        dead = self.rng.random(out) < self.pick([0.0, 0.0, 0.3])  # outputs with only zero weights
        W[(slice(None),) * out_axis + (dead,)] = 0.0
        self.scale *= magnitude
        bias = self.pick(["none", "zero", "random", "random"])
        B = None if bias == "none" else np.zeros(out) if bias == "zero" else \
            self.rng.standard_normal(out) * 0.5 * self.scale
        if B is not None:
            B[dead] = 0.0  # a dead output's z is exactly 0
        return W.astype(np.float32), None if B is None else B.astype(np.float32)

    def activation(self):
        act = self.pick(ACTIVATIONS)
        if act is None:
            return []
        if act in ("Tanh", "Sigmoid"):
            self.scale = 1.0 if act == "Sigmoid" else min(self.scale, 1.0)
        alpha = {"LeakyRelu": self.pick([0.01, 0.3]), "Elu": self.pick([1.0, 0.5])}.get(act, 0.01)
        return [nn.Act(act, alpha)]

    def window(self, size, max_kernel=3, dilation=False):
        """(kernel, stride, pad_begin, pad_end, dilation) of one spatial dim that fits `size`."""
        k = self.int(1, max_kernel)
        d = self.pick([1, 2]) if dilation and k > 1 else 1
        s = self.int(1, 2)
        pb, pe = self.int(0, min(2, (k - 1) * d)), self.int(0, min(2, (k - 1) * d))
        if size + pb + pe < (k - 1) * d + 1:
            return 1, s, 0, 0, 1
        return k, s, pb, pe, d

    def conv(self, shape, same=False):
        C = shape[0]
        if same:  # keeps the shape: for the residual body
            k, d = self.pick([1, 3]), self.pick([1, 2])
            kernel, strides, dilations, pads, O, group = (k, k), (1, 1), (d, d), [(k - 1) // 2 * d] * 4, C, 1
        else:
            (kh, sh, pth, peh, dh), (kw, sw, ptw, pew, dw) = (self.window(shape[1], dilation=True),
                                                              self.window(shape[2], dilation=True))
            kernel, strides, dilations, pads = (kh, kw), (sh, sw), (dh, dw), (pth, ptw, peh, pew)
            depthwise = C > 1 and self.draw(st.booleans())
            group = C if depthwise else 1
            O = C * self.int(1, 2) if depthwise else self.int(1, 4)
        W, B = self.params((O, C // group) + tuple(kernel), C // group * kernel[0] * kernel[1], 0)
        return nn.Conv(W, B, tuple(strides), tuple(pads), tuple(dilations), group)

    def pool(self, shape):
        kind = self.pick([None, None, "max", "avg"])
        if kind is None:
            return []
        (kh, sh, pth, peh, _), (kw, sw, ptw, pew, _) = self.window(shape[1]), self.window(shape[2])
        # pads must stay below the kernel (no window wholly in the padding)
        pads = (min(pth, kh - 1), min(ptw, kw - 1), min(peh, kh - 1), min(pew, kw - 1))
        if kind == "max":
            return [nn.MaxPool((kh, kw), (sh, sw), pads)]
        return [nn.AvgPool((kh, kw), (sh, sw), pads, self.pick([0, 1]))]

    def dense(self, d_in, d_out):
        W, B = self.params((d_in, d_out), d_in, 1)
        return nn.Dense(W, B, self.pick(["gemm", "gemm_t", "matmul"]))

    def residual(self, make_body):
        """x + body(x), then maybe an activation; the sum is about as large as the larger of its terms."""
        before = self.scale
        body = make_body()
        self.scale = max(before, self.scale)
        return [nn.Residual(body, self.draw(st.booleans()))] + self.activation()


def shape_after(nodes, shape):
    for node in nodes:
        shape = nn.out_shape(node, shape)
    return shape


@st.composite
def networks(draw):
    """(numpy_network.Network, number of classes, input batch, the numpy generator for targets and noise)."""
    g = Drawer(draw)
    classes = g.int(2, 5)
    x_scale = g.pick([1.0, 1.0, 1e-3, 1e3])
    g.scale = x_scale
    nodes = []
    if g.pick(["cnn", "cnn", "mlp"]) == "cnn":
        in_shape = (g.int(1, 3), g.int(3, 8), g.int(3, 8))
        n_conv = g.int(1, 3)
        residual_at = g.int(-1, n_conv)  # before conv i (n_conv: after the last one), -1: none
        for i in range(n_conv + 1):
            shape = shape_after(nodes, in_shape)
            if i == residual_at:
                nodes += g.residual(lambda: [g.conv(shape, same=True)] + g.activation() + [g.conv(shape, same=True)])
            if i < n_conv:
                nodes += [g.conv(shape_after(nodes, in_shape))] + g.activation()
                nodes += g.pool(shape_after(nodes, in_shape))
        shape = shape_after(nodes, in_shape)
        if g.draw(st.booleans()) or np.prod(shape) > 256:
            nodes.append(nn.GlobalAvgPool())
        nodes.append(nn.Flatten(reshape=g.draw(st.booleans())))
    else:
        in_shape = (g.int(1, 10),)
    features = shape_after(nodes, in_shape)[0]
    for i in range(g.int(0, 2)):  # hidden dense layers
        width = g.int(2, 8)
        nodes += [g.dense(features, width)] + g.activation()
        features = width
        if not any(isinstance(n, nn.Residual) for n in nodes) and g.pick([False, False, True]):
            nodes += g.residual(lambda: [g.dense(width, width)] + g.activation() + [g.dense(width, width)])
    nodes.append(g.dense(features, classes))

    batch = g.int(1, 3)
    kind = g.pick(["zero", "signed", "signed", "non-negative", "sparse"])
    x = g.rng.standard_normal((batch, *in_shape)) * x_scale
    if kind == "zero":
        x[:] = 0.0
    elif kind == "non-negative":
        x = np.abs(x)
    elif kind == "sparse":
        x[g.rng.random(x.shape) < 0.5] = 0.0
    event(f"input: {kind}")
    return nn.Network(in_shape, nodes), classes, x.astype(np.float32), g.rng


def bounds(pick, x):
    """z-box bounds (float32 numbers): sometimes exactly the input's extremes, so inputs sit on a bound."""
    low = min(float(x.min()), 0.0) - pick([0.0, 1.0])
    high = max(float(x.max()), 0.0) + pick([0.0, 1.0])
    return float(np.float32(low)), float(np.float32(high))


# -- the comparison ------------------------------------------------------------------------------------------------

def compile_and_run(net, classes, x, target, **compile_kw):
    """Compile the ONNX model of `net`, run it on x; returns its outputs and the MaxPools' inputs as it computed
    them (exposed as extra graph outputs)."""
    pools = []
    compiled = onnx_lrp.compile(to_onnx(net, classes, pools), **compile_kw)
    compiled.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in pools)
    out = run(compiled, {"x": x, "target": target})
    return out, [out[name] for name in pools]


def check_against_reference(net, classes, x, rng, ref_rules, seed, **compile_kw):
    """Compile, run, and assert finite relevance that agrees with the reference computed with ref_rules (one
    (rule, params) per linear layer)."""
    target = rng.integers(-1, classes, len(x)).astype(np.int64)
    out, pools = compile_and_run(net, classes, x, target, seed=seed, **compile_kw)
    logits, rel = out["logits"], out["relevance_x"]
    assert rel.shape == x.shape and rel.dtype == np.float32
    assert np.all(np.isfinite(logits))
    chosen = np.where(target < 0, logits.argmax(1), target)  # the top class as onnxruntime saw it

    ref_logits, expected = nn.relevance(net, x, chosen, ref_rules, seed, pools)
    assert np.all(np.isfinite(expected))  # the reference's own stabilizers
    scale = np.abs(expected).max()
    if scale < FLOAT32_SAFE:
        assert np.all(np.isfinite(rel)), f"non-finite relevance with {ref_rules}"
    else:  # only LRP-0 (no stabilizer) can get here: a z that is tiny but not 0
        assert any(r == "zero" for r, _ in ref_rules)
        event("reference beyond float32 range")
        return
    ambiguous = nn.ambiguities(net, x, ref_rules, pools)
    if ambiguous:  # float32 may legitimately take another sign here: finite is all we can ask
        event(f"ambiguous: {', '.join(sorted(ambiguous))}")
        return

    moved_logits, moved = 0.0, 0.0
    for _ in range(DRAWS):
        p_logits, p_rel = nn.relevance(nn.perturbed(net, rng, ETA), x, chosen, ref_rules, seed, pools)
        moved_logits = max(moved_logits, np.abs(p_logits - ref_logits).max())
        moved = max(moved, np.abs(p_rel - expected).max())
    np.testing.assert_allclose(logits, ref_logits, rtol=0,
                               atol=1e-4 * np.abs(ref_logits).max() + K * moved_logits + TINY)
    err = np.abs(rel - expected).max()
    bound = RTOL * scale + K * moved + TINY
    event("ill-conditioned" if K * moved > RTOL * scale else "well-conditioned")
    assert err <= bound, (f"max|ours - ref| = {err:.3g} > {bound:.3g} (max|ref| = {scale:.3g}, "
                          f"perturbation moved the reference by {moved:.3g}); rules {ref_rules}")


@pytest.mark.parametrize("composite", COMPOSITES)
@settings(max_examples=EXAMPLES_PER_COMPOSITE, **SETTINGS)
@given(case=networks(), data=st.data())
def test_composites_match_the_reference(composite, case, data):
    net, classes, x, rng = case
    pick = lambda options: data.draw(st.sampled_from(options))  # noqa: E731
    alpha = pick([2.0, 1.0])
    params = dict(epsilon=pick([1e-6, 1e-2]), gamma=pick([0.25, 0.5, 0.0]), alpha=alpha, beta=alpha - 1)
    low, high = bounds(pick, x)
    seed = pick(["one-hot", "one-hot", "logit"])
    kw = dict(low=low, high=high) if composite == "epsilon-gamma-box" else {}
    rules = composite_rules(composite, nn.linear_layers(net.nodes), dict(params, low=low, high=high))
    check_against_reference(net, classes, x, rng, rules, seed, composite=composite, **params, **kw)


@pytest.mark.parametrize("spec, rule, params", RULE_SPECS, ids=[spec for spec, _, _ in RULE_SPECS])
@settings(max_examples=EXAMPLES_PER_RULE, **SETTINGS)
@given(case=networks(), data=st.data())
def test_every_rule_on_every_layer_matches_the_reference(spec, rule, params, case, data):
    net, classes, x, rng = case
    pick = lambda options: data.draw(st.sampled_from(options))  # noqa: E731
    kw = {}
    if rule == "z-box":
        low, high = bounds(pick, x)
        params, kw = {"low": low, "high": high}, {"low": low, "high": high}
    seed = pick(["one-hot", "one-hot", "logit"])
    rules = [(rule, params)] * len(nn.linear_layers(net.nodes))
    check_against_reference(net, classes, x, rng, rules, seed, rules=[f"*={spec}"], **kw)


# -- zero denominators ---------------------------------------------------------------------------------------------

ZBOX = {"low": -3.0, "high": 3.0}
ZERO_DENOMINATOR_RULES = [(spec, rule, dict(params, **ZBOX) if rule == "z-box" else params)
                          for spec, rule, params in RULE_SPECS if rule != "flat"]


def _relevance(net, x, target, spec, rule, params, classes=2):
    """Compiled relevance with `spec` on the first linear layer and epsilon on the others, and the reference."""
    layers = nn.linear_layers(net.nodes)
    first = "conv1" if isinstance(net.nodes[0], nn.Conv) else "dense1"  # to_onnx's name of the first node
    compiled = onnx_lrp.compile(to_onnx(net, classes), seed="one-hot", rules=[f"{first}={spec}", "*=epsilon"],
                                **(ZBOX if rule == "z-box" else {}))
    out = run(compiled, {"x": x, "target": np.full(len(x), target, np.int64)})
    rules = [(rule, params)] + [("epsilon", {})] * (len(layers) - 1)
    return out["relevance_x"], nn.relevance(net, x, np.full(len(x), target), rules)[1]


def _dead_neuron_net(kind, bias, rng):
    """Linear layer with output 0 dead (zero weights, zero or no bias) -> Sigmoid (so the dead neuron's
    activation is 0.5 and takes relevance from above) -> [GlobalAveragePool, Flatten] -> a Gemm whose class 0
    reads only neuron 0 and class 1 only the live neurons."""
    B = np.array([0.0, 0.3, -0.2], np.float32) if bias else None
    if kind == "conv":
        W = rng.standard_normal((3, 2, 3, 3)).astype(np.float32)
        W[0] = 0.0
        first = nn.Conv(W, B, (1, 1), (1, 1, 1, 1))
        middle, x = [nn.GlobalAvgPool(), nn.Flatten()], rng.standard_normal((2, 2, 4, 4))
    else:
        W = rng.standard_normal((5, 3)).astype(np.float32)
        W[:, 0] = 0.0
        first = nn.Dense(W, B, "gemm")
        middle, x = [], rng.standard_normal((2, 5))
    head = nn.Dense(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, -0.5]], np.float32), None, "gemm")
    return nn.Network(x.shape[1:], [first, nn.Act("Sigmoid")] + middle + [head]), x.astype(np.float32)


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "zero-bias"])
@pytest.mark.parametrize("kind", ["conv", "dense"])
@pytest.mark.parametrize("spec, rule, params", ZERO_DENOMINATOR_RULES, ids=[s for s, _, _ in ZERO_DENOMINATOR_RULES])
def test_dead_neuron_passes_no_relevance(spec, rule, params, kind, bias):
    """A neuron whose denominator is 0 because all its terms are 0 (zero weights, zero or no bias) receives
    relevance but passes none on, for every rule: exactly zero, no NaN (the stabilizer's sign0(0) = +1, or the
    explicit drop of LRP-0 and gamma). Flat's denominator (a count of inputs) is never 0, so it passes relevance:
    the contrast that shows the relevance really reaches the dead neuron."""
    net, x = _dead_neuron_net(kind, bias, np.random.default_rng(5))
    got, expected = _relevance(net, x, 0, spec, rule, params)
    assert np.all(np.isfinite(got))
    assert np.all(got == 0) and np.all(expected == 0)
    live, expected = _relevance(net, x, 1, spec, rule, params)  # the other class reads the live neurons
    assert np.all(np.isfinite(live)) and np.abs(live).max() > 0
    np.testing.assert_allclose(live, expected, rtol=0, atol=RTOL * np.abs(expected).max())
    contrast, _ = _relevance(net, x, 0, "flat", "flat", {})
    assert np.abs(contrast).max() > 0


@pytest.mark.parametrize("spec, rule, params", RULE_SPECS, ids=[s for s, _, _ in RULE_SPECS])
@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_all_zero_input_without_bias(spec, rule, params, kind):
    """All-zero input and no biases: every denominator of the first layer is 0 (and after the Sigmoids, whose
    0.5 carries relevance on, every logit is 0). The relevance is finite and equals the reference; every rule
    that multiplies by the layer input (all but flat, w-square and z-box) gives exactly 0."""
    rng = np.random.default_rng(11)
    params = dict(params, **ZBOX) if rule == "z-box" else params
    if kind == "conv":
        nodes = [nn.Conv(rng.standard_normal((3, 2, 3, 3)).astype(np.float32), None, (2, 1), (1, 0, 1, 2)),
                 nn.Act("Relu"), nn.MaxPool((2, 2), (1, 1), (0, 0, 1, 1)),
                 nn.Conv(rng.standard_normal((2, 3, 1, 1)).astype(np.float32)), nn.Act("Sigmoid"),
                 nn.AvgPool((2, 2), (1, 1), (0, 0, 0, 0)), nn.Flatten()]
        x = np.zeros((2, 2, 5, 4), np.float32)
    else:
        nodes = [nn.Dense(rng.standard_normal((4, 3)).astype(np.float32), None, "matmul"), nn.Act("Sigmoid"),
                 nn.Residual([nn.Dense(rng.standard_normal((3, 3)).astype(np.float32), None, "gemm_t")])]
        x = np.zeros((2, 4), np.float32)
    net = nn.Network(x.shape[1:], nodes)
    features = nn.out_shape(nodes[-1], shape_after(nodes[:-1], x.shape[1:]))[0]
    net.nodes.append(nn.Dense(rng.standard_normal((features, 3)).astype(np.float32), None, "gemm"))
    out, pools = compile_and_run(net, 3, x, np.array([-1, 2], np.int64), seed="one-hot", rules=[f"*={spec}"],
                                 **(ZBOX if rule == "z-box" else {}))
    rules = [(rule, params)] * len(nn.linear_layers(net.nodes))
    chosen = np.array([out["logits"][0].argmax(), 2])
    expected = nn.relevance(net, x, chosen, rules, pool_inputs=pools)[1]
    got = out["relevance_x"]
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL * np.abs(expected).max())
    if rule not in ("flat", "w-square", "z-box"):
        assert np.all(got == 0)
    else:
        assert np.abs(got).max() > 0


@pytest.mark.parametrize("spec, rule, params", [c for c in RULE_SPECS if c[1] in ("zero", "gamma", "epsilon", "norm")],
                         ids=[c[0] for c in RULE_SPECS if c[1] in ("zero", "gamma", "epsilon", "norm")])
def test_cancelling_neuron(spec, rule, params):
    """z == 0 exactly from cancelling non-zero terms (1 * 1 + 1 * -1): LRP-0 and gamma drop the neuron (no
    relevance at all); epsilon / norm divide by +eps, so the terms are large but finite and sum to 0."""
    W = np.array([[1.0, 0.5], [-1.0, 0.25]], np.float32)  # neuron 0: x0 - x1
    head = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    net = nn.Network((2,), [nn.Dense(W, None, "gemm"), nn.Act("Sigmoid"), nn.Dense(head, None, "gemm")])
    x = np.array([[1.0, 1.0], [2.0, 2.0]], np.float32)
    got, expected = _relevance(net, x, 0, spec, rule, params)
    assert np.all(np.isfinite(got))
    if rule in ("zero", "gamma"):
        assert np.all(got == 0) and np.all(expected == 0)
    else:
        assert np.abs(got).max() > 10  # +-R / eps, R about 1
        np.testing.assert_allclose(got.sum(1), 0.0, atol=1e-6 * np.abs(got).max())
    np.testing.assert_allclose(got, expected, rtol=0, atol=RTOL * np.abs(expected).max())
