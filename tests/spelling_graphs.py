"""ONNX spellings of one computation, as exporters write them, for test_spellings.py.

Every spelling is a function `(g, x, ...) -> name` that adds its nodes and constants to a GraphBuilder `g` and
returns the name of its output tensor. The networks around them (`Classifier`) are small, with seeded float32
weights and non-zero biases: x -> first linear layer -> (the spelling under test) -> head Gemm -> logits.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

from builders import make_model

N, CLASSES = 3, 4
TARGET = np.array([0, 2, 1], np.int64)


class GraphBuilder:
    """Collects nodes and initializers; every node and constant gets a fresh name."""

    def __init__(self):
        self.nodes, self.weights, self.count = [], {}, 0

    def fresh(self, stem):
        self.count += 1
        return f"{stem}_{self.count}"

    def const(self, value, dtype=np.float32):
        name = self.fresh("const")
        self.weights[name] = np.asarray(value, dtype)
        return name

    def ints(self, value):
        return self.const(value, np.int64)

    def constant_node(self, value):
        """A float constant written as a Constant node (as torch.onnx does) instead of an initializer."""
        out = self.fresh("constant")
        tensor = numpy_helper.from_array(np.asarray(value, np.float32), out)
        self.nodes.append(helper.make_node("Constant", [], [out], name=out, value=tensor))
        return out

    def op(self, op_type, inputs, out=None, **attrs):
        name = self.fresh(op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [out or name], name=name, **attrs))
        return out or name

    def model(self, inputs, outputs, opset=17):
        return make_model(self.nodes, inputs, outputs, self.weights, opset=opset)


def float_info(name, dims):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, dims)


def dense_weights(rng, out, inp, scale):
    w = (rng.normal(size=(out, inp)) * scale / np.sqrt(inp)).astype(np.float32)
    return w, (0.3 * rng.normal(size=out)).astype(np.float32)


def conv_weights(rng, out, inp, scale, k=3):
    w = (rng.normal(size=(out, inp, k, k)) * scale / np.sqrt(inp * k * k)).astype(np.float32)
    return w, (0.3 * rng.normal(size=out)).astype(np.float32)


class Classifier:
    """Seeded weights and input of a small classifier; the tests write its middle part.

    kind "vector": x [N, 5] -> Gemm (w1 [6, 5], b1) -> h [N, 6];
    kind "image":  x [N, 2, 5, 5] -> Conv 3x3 pads 1 (w1 [4, 2, 3, 3], b1) -> h [N, 4, 5, 5].
    `head` adds Flatten (images) and the last Gemm (w2 [CLASSES, features], b2) writing "logits".
    Pre-activations have a spread of several units, so activations see negative, small and large values.
    """

    def __init__(self, kind, seed=0, x_shape=None, hidden=None):
        self.rng = rng = np.random.default_rng(seed)
        self.kind = kind
        self.x_shape = x_shape or ((5,) if kind == "vector" else (2, 5, 5))
        self.hidden = hidden or (6 if kind == "vector" else 4)
        inp = self.x_shape[0]
        self.w1, self.b1 = (dense_weights if kind == "vector" else conv_weights)(rng, self.hidden, inp, 3.0)
        self.x = rng.normal(size=(N, *self.x_shape)).astype(np.float32)
        self.w2 = self.b2 = None

    @property
    def hidden_shape(self):
        return (self.hidden,) + tuple(self.x_shape[1:])

    def linear(self, g, x, w, b):
        """Gemm (transB) for a vector net, Conv 3x3 pads 1 for an image net; b None: no bias input."""
        bias = [] if b is None else [g.const(b)]
        if self.kind == "vector":
            return g.op("Gemm", [x, g.const(w), *bias], transB=1)
        return g.op("Conv", [x, g.const(w), *bias], pads=[1, 1, 1, 1])

    def first(self, g, x="x"):
        return self.linear(g, x, self.w1, self.b1)

    def head(self, g, y, shape, out="logits"):
        """Flatten (if y is not [N, F]) and the last Gemm, with weights made for y's per-sample `shape`."""
        features = int(np.prod(shape))
        if self.w2 is None:
            self.w2, self.b2 = dense_weights(self.rng, CLASSES, features, 2.0)
        if len(shape) > 1:
            y = g.op("Flatten", [y])
        return g.op("Gemm", [y, g.const(self.w2), g.const(self.b2)], out, transB=1)

    def x_info(self, batch="N"):
        return float_info("x", [batch, *self.x_shape])

    def model(self, g):
        return g.model([self.x_info()], [float_info("logits", ["N", CLASSES])])


# -- 1. elementwise activations -------------------------------------------------------------------------------

def silu_mul_sigmoid(g, x):
    return g.op("Mul", [x, g.op("Sigmoid", [x])])


def hardswish_op(g, x):
    return g.op("HardSwish", [x])


def hardswish_mul_hardsigmoid(g, x):
    return g.op("Mul", [x, g.op("HardSigmoid", [x], alpha=1 / 6, beta=0.5)])


def hardswish_clip_paddle(g, x):
    """paddle2onnx: Mul(x, Clip(Add(x, 3), 0, 6)) then Div(., 6), Clip bounds as initializer inputs."""
    clipped = g.op("Clip", [g.op("Add", [x, g.const(3.0)]), g.const(0.0), g.const(6.0)])
    return g.op("Div", [g.op("Mul", [x, clipped]), g.const(6.0)])


def hardswish_relu6_clip(g, x):
    """x * relu6(x + 3) / 6 with relu6 as Clip whose bounds are Constant nodes (torch.onnx, opset >= 11)."""
    relu6 = g.op("Clip", [g.op("Add", [g.constant_node(3.0), x]), g.constant_node(0.0), g.constant_node(6.0)])
    return g.op("Mul", [g.op("Div", [relu6, g.constant_node(6.0)]), x])


def mish(g, x):
    return g.op("Mul", [x, g.op("Tanh", [g.op("Softplus", [x])])])


def gelu_erf(g, x):
    """torch.onnx's exact GELU: Div(x, sqrt 2) -> Erf -> Add(1) -> Mul(x, .) -> Mul(0.5)."""
    erf = g.op("Erf", [g.op("Div", [x, g.const(1.4142135)])])
    return g.op("Mul", [g.op("Mul", [x, g.op("Add", [erf, g.const(1.0)])]), g.const(0.5)])


def gelu_tanh(g, x):
    """0.5 * x * (1 + Tanh(0.7978845608 * (x + 0.044715 * Pow(x, 3))))."""
    cube = g.op("Pow", [x, g.const(3.0)])
    inner = g.op("Mul", [g.const(0.7978845608), g.op("Add", [x, g.op("Mul", [g.const(0.044715), cube])])])
    one_plus = g.op("Add", [g.const(1.0), g.op("Tanh", [inner])])
    return g.op("Mul", [g.op("Mul", [g.const(0.5), x]), one_plus])


def unary(op_type, **attrs):
    def spelling(g, x):
        return g.op(op_type, [x], **attrs)
    spelling.__name__ = op_type.lower()
    return spelling


# -- 2. gates: bounded squashing of a branch computed from the signal --------------------------------------------

def gate_sigmoid(g, z):
    return g.op("Sigmoid", [z])


def gate_hardsigmoid(g, z):
    return g.op("HardSigmoid", [z])  # ONNX defaults alpha 0.2, beta 0.5 (Keras' hard_sigmoid)


def gate_clip_div(g, z):
    """Clip(Add(z, 3), 0, 6) / 6 with initializer bounds (paddle2onnx's hardsigmoid)."""
    return g.op("Div", [g.op("Clip", [g.op("Add", [z, g.const(3.0)]), g.const(0.0), g.const(6.0)]), g.const(6.0)])


def gate_relu6_div(g, z):
    """Div(relu6(z + 3), 6), relu6 as torch.onnx writes it: Clip with Constant-node bounds."""
    relu6 = g.op("Clip", [g.op("Add", [g.constant_node(3.0), z]), g.constant_node(0.0), g.constant_node(6.0)])
    return g.op("Div", [relu6, g.constant_node(6.0)])


def se_conv1x1(g, s, k1, kb1, k2, kb2, gate):
    """torchvision's SqueezeExcitation: ReduceMean -> Conv 1x1 -> Relu -> Conv 1x1 -> gate; scale * input."""
    squeezed = g.op("ReduceMean", [s], axes=[2, 3], keepdims=1)
    hidden = g.op("Relu", [g.op("Conv", [squeezed, g.const(k1[:, :, None, None]), g.const(kb1)])])
    z = g.op("Conv", [hidden, g.const(k2[:, :, None, None]), g.const(kb2)])
    return g.op("Mul", [gate(g, z), s])


def se_gap_gemm(g, s, k1, kb1, k2, kb2, gate):
    """Keras-style: GlobalAveragePool -> Flatten -> Gemm -> Relu -> Gemm -> Unsqueeze to [N, C, 1, 1] -> gate;
    Mul(input, scale)."""
    squeezed = g.op("Flatten", [g.op("GlobalAveragePool", [s])])
    hidden = g.op("Relu", [g.op("Gemm", [squeezed, g.const(k1), g.const(kb1)], transB=1)])
    z = g.op("Unsqueeze", [g.op("Gemm", [hidden, g.const(k2), g.const(kb2)], transB=1), g.ints([2, 3])])
    return g.op("Mul", [s, gate(g, z)])


def se_dense(g, s, k1, kb1, k2, kb2, gate):
    """A dense gate on [N, F] features: Gemm -> Relu -> Gemm -> gate; Mul(input, scale)."""
    hidden = g.op("Relu", [g.op("Gemm", [s, g.const(k1), g.const(kb1)], transB=1)])
    return g.op("Mul", [s, gate(g, g.op("Gemm", [hidden, g.const(k2), g.const(kb2)], transB=1))])


# -- 3. output tails after a Softmax: none of them mixes classes ---------------------------------------------------

def tail_identity(g, p):
    return g.op("Identity", [p])


def tail_reshape(g, p):
    return g.op("Reshape", [p, g.ints([-1, CLASSES])])


def tail_flatten(g, p):
    return g.op("Flatten", [p], axis=1)


def tail_unsqueeze_squeeze(g, p):
    return g.op("Squeeze", [g.op("Unsqueeze", [p, g.ints([1])]), g.ints([1])])


def tail_cast(g, p):
    return g.op("Cast", [p], to=TensorProto.FLOAT)


def tail_mul(g, p):
    return g.op("Mul", [p, g.const(2.5)])


def tail_div(g, p):
    return g.op("Div", [p, g.const(4.0)])


def tail_matmul(g, p):
    """Mixes classes: every output is a weighted sum of all probabilities."""
    mix = np.full((CLASSES, CLASSES), 0.1, np.float32) + np.eye(CLASSES, dtype=np.float32)
    return g.op("MatMul", [p, g.const(mix)])


def tail_reduce_sum(g, p):
    return g.op("ReduceSum", [p, g.ints([1])], keepdims=1)


# -- 4./5. per-channel affines y = s * x + t, s and t per channel (`shape`: [C, 1, 1] or [F]) ------------------------

def affine_mul_add(g, x, s, t, shape):
    return g.op("Add", [g.op("Mul", [x, g.const(s.reshape(shape))]), g.const(t.reshape(shape))])


def affine_mul_sub(g, x, s, t, shape):
    return g.op("Sub", [g.op("Mul", [x, g.const(s.reshape(shape))]), g.const(-t.reshape(shape))])


def affine_div_sub(g, x, s, t, shape):
    return g.op("Sub", [g.op("Div", [x, g.const(1 / s.reshape(shape))]), g.const(-t.reshape(shape))])


def affine_sub_div(g, x, s, t, shape):
    """(x - mean) / std with mean = -t / s, std = 1 / s."""
    return g.op("Div", [g.op("Sub", [x, g.const(-(t / s).reshape(shape))]), g.const(1 / s.reshape(shape))])


def affine_mul(g, x, s, t, shape):
    assert not t.any(), "a pure scale has t == 0"
    return g.op("Mul", [x, g.const(s.reshape(shape))])


def affine_div(g, x, s, t, shape):
    assert not t.any(), "a pure scale has t == 0"
    return g.op("Div", [x, g.const(1 / s.reshape(shape))])


BN_EPSILON = 1e-5


def batchnorm_params(s, t):
    """gamma, beta, mean, var of a BatchNormalization with scale s and shift t (arbitrary non-trivial stats)."""
    c = np.arange(len(s))
    var = 0.5 + c / len(s)
    mean = 0.4 * np.cos(c + 1.0)
    gamma = s * np.sqrt(var + BN_EPSILON)
    return gamma, t + mean * s, mean, var


def affine_batchnorm(g, x, s, t, shape):
    params = [g.const(p) for p in batchnorm_params(s, t)]
    return g.op("BatchNormalization", [x, *params], epsilon=BN_EPSILON)
