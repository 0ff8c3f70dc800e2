"""One meaning for every spelling an exporter may write (graphs in spelling_graphs.py):

1. elementwise activations (SiLU, HardSwish, Mish, GELU, single unary ops), however decomposed, pass relevance;
2. a gate (bounded squashing of a branch computed from the signal) gives the signal all relevance;
3. a Softmax/LogSoftmax followed only by class-preserving ops up to the output is cut (the logits are explained);
   one followed by a class-mixing op is refused;
4. a per-channel affine right after a linear layer folds into it;
5. a standalone per-channel affine is a diagonal layer with the composite's epsilon (a pure scale passes, an
   affine on the model input passes);
6. dynamic non-batch input dims need `input_shapes` / `--input-shape`; a batch written as -1 is fine;
7. a graph output without shape or type, and a graph without value_info, compile the same.

Each graph is compiled with the `epsilon` composite and the one-hot seed and its relevance compared, to 1e-5 of
max|reference|, with a float64 numpy reference written here from the rules (no onnx_lrp code). The numpy forward
is checked against onnxruntime's forward of the original model before compiling, and the compiled model must
reproduce every output of the original.
"""
import math
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest

import onnx_lrp
import spelling_graphs as sg
from conftest import run
from numpy_lrp import conv_matrix
from spelling_graphs import CLASSES, TARGET, Classifier, GraphBuilder

EPS = 1e-6  # the epsilon composite's default epsilon
NORM_STABILIZER = 1e-6  # the Norm rule of GlobalAveragePool
EPSILONS = [pytest.param(EPS, id="eps1e-6"), pytest.param(0.1, id="eps0.1")]


# -- numpy reference ------------------------------------------------------------------------------------------------

def stab(z, eps=EPS):
    """z + eps * sign(z), sign(0) = +1."""
    return z + eps * np.where(z >= 0, 1.0, -1.0)


def one_hot():
    return np.eye(CLASSES)[TARGET]


class Linear:
    """A Gemm (w [out, in], transB) or a Conv 3x3 pads 1 (w [O, C, 3, 3]) as z = a @ M.T + bias per flattened
    sample, in float64."""

    def __init__(self, w, b, in_shape=None):
        w = np.asarray(w, np.float64)
        b = np.zeros(len(w)) if b is None else np.asarray(b, np.float64)
        if w.ndim == 2:
            self.matrix, self.bias, self.out_shape = w, b, (len(w),)
        else:
            self.matrix, self.out_shape = conv_matrix(w, in_shape, (1, 1), (1, 1, 1, 1), (1, 1), 1)
            self.bias = np.repeat(b, int(np.prod(self.out_shape[1:])))

    def __call__(self, a):
        return (a.reshape(len(a), -1) @ self.matrix.T + self.bias).reshape((len(a),) + self.out_shape)

    def epsilon(self, a, R, eps=EPS):
        """Epsilon rule: R_a = a * ((R / s(z)) @ M); the bias takes its share."""
        return a * ((R / stab(self(a), eps)).reshape(len(a), -1) @ self.matrix).reshape(a.shape)


def first_layer(net):
    return Linear(net.w1, net.b1, net.x_shape)


def head_layer(net):
    return Linear(net.w2, net.b2)


def diagonal_epsilon(a, s, t, R, eps):
    """A standalone y = s * a + t (per channel) is a diagonal linear layer: R_a = s * a / s(y) * R_y; a pure
    scale (t == 0) passes relevance."""
    if not np.any(t):
        return R
    return s * a / stab(s * a + t, eps) * R


def passes(h, R):
    return R


def sandwich_reference(net, middle, rule=passes, eps=EPS):
    """x -> first layer -> h -> middle(h) = y -> head -> logits, with `rule(h, R_y)` the relevance at h.
    Returns (logits, R_x) in float64."""
    first, head = first_layer(net), head_layer(net)
    x = net.x.astype(np.float64)
    h = first(x)
    y = middle(h)
    return head(y), first.epsilon(x, rule(h, head.epsilon(y, one_hot(), eps)), eps)


def relu(z):
    return np.maximum(z, 0.0)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def hard_sigmoid(z, alpha=1 / 6, beta=0.5):
    return np.clip(alpha * z + beta, 0.0, 1.0)


def hardswish(z):
    return z * hard_sigmoid(z)


def softplus(z):
    return np.logaddexp(0.0, z)


erf = np.vectorize(math.erf)


def gelu_erf(z):
    return 0.5 * z * (1 + erf(z / math.sqrt(2)))


def gelu_tanh(z):
    return 0.5 * z * (1 + np.tanh(0.7978845608 * (z + 0.044715 * z ** 3)))


# -- running --------------------------------------------------------------------------------------------------------

def assert_close(ours, expected, rel=1e-5):
    assert ours.shape == expected.shape and np.abs(expected).max() > 0
    err = np.abs(ours - expected).max()
    assert err <= rel * np.abs(expected).max(), f"max error {err:.3g}, max |expected| {np.abs(expected).max():.3g}"


def explain(model, x, logits=None, epsilon=EPS, **options):
    """Compile with the epsilon composite and the one-hot seed and run on x and TARGET. `logits`: the numpy
    forward, first checked against onnxruntime's forward of `model`. The compiled model must reproduce every
    output of the original. Returns (relevance_x, compiled model)."""
    original = run(model, {"x": x})
    if logits is not None:
        assert_close(original["logits"], logits)
    compiled = onnx_lrp.compile(model, "epsilon", seed="one-hot", epsilon=epsilon, **options)
    out = run(compiled, {"x": x, "target": TARGET})
    for name, value in original.items():
        np.testing.assert_allclose(out[name], value, rtol=1e-5, atol=1e-6)
    return out["relevance_x"], compiled


def scale_shift(channels, pure=False):
    """Per-channel s (both signs, no zero) and t (non-zero; all zero for a pure scale)."""
    rng = np.random.default_rng(7)
    s = rng.uniform(0.5, 2.0, channels) * np.where(np.arange(channels) % 3 == 1, -1.0, 1.0)
    t = np.zeros(channels) if pure else 0.5 * rng.normal(size=channels)
    return s.astype(np.float32).astype(np.float64), t.astype(np.float32).astype(np.float64)


def relu_model(net, batch="N"):
    """x -> first layer -> Relu -> head."""
    g = GraphBuilder()
    net.head(g, g.op("Relu", [net.first(g)]), net.hidden_shape)
    return g.model([net.x_info(batch)], [sg.float_info("logits", ["N", CLASSES])])


# -- 1. activations -------------------------------------------------------------------------------------------------

HARDSWISH_DECOMPOSED = [
    pytest.param(sg.hardswish_mul_hardsigmoid, id="hardswish-mul-hardsigmoid"),
    pytest.param(sg.hardswish_clip_paddle, id="hardswish-clip-paddle"),
    pytest.param(sg.hardswish_relu6_clip, id="hardswish-relu6-clip"),
]

ACTIVATIONS = [
    pytest.param(sg.silu_mul_sigmoid, lambda z: z * sigmoid(z), id="silu-mul-sigmoid"),
    pytest.param(sg.hardswish_op, hardswish, id="hardswish-op"),
    *[pytest.param(p.values[0], hardswish, id=p.id) for p in HARDSWISH_DECOMPOSED],
    pytest.param(sg.mish, lambda z: z * np.tanh(softplus(z)), id="mish"),
    pytest.param(sg.gelu_erf, gelu_erf, id="gelu-erf-torch"),
    pytest.param(sg.gelu_tanh, gelu_tanh, id="gelu-tanh-pow"),
    pytest.param(sg.unary("Tanh"), np.tanh, id="tanh"),
    pytest.param(sg.unary("Elu"), lambda z: np.where(z > 0, z, np.expm1(z)), id="elu"),
    pytest.param(sg.unary("LeakyRelu", alpha=0.1), lambda z: np.where(z > 0, z, 0.1 * z), id="leakyrelu"),
    pytest.param(sg.unary("Softplus"), softplus, id="softplus"),
    pytest.param(sg.unary("Erf"), erf, id="erf"),
    pytest.param(sg.unary("Sigmoid"), sigmoid, id="sigmoid"),
]


def activation_model(spelling):
    """x -> Gemm -> activation spelling -> Gemm -> logits (the same seeded weights for every spelling)."""
    net = Classifier("vector")
    g = GraphBuilder()
    net.head(g, spelling(g, net.first(g)), net.hidden_shape)
    return net, net.model(g)


@pytest.mark.parametrize("spelling, function", ACTIVATIONS)
def test_activation_passes_relevance(spelling, function):
    net, model = activation_model(spelling)
    logits, expected = sandwich_reference(net, function)
    h = first_layer(net)(net.x.astype(np.float64))
    assert h.min() < -3 and h.max() > 3  # every piece of HardSwish and the saturation of the others is used
    relevance, _ = explain(model, net.x, logits)
    assert_close(relevance, expected)


@pytest.mark.parametrize("spelling", HARDSWISH_DECOMPOSED)
def test_hardswish_spellings_equal_the_op(spelling):
    net, model = activation_model(sg.hardswish_op)
    reference, _ = explain(model, net.x)
    relevance, _ = explain(activation_model(spelling)[1], net.x)
    assert_close(relevance, reference)


# -- 2. gates -------------------------------------------------------------------------------------------------------

GATES = [
    pytest.param(sg.gate_sigmoid, sigmoid, id="sigmoid"),
    pytest.param(sg.gate_hardsigmoid, lambda z: hard_sigmoid(z, 0.2, 0.5), id="hardsigmoid"),
    pytest.param(sg.gate_clip_div, hard_sigmoid, id="clip-div"),
    pytest.param(sg.gate_relu6_div, hard_sigmoid, id="relu6-clip-div"),
]

SE_BRANCHES = [
    pytest.param(sg.se_conv1x1, "image", id="reducemean-conv1x1"),
    pytest.param(sg.se_gap_gemm, "image", id="gap-gemm-unsqueeze"),
    pytest.param(sg.se_dense, "vector", id="dense"),
]


@pytest.mark.parametrize("gate, gate_function", GATES)
@pytest.mark.parametrize("branch, kind", SE_BRANCHES)
def test_gate_gives_the_signal_all_relevance(branch, kind, gate, gate_function):
    """y = s * gate(excitation(squeeze(s))), s = Relu(first layer): R_s = R_y, nothing through the branch."""
    net = Classifier(kind)
    channels = net.hidden
    k1, kb1 = sg.dense_weights(net.rng, channels, channels, 3.0)
    k2, kb2 = sg.dense_weights(net.rng, channels, channels, 3.0)
    kb2 -= 2  # the gate's input spans its linear part and its saturation
    g = GraphBuilder()
    net.head(g, branch(g, g.op("Relu", [net.first(g)]), k1, kb1, k2, kb2, gate), net.hidden_shape)
    model = net.model(g)

    def gate_values(h):
        s = relu(h)
        squeezed = s if s.ndim == 2 else s.mean(axis=(2, 3))
        z = relu(squeezed @ k1.T.astype(np.float64) + kb1) @ k2.T.astype(np.float64) + kb2
        return gate_function(z).reshape(z.shape + (1,) * (s.ndim - 2))

    logits, expected = sandwich_reference(net, lambda h: relu(h) * gate_values(h))
    assert np.ptp(gate_values(first_layer(net)(net.x.astype(np.float64)))) > 0.5  # channels weighed differently
    relevance, _ = explain(model, net.x, logits)
    assert_close(relevance, expected)


# -- 3. output tails ------------------------------------------------------------------------------------------------

SOFTMAXES = ["Softmax", "LogSoftmax"]

CLASS_PRESERVING_TAILS = [
    pytest.param(sg.tail_identity, id="identity"),
    pytest.param(sg.tail_reshape, id="reshape"),
    pytest.param(sg.tail_flatten, id="flatten"),
    pytest.param(sg.tail_unsqueeze_squeeze, id="unsqueeze-squeeze"),
    pytest.param(sg.tail_cast, id="cast-float"),
    pytest.param(sg.tail_mul, id="mul-positive"),
    pytest.param(sg.tail_div, id="div-positive"),
]

CLASS_MIXING_TAILS = [
    pytest.param(sg.tail_matmul, CLASSES, id="matmul-CxC"),
    pytest.param(sg.tail_reduce_sum, 1, id="reducesum"),
]


def softmax_tail_model(softmax, tail, out_classes=CLASSES):
    """x -> Gemm -> Relu -> Gemm -> logits -> softmax -> tail -> graph output."""
    net = Classifier("vector")
    g = GraphBuilder()
    logits = net.head(g, g.op("Relu", [net.first(g)]), net.hidden_shape)
    out = tail(g, g.op(softmax, [logits], axis=1))
    return g.model([net.x_info()], [sg.float_info(out, ["N", out_classes])])


@pytest.mark.parametrize("tail", CLASS_PRESERVING_TAILS)
@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_softmax_tail_is_cut(softmax, tail):
    net = Classifier("vector")
    logits_model = relu_model(net)
    logits, expected = sandwich_reference(net, relu)
    logits_relevance, _ = explain(logits_model, net.x, logits)
    assert_close(logits_relevance, expected)
    notes = []
    relevance, _ = explain(softmax_tail_model(softmax, tail), net.x, notes=notes)
    assert_close(relevance, logits_relevance)
    assert any(softmax in note and "left out" in note for note in notes), notes


@pytest.mark.parametrize("tail, out_classes", CLASS_MIXING_TAILS)
@pytest.mark.parametrize("softmax", SOFTMAXES)
def test_softmax_then_class_mixing_is_refused(softmax, tail, out_classes):
    model = softmax_tail_model(softmax, tail, out_classes)
    run(model, {"x": Classifier("vector").x})  # a valid model
    with pytest.raises(onnx_lrp.OnnxLrpError):
        onnx_lrp.compile(model, "epsilon", seed="one-hot")


# -- 4. affine after a linear layer: folded -------------------------------------------------------------------------

AFFINES_AFTER_LINEAR = [
    pytest.param("image", "conv", sg.affine_mul_add, id="conv-mul-add"),
    pytest.param("image", "conv-no-bias", sg.affine_mul_add, id="conv-no-bias-mul-add"),
    pytest.param("image", "conv", sg.affine_div_sub, id="conv-div-sub"),
    pytest.param("image", "conv", sg.affine_batchnorm, id="conv-batchnorm"),
    pytest.param("vector", "gemm", sg.affine_mul_add, id="gemm-mul-add"),
    pytest.param("vector", "gemm", sg.affine_mul, id="gemm-layer-scale"),
    pytest.param("vector", "matmul-add", sg.affine_mul_sub, id="matmul-add-mul-sub"),
]


def linear_affine_model(kind, form, affine):
    """x -> first layer (Conv, Conv without bias, Gemm, or MatMul + Add) -> affine -> Relu -> head.
    Returns (net, s, t, model); net.b1 is zero for a layer without bias."""
    net = Classifier(kind)
    s, t = scale_shift(net.hidden, pure=affine is sg.affine_mul)
    g = GraphBuilder()
    if form == "matmul-add":
        h = g.op("Add", [g.op("MatMul", ["x", g.const(net.w1.T)]), g.const(net.b1)])
    elif form == "conv-no-bias":
        h = net.linear(g, "x", net.w1, None)
        net.b1 = np.zeros_like(net.b1)
    else:
        h = net.linear(g, "x", net.w1, net.b1)
    shape = (net.hidden,) + (1,) * (len(net.x_shape) - 1)
    net.head(g, g.op("Relu", [affine(g, h, s, t, shape)]), net.hidden_shape)
    return net, s, t, net.model(g)


@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("kind, form, affine", AFFINES_AFTER_LINEAR)
def test_affine_after_linear_layer_is_folded(kind, form, affine, eps):
    """Equal to the hand-folded model (w1 * s per output channel, b1 * s + t): with epsilon 0.1 this differs
    from a diagonal epsilon layer after the linear one."""
    net, s, t, model = linear_affine_model(kind, form, affine)
    folded = Classifier(kind)
    per_channel = s.reshape((-1,) + (1,) * (net.w1.ndim - 1))
    folded.w1 = (net.w1 * per_channel).astype(np.float32)
    folded.b1 = (net.b1 * s + t).astype(np.float32)
    folded.w2, folded.b2 = net.w2, net.b2
    logits, expected = sandwich_reference(folded, relu, eps=eps)
    hand_folded, _ = explain(relu_model(folded), net.x, logits, epsilon=eps)
    assert_close(hand_folded, expected)
    relevance, _ = explain(model, net.x, logits, epsilon=eps)
    assert_close(relevance, hand_folded)


def test_batchnorm_after_conv_equals_mul_add():
    net, _, _, batchnorm = linear_affine_model("image", "conv", sg.affine_batchnorm)
    mul_add = linear_affine_model("image", "conv", sg.affine_mul_add)[3]
    assert_close(explain(batchnorm, net.x)[0], explain(mul_add, net.x)[0])


# -- 5. standalone affine: a diagonal layer with the composite's epsilon ------------------------------------------

STANDALONE_AFFINES = [
    pytest.param(sg.affine_mul_add, id="mul-add"),
    pytest.param(sg.affine_batchnorm, id="batchnorm"),
    pytest.param(sg.affine_sub_div, id="sub-div"),
    pytest.param(sg.affine_mul, id="pure-scale-mul"),
    pytest.param(sg.affine_div, id="pure-scale-div"),
]


def after_concat(affine, eps):
    """x -> Conv a, Conv b (3 channels each) -> Concat -> affine -> Relu -> head.
    Returns (model, x, logits, R_x)."""
    net = Classifier("image", hidden=3)
    wb, bb = sg.conv_weights(net.rng, 3, 2, 3.0)
    s, t = scale_shift(6, pure=affine in (sg.affine_mul, sg.affine_div))
    g = GraphBuilder()
    cat = g.op("Concat", [net.first(g), net.linear(g, "x", wb, bb)], axis=1)
    net.head(g, g.op("Relu", [affine(g, cat, s, t, (6, 1, 1))]), (6, 5, 5))

    conv_a, conv_b, head = first_layer(net), Linear(wb, bb, net.x_shape), head_layer(net)
    x, s, t = net.x.astype(np.float64), s[:, None, None], t[:, None, None]
    cat = np.concatenate([conv_a(x), conv_b(x)], axis=1)
    y = relu(s * cat + t)
    r_cat = diagonal_epsilon(cat, s, t, head.epsilon(y, one_hot(), eps), eps)  # the Relu passes
    r_x = conv_a.epsilon(x, r_cat[:, :3], eps) + conv_b.epsilon(x, r_cat[:, 3:], eps)
    return net.model(g), net.x, head(y), r_x


def before_conv(affine, eps):
    """x -> Conv -> Relu -> affine -> Conv -> Relu -> head. Returns (model, x, logits, R_x)."""
    net = Classifier("image")
    w3, b3 = sg.conv_weights(net.rng, 4, 4, 3.0)
    s, t = scale_shift(4, pure=affine in (sg.affine_mul, sg.affine_div))
    g = GraphBuilder()
    y = affine(g, g.op("Relu", [net.first(g)]), s, t, (4, 1, 1))
    net.head(g, g.op("Relu", [net.linear(g, y, w3, b3)]), net.hidden_shape)

    first, conv, head = first_layer(net), Linear(w3, b3, net.hidden_shape), head_layer(net)
    x, s, t = net.x.astype(np.float64), s[:, None, None], t[:, None, None]
    r1 = relu(first(x))
    y = s * r1 + t
    r2 = relu(conv(y))
    r_y = conv.epsilon(y, head.epsilon(r2, one_hot(), eps), eps)
    return net.model(g), net.x, head(r2), first.epsilon(x, diagonal_epsilon(r1, s, t, r_y, eps), eps)


PLACEMENTS = [pytest.param(after_concat, id="after-concat"), pytest.param(before_conv, id="relu-affine-conv")]


@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("affine", STANDALONE_AFFINES)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_standalone_affine_is_a_diagonal_epsilon_layer(placement, affine, eps):
    model, x, logits, expected = placement(affine, eps)
    relevance, _ = explain(model, x, logits, epsilon=eps)
    assert_close(relevance, expected)


@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("placement", PLACEMENTS)
def test_standalone_batchnorm_equals_mul_add(placement, eps):
    batchnorm, x, _, _ = placement(sg.affine_batchnorm, eps)
    mul_add = placement(sg.affine_mul_add, eps)[0]
    assert_close(explain(batchnorm, x, epsilon=eps)[0], explain(mul_add, x, epsilon=eps)[0])


@pytest.mark.parametrize("eps", EPSILONS)
@pytest.mark.parametrize("affine", [pytest.param(sg.affine_sub_div, id="sub-mean-div-std"),
                                    pytest.param(sg.affine_mul_add, id="mul-add")])
def test_input_normalization_passes_relevance_to_the_raw_input(affine, eps):
    """x -> (x - mean) / std -> Conv -> Relu -> head: R_x = R at the normalized input."""
    net = Classifier("image")
    std, mean = np.array([0.229, 0.224]), np.array([0.485, 0.456])
    s, t = (1 / std).astype(np.float32).astype(np.float64), (-mean / std).astype(np.float32).astype(np.float64)
    g = GraphBuilder()
    net.head(g, g.op("Relu", [net.first(g, affine(g, "x", s, t, (2, 1, 1)))]), net.hidden_shape)
    model = net.model(g)

    first, head = first_layer(net), head_layer(net)
    normalized = s[:, None, None] * net.x.astype(np.float64) + t[:, None, None]
    r = relu(first(normalized))
    expected = first.epsilon(normalized, head.epsilon(r, one_hot(), eps), eps)
    relevance, _ = explain(model, net.x, head(r), epsilon=eps)
    assert_close(relevance, expected)


# -- 6. input shapes ------------------------------------------------------------------------------------------------

def dynamic_image_model():
    """x [N, 3, height, width] -> Conv 3x3 pads 1 -> Relu -> GlobalAveragePool -> Flatten -> Gemm.
    Returns (model, x [3, 3, 8, 8], logits, R_x)."""
    net = Classifier("image", x_shape=(3, 8, 8))
    g = GraphBuilder()
    net.head(g, g.op("GlobalAveragePool", [g.op("Relu", [net.first(g)])]), (net.hidden, 1, 1))
    model = g.model([sg.float_info("x", ["N", 3, "height", "width"])], [sg.float_info("logits", ["N", CLASSES])])

    first, head = first_layer(net), head_layer(net)
    x = net.x.astype(np.float64)
    r = relu(first(x))
    pooled = r.mean(axis=(2, 3))
    r_pooled = head.epsilon(pooled, one_hot())
    r_r = r * (r_pooled / stab(pooled, NORM_STABILIZER))[:, :, None, None] / (8 * 8)  # Norm
    return model, net.x, head(pooled), first.epsilon(x, r_r)


def test_dynamic_input_dims_need_input_shape():
    model, x, _, _ = dynamic_image_model()
    run(model, {"x": x})  # a valid model
    with pytest.raises(onnx_lrp.OnnxLrpError) as error:
        onnx_lrp.compile(model, "epsilon", seed="one-hot")
    message = str(error.value)
    assert "'x'" in message or '"x"' in message or " x " in message, message
    assert all(word in message for word in ("height", "width", "--input-shape")), message


@pytest.mark.parametrize("batch", ["N", "batch"])
def test_input_shapes_fix_the_dims_and_keep_a_symbolic_batch(batch):
    model, x, logits, expected = dynamic_image_model()
    relevance, compiled = explain(model, x, logits, input_shapes={"x": [batch, 3, 8, 8]})
    assert_close(relevance, expected)
    dims = next(i for i in compiled.graph.input if i.name == "x").type.tensor_type.shape.dim
    assert not dims[0].HasField("dim_value") and dims[0].dim_param
    assert [d.dim_value for d in dims[1:]] == [3, 8, 8]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "onnx_lrp.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_input_shape(tmp_path):
    model, x, _, expected = dynamic_image_model()
    onnx.save(model, tmp_path / "m.onnx")
    result = cli("compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out.onnx"), "--composite", "epsilon",
                 "--seed", "one-hot", "--input-shape", "x=N,3,8,8")
    assert result.returncode == 0, result.stderr
    relevance = run(onnx.load(tmp_path / "out.onnx"), {"x": x, "target": TARGET})["relevance_x"]
    assert_close(relevance, expected)


@pytest.mark.parametrize("args", [
    pytest.param([], id="missing"),
    pytest.param(["--input-shape", "x=3,a,"], id="malformed"),
    pytest.param(["--input-shape", "y=N,3,8,8"], id="unknown-input"),
])
def test_cli_input_shape_errors_are_one_line(tmp_path, args):
    model = dynamic_image_model()[0]
    onnx.save(model, tmp_path / "m.onnx")
    result = cli("compile", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out.onnx"), *args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onnx-lrp: error:"), result.stderr
    assert re.search(r"input[- ]shape", lines[0]), lines[0]
    assert not (tmp_path / "out.onnx").exists()


def test_batch_written_as_minus_one():
    net = Classifier("vector")
    model = relu_model(net, batch=-1)
    logits, expected = sandwich_reference(net, relu)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == -1
    relevance, _ = explain(model, net.x, logits)
    assert_close(relevance, expected)


# -- 7. output and value info ---------------------------------------------------------------------------------------

def output_without_shape(model):
    model.graph.output[0].type.tensor_type.ClearField("shape")
    return model


def output_without_type(model):
    model.graph.output[0].ClearField("type")
    return model


def no_value_info(model):
    del model.graph.value_info[:]
    return model


@pytest.mark.parametrize("strip", [
    pytest.param(output_without_shape, id="output-without-shape"),
    pytest.param(output_without_type, id="output-without-type"),
    pytest.param(no_value_info, id="no-value-info"),
])
def test_missing_output_or_value_info_compiles_the_same(strip):
    net = Classifier("image")
    model = onnx.shape_inference.infer_shapes(relu_model(net))  # full output info and intermediate value_info
    logits, expected = sandwich_reference(net, relu)
    assert len(model.graph.value_info) > 0
    full, _ = explain(model, net.x, logits)
    assert_close(full, expected)
    relevance, _ = explain(strip(model), net.x, logits)
    assert_close(relevance, full)
