"""Float64 numpy reference of LRP for a whole small network, built on the single-layer reference numpy_lrp.py.

A network is a list of nodes applied in order to one sample batch; a `Residual` node holds a body (a list of
nodes) and computes x + body(x). Nothing here shares code with onnx_lrp: the linear layers use numpy_lrp's
rules (`numpy_lrp.lrp`) on numpy_lrp's `Layer`, and the other nodes follow /work/shared/lrp-rules.md:

* activations pass relevance through unchanged (Zennit's Pass for activation modules);
* MaxPool routes each output's relevance to the argmax of its window (ties: the first element in row-major
  order), overlapping windows accumulate;
* AveragePool / GlobalAveragePool use Norm: R_i = a_i * sum_j R_j / (k_j * s(z_j)), k_j the window's divisor;
* a residual Add uses Norm: R_k = x_k * R / s(x_1 + x_2);
* Flatten / Reshape move relevance back.

Per-sample shapes are (C, H, W) for images and (F,) for feature vectors; arrays carry a leading batch dim.
For comparing with a float32 evaluation of the same network: `relevance(..., pool_inputs=...)` decides MaxPool
winners on the pool inputs as that evaluation computed them (with this module's own winner rule), `perturbed`
gives a slightly perturbed copy (how far the result moves measures its conditioning), and `ambiguities` lists
denominators whose sign is rounding noise.
"""
from dataclasses import dataclass, field, replace

import numpy as np

import numpy_lrp as ref

NORM_EPS = 1e-6  # the stabilizer of the Norm rule for pooling and residual sums


# -- nodes --------------------------------------------------------------------------------------------------------

@dataclass
class Conv:
    W: np.ndarray  # [O, C/group, kh, kw]
    B: np.ndarray = None  # [O] or None
    strides: tuple = (1, 1)
    pads: tuple = (0, 0, 0, 0)  # ONNX order: begin pads, then end pads
    dilations: tuple = (1, 1)
    group: int = 1
    kind = "conv"


@dataclass
class Dense:
    W: np.ndarray  # [in, out]: f(x) = x @ W + B
    B: np.ndarray = None
    form: str = "gemm"  # how the ONNX model writes it: gemm, gemm_t (transB=1), matmul (+ Add for a bias)
    kind = "dense"


@dataclass
class Act:
    name: str  # Relu, LeakyRelu, Tanh, Sigmoid, Elu
    alpha: float = 0.01
    jitter: float = 0.0  # see perturbed()
    noise: object = None  # a numpy Generator for the jitter


@dataclass
class MaxPool:
    kernel: tuple
    strides: tuple
    pads: tuple


@dataclass
class AvgPool:
    kernel: tuple
    strides: tuple
    pads: tuple
    count_include_pad: int = 0


@dataclass
class GlobalAvgPool:
    pass


@dataclass
class Flatten:
    reshape: bool = False  # ONNX Reshape(x, [0, -1]) instead of Flatten


@dataclass
class Residual:
    body: list
    body_first: bool = False  # ONNX Add(body(x), x) instead of Add(x, body(x))


@dataclass
class Network:
    in_shape: tuple  # per sample
    nodes: list = field(default_factory=list)


# -- shapes -------------------------------------------------------------------------------------------------------

def window_out(size, kernel, stride, pad_begin, pad_end, dilation=1):
    return (size + pad_begin + pad_end - dilation * (kernel - 1) - 1) // stride + 1


def out_shape(node, shape):
    if isinstance(node, Conv):
        O, kernel = node.W.shape[0], node.W.shape[2:]
        return (O,) + tuple(window_out(shape[1 + i], kernel[i], node.strides[i], node.pads[i], node.pads[2 + i],
                                       node.dilations[i]) for i in range(2))
    if isinstance(node, Dense):
        return (node.W.shape[1],)
    if isinstance(node, (MaxPool, AvgPool)):
        return (shape[0],) + tuple(window_out(shape[1 + i], node.kernel[i], node.strides[i], node.pads[i],
                                              node.pads[2 + i]) for i in range(2))
    if isinstance(node, GlobalAvgPool):
        return (shape[0], 1, 1)
    if isinstance(node, Flatten):
        return (int(np.prod(shape)),)
    if isinstance(node, Residual):
        return shape
    return shape  # Act


def linear_layers(nodes):
    """Conv and Dense nodes in graph order (a residual body in place)."""
    found = []
    for node in nodes:
        if isinstance(node, Residual):
            found += linear_layers(node.body)
        elif isinstance(node, (Conv, Dense)):
            found.append(node)
    return found


# -- layers as numpy_lrp.Layer ------------------------------------------------------------------------------------

_TAP_INDEX = {}


def _conv_taps(weight_shape, in_shape, strides, pads, dilations, group):
    """numpy_lrp.conv_matrix applied to the weight 1, 2, 3, ...: entry (r, c) of M(W) is W.flat[taps[r, c] - 1]
    (0: no tap). Every matrix entry receives at most one tap (distinct taps read distinct inputs), so M(W) is a
    gather of W; this builds each layer's matrix with conv_matrix once instead of once per modified weight."""
    key = (tuple(weight_shape), tuple(in_shape), tuple(strides), tuple(pads), tuple(dilations), group)
    if key not in _TAP_INDEX:
        index = np.arange(1, int(np.prod(weight_shape)) + 1, dtype=np.float64).reshape(weight_shape)
        M, shape = ref.conv_matrix(index, in_shape, strides, pads, dilations, group)
        _TAP_INDEX[key] = (M.astype(np.int64), shape)
    return _TAP_INDEX[key]


def conv_layer(node, in_shape):
    taps, shape = _conv_taps(node.W.shape, in_shape, node.strides, node.pads, node.dilations, node.group)

    def matrix(w):
        flat = np.concatenate([[0.0], np.asarray(w, np.float64).ravel()])
        return flat[taps]
    return ref.Layer(matrix, in_shape, shape)


def pool_layer(node, in_shape):
    """AveragePool / GlobalAveragePool as a fixed linear layer M (rows: outputs, entries 1/k_j in the window)."""
    C, spatial = in_shape[0], in_shape[1:]
    if isinstance(node, GlobalAvgPool):
        kernel, strides, pads = tuple(spatial), (1, 1), (0, 0, 0, 0)
    else:
        kernel, strides, pads = node.kernel, node.strides, node.pads
    taps, shape = _conv_taps((C, 1) + tuple(kernel), in_shape, strides, pads, (1, 1), C)
    counts = (taps > 0).astype(np.float64)
    if isinstance(node, AvgPool) and node.count_include_pad:
        divisor = np.full(len(counts), float(np.prod(kernel)))
    else:
        divisor = counts.sum(1)  # the window's inputs that are not padding
    M = counts / divisor[:, None]
    return ref.Layer(lambda w: M, in_shape, shape)


def layer_of(node, in_shape):
    if isinstance(node, Conv):
        return conv_layer(node, in_shape)
    return ref.Layer.dense(np.asarray(node.W, np.float64))


# -- forward ------------------------------------------------------------------------------------------------------

def activation(node, x):
    y = _activation(node, x)
    if node.jitter:  # see perturbed()
        wave = node.noise.standard_normal(np.shape(x))
        y = y * (1 + node.jitter * wave)  # relative: keeps exact zeros
        if node.name == "Sigmoid":
            y = y + node.jitter * wave
        elif node.name == "Elu":
            y = y + np.where(x < 0, node.jitter * node.alpha * wave, 0.0)
    return y


def _activation(node, x):
    if node.name == "Relu":
        return np.maximum(x, 0.0)
    if node.name == "LeakyRelu":
        return np.where(x >= 0, x, node.alpha * x)
    if node.name == "Tanh":
        return np.tanh(x)
    if node.name == "Sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow warning for large |x|
    if node.name == "Elu":
        return np.where(x > 0, x, node.alpha * np.expm1(np.minimum(x, 0.0)))
    raise ValueError(node.name)


def maxpool_argmax(node, a):
    """Per output of a MaxPool, the flat input index (per sample and channel) of its winner: the first maximum
    of its window in row-major order; and the output itself."""
    n, C, H, W = a.shape
    kh, kw = node.kernel
    pt, pl, pb, pr = node.pads
    padded = np.full((n, C, H + pt + pb, W + pl + pr), -np.inf)
    padded[:, :, pt:pt + H, pl:pl + W] = a
    oh, ow = (window_out(H, kh, node.strides[0], pt, pb), window_out(W, kw, node.strides[1], pl, pr))
    out, winner = np.empty((n, C, oh, ow)), np.empty((n, C, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            r, c = i * node.strides[0], j * node.strides[1]
            window = padded[:, :, r:r + kh, c:c + kw].reshape(n, C, kh * kw)
            k = window.argmax(-1)  # the first maximum in row-major order
            out[:, :, i, j] = np.take_along_axis(window, k[..., None], -1)[..., 0]
            winner[:, :, i, j] = (r + k // kw - pt) * W + (c + k % kw - pl)
    return out, winner


def _forward(nodes, a, trace, pool_inputs):
    for node in nodes:
        trace.append((node, a))
        if isinstance(node, (Conv, Dense)):
            layer = layer_of(node, a.shape[1:])
            a = layer.f(a, node.W, node.B)
        elif isinstance(node, Act):
            a = activation(node, a)
        elif isinstance(node, MaxPool):
            decide = next(pool_inputs, None)
            out, winner = maxpool_argmax(node, a if decide is None else np.asarray(decide, np.float64))
            if decide is not None:  # the value of the chosen winner
                out = np.take_along_axis(a.reshape(a.shape[:2] + (-1,)), winner.reshape(winner.shape[:2] + (-1,)),
                                         -1).reshape(out.shape)
            trace[-1] = (node, (a, winner))
            a = out
        elif isinstance(node, (AvgPool, GlobalAvgPool)):
            a = pool_layer(node, a.shape[1:]).f(a, None)
        elif isinstance(node, Flatten):
            a = a.reshape(len(a), -1)
        elif isinstance(node, Residual):
            inner = []
            y = _forward(node.body, a, inner, pool_inputs)
            trace[-1] = (node, (a, y, inner))
            a = a + y
        else:
            raise TypeError(node)
    return a


def forward(net, x, pool_inputs=None):
    """Logits and the trace [(node, its input)] of a float64 forward pass. pool_inputs: the inputs of the MaxPools
    (in graph order) as another evaluation of the same network computed them, to take the winners from."""
    trace = []
    return _forward(net.nodes, np.asarray(x, np.float64), trace, iter(pool_inputs or [])), trace


# -- relevance ----------------------------------------------------------------------------------------------------

def _backward(trace, R, rules):
    """rules: an iterator over (rule name, params) for the linear layers, consumed in reverse graph order."""
    for node, a in reversed(trace):
        if isinstance(node, (Conv, Dense)):
            name, params = next(rules)
            R = ref.lrp(name, layer_of(node, a.shape[1:]), a, R, node.W, node.B, **params)
        elif isinstance(node, MaxPool):
            a, winner = a
            n, C = a.shape[:2]
            flat = np.zeros((n, C, int(np.prod(a.shape[2:]))))
            for s in range(n):
                for c in range(C):
                    np.add.at(flat[s, c], winner[s, c].ravel(), R[s, c].ravel())
            R = flat.reshape(a.shape)
        elif isinstance(node, (AvgPool, GlobalAvgPool)):
            R = ref.lrp("norm", pool_layer(node, a.shape[1:]), a, R, np.zeros(1), stabilizer=NORM_EPS)
        elif isinstance(node, Flatten):
            R = R.reshape(a.shape)
        elif isinstance(node, Residual):
            x, y, inner = a
            ratio = R / ref.stab(x + y, NORM_EPS)
            R = x * ratio + _backward(inner, y * ratio, rules)
        # Act: relevance passes unchanged
    return R


def relevance(net, x, chosen, rules, seed="one-hot", pool_inputs=None):
    """(logits, relevance at the input) in float64. chosen: the explained class per sample; rules: one
    (rule name, params) per linear layer in graph order; seed 'one-hot' or 'logit' (one-hot times the logit);
    pool_inputs: see forward()."""
    logits, trace = forward(net, x, pool_inputs)
    R = np.eye(logits.shape[1])[np.asarray(chosen)]
    if seed == "logit":
        R = R * logits
    n_linear = len(linear_layers(net.nodes))
    assert len(rules) == n_linear
    rules_iter = iter(list(reversed(rules)))
    R_in = _backward(trace, R, rules_iter)
    assert next(rules_iter, None) is None
    return logits, R_in


def perturbed(net, rng, eta):
    """The network with every weight and bias multiplied by (1 + eta * N(0, 1)), in float64, and every activation
    output by (1 + eta * N(0, 1)); Sigmoid's output and Elu's negative branch also moved by an absolute
    eta * N(0, 1) (times alpha): float32 runtimes compute 1 / (1 + exp(-x)) and alpha * (exp(x) - 1), whose
    error is absolute (about 1e-7), not relative to a tiny result. Exact zeros stay zero, so zero denominators
    stay zero; only ill-conditioned results move much."""
    def mod(t):
        return None if t is None else np.asarray(t, np.float64) * (1 + eta * rng.standard_normal(np.shape(t)))

    def walk(nodes):
        out = []
        for node in nodes:
            if isinstance(node, (Conv, Dense)):
                node = replace(node, W=mod(node.W), B=mod(node.B))
            elif isinstance(node, Act):
                node = replace(node, jitter=eta, noise=rng)
            elif isinstance(node, Residual):
                node = replace(node, body=walk(node.body))
            out.append(node)
        return out
    return Network(net.in_shape, walk(net.nodes))


# -- where float32 and float64 may take different discrete decisions -----------------------------------------------

def _near_zero(D, S, rtol):
    """Denominators that are not 0 but within rtol of the magnitude of their terms: their sign (the stabilizer's
    sign0, gamma's mask) and size are float32 rounding noise."""
    return int(np.sum((D != 0) & (np.abs(D) <= rtol * S)))


def _rule_denominators(name, params, layer, a, W, B):
    """(D, S) pairs of the rule's denominators whose terms can cancel; S = the sum of the terms' magnitudes."""
    a, W = np.asarray(a, np.float64), np.asarray(W, np.float64)
    B = None if B is None else np.asarray(B, np.float64)
    absB = None if B is None else np.abs(B)
    P, N = ref.P, ref.N
    if name in ("epsilon", "zero", "norm", "gamma"):
        pairs = [(layer.f(a, W, B), layer.f(np.abs(a), np.abs(W), absB))]
        if name == "gamma":
            g = params.get("gamma", 0.25)
            Wu, Wd = W + g * P(W), W + g * N(W)
            Bu, Bd = (None, None) if B is None else (B + g * P(B), B + g * N(B))
            for Wa, Ba, Wb in ((Wu, Bu, Wd), (Wd, Bd, Wu)):
                pairs.append((layer.f(P(a), Wa, Ba) + layer.f(N(a), Wb),
                              layer.f(P(a), np.abs(Wa), None if Ba is None else np.abs(Ba))
                              + layer.f(-N(a), np.abs(Wb))))
        return pairs
    if name == "z-box":
        low, high = (np.broadcast_to(np.asarray(params[k], np.float64), a.shape) for k in ("low", "high"))
        return [(layer.f(a - low, P(W)) + layer.f(a - high, N(W)),
                 layer.f(np.abs(a - low), P(W)) + layer.f(np.abs(a - high), -N(W)))]
    return []  # z-plus, alpha-beta, flat, w-square: every term of a denominator has the same sign


def ambiguities(net, x, rules, pool_inputs=None, rtol=1e-5):
    """Where a float32 evaluation may decide differently from this float64 one, as {what: count}: denominators
    of linear rules, AveragePool and residual Add Norms that cancel to within rtol of their terms (their sign
    and size are rounding noise, see _near_zero). MaxPool winners are not among them: forward() takes them from
    the float32 evaluation (pool_inputs)."""
    found = {}
    rules_iter = iter(rules)

    def add(what, pairs):
        count = sum(_near_zero(D, S, rtol) for D, S in pairs)
        if count:
            found[what] = found.get(what, 0) + count

    def walk(trace):
        for node, a in trace:
            if isinstance(node, (Conv, Dense)):
                name, params = next(rules_iter)
                add(f"{name} denominator near 0",
                    _rule_denominators(name, params, layer_of(node, a.shape[1:]), a, node.W, node.B))
            elif isinstance(node, (AvgPool, GlobalAvgPool)):
                layer = pool_layer(node, a.shape[1:])
                add("pooling Norm denominator near 0", [(layer.f(a, None), layer.f(np.abs(a), None))])
            elif isinstance(node, Residual):
                x_, y, inner = a
                walk(inner)
                add("residual Norm denominator near 0", [(x_ + y, np.abs(x_) + np.abs(y))])

    walk(forward(net, x, pool_inputs)[1])
    return found
