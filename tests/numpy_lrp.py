"""Independent numpy (float64) reference of every LRP rule for one linear layer, used by the tests.

It shares no code with onnx_lrp. A layer is written as a dense matrix: f(x; W, B) = x @ M(W).T + B and the
transposed op is W^T g = g @ M(W). A Conv (1-, 2- or 3-D; strides, begin/end pads, dilations, groups) becomes its
matrix by plain loops over output channels, output positions and kernel taps (`conv_matrix`); a dense layer
x @ W has M(W) = W.T. Parameter modifications (W+, W^2, ones, ...) are applied to W *before* building M, so zero
padding is never mistaken for a weight. The rule math follows /work/shared/lrp-rules.md (sections 0.3 and 1),
which is how Zennit computes it.
"""
import itertools

import numpy as np


def P(t):
    return np.maximum(t, 0.0)


def N(t):
    return np.minimum(t, 0.0)


def stab(z, eps=1e-6):
    """Zennit's stabilizer z + eps * sign0(z) with sign0(0) = +1: never zero for eps > 0."""
    return z + eps * (np.sign(z) + (z == 0))


def conv_matrix(W, in_shape, strides, pads, dilations, group):
    """Dense matrix M [O*prod(out), C*prod(in)] of an ONNX Conv (no bias) on one sample of shape in_shape = (C, ...).

    W: [O, C/group, k...]; pads: begin pads of every spatial dim, then end pads. Returns (M, out_shape).
    """
    W = np.asarray(W, np.float64)
    C, spatial = in_shape[0], tuple(in_shape[1:])
    O, c_per_group, kernel = W.shape[0], W.shape[1], W.shape[2:]
    nd = len(spatial)
    begin, end = pads[:nd], pads[nd:]
    assert C == c_per_group * group and O % group == 0
    out_spatial = tuple((spatial[i] + begin[i] + end[i] - dilations[i] * (kernel[i] - 1) - 1) // strides[i] + 1
                        for i in range(nd))
    M = np.zeros((O, *out_spatial, C, *spatial))
    for o in range(O):
        g = o // (O // group)
        for pos in itertools.product(*map(range, out_spatial)):
            for c_local in range(c_per_group):
                c = g * c_per_group + c_local
                for tap in itertools.product(*map(range, kernel)):
                    idx = tuple(pos[i] * strides[i] - begin[i] + tap[i] * dilations[i] for i in range(nd))
                    if all(0 <= idx[i] < spatial[i] for i in range(nd)):  # else: the tap reads zero padding
                        M[(o, *pos, c, *idx)] += W[(o, c_local, *tap)]
    return M.reshape(O * int(np.prod(out_spatial)), C * int(np.prod(spatial))), (O, *out_spatial)


class Layer:
    """A linear layer on per-sample shapes: `matrix(W)` gives M(W); the bias B [O] broadcasts over positions."""

    def __init__(self, matrix, in_shape, out_shape):
        self.matrix, self.in_shape, self.out_shape = matrix, tuple(in_shape), tuple(out_shape)

    @classmethod
    def conv(cls, W, in_shape, strides, pads, dilations, group):
        cache = {}  # the loops are slow-ish: build each modified weight's matrix once

        def matrix(w):
            w = np.asarray(w, np.float64)
            if w.tobytes() not in cache:
                cache[w.tobytes()] = conv_matrix(w, in_shape, strides, pads, dilations, group)[0]
            return cache[w.tobytes()]
        out_shape = conv_matrix(W, in_shape, strides, pads, dilations, group)[1]
        return cls(matrix, in_shape, out_shape)

    @classmethod
    def dense(cls, W):  # W: [in, out], f(x) = x @ W + B
        return cls(lambda w: np.asarray(w, np.float64).T, W.shape[:1], W.shape[1:])

    def f(self, x, W, B=None):
        z = (x.reshape(len(x), -1) @ self.matrix(W).T).reshape((len(x),) + self.out_shape)
        if B is not None:
            z = z + np.asarray(B, np.float64).reshape((-1,) + (1,) * (len(self.out_shape) - 1))
        return z

    def bt(self, g, W):
        return (g.reshape(len(g), -1) @ self.matrix(W)).reshape((len(g),) + self.in_shape)


# -- the rules: a = layer input [n, *in_shape], R = relevance at the layer output [n, *out_shape] ------------------

def epsilon(L, a, R, W, B, epsilon=1e-6):
    return a * L.bt(R / stab(L.f(a, W, B), epsilon), W)


def zero(L, a, R, W, B):
    z = L.f(a, W, B)
    return a * L.bt(np.divide(R, z, out=np.zeros_like(R), where=z != 0), W)  # z == 0 passes nothing


def norm(L, a, R, W, B, stabilizer=1e-6):
    return epsilon(L, a, R, W, B, stabilizer)


def zplus(L, a, R, W, B, stabilizer=1e-6):
    g = R / stab(L.f(P(a), P(W), _p(P, B)) + L.f(N(a), N(W)), stabilizer)
    return P(a) * L.bt(g, P(W)) + N(a) * L.bt(g, N(W))


def alpha_beta(L, a, R, W, B, alpha=2.0, beta=1.0, stabilizer=1e-6):
    gp = R / stab(L.f(P(a), P(W), _p(P, B)) + L.f(N(a), N(W)), stabilizer)
    gn = R / stab(L.f(P(a), N(W), _p(N, B)) + L.f(N(a), P(W)), stabilizer)
    return alpha * (P(a) * L.bt(gp, P(W)) + N(a) * L.bt(gp, N(W))) \
        - beta * (P(a) * L.bt(gn, N(W)) + N(a) * L.bt(gn, P(W)))


def gamma(L, a, R, W, B, gamma=0.25, stabilizer=1e-6):
    Wu, Wd = W + gamma * P(W), W + gamma * N(W)
    Bu, Bd = _p(lambda b: b + gamma * P(b), B), _p(lambda b: b + gamma * N(b), B)
    z = L.f(a, W, B)
    gu = (z > 0) * R / stab(L.f(P(a), Wu, Bu) + L.f(N(a), Wd), stabilizer)
    gd = (z < 0) * R / stab(L.f(P(a), Wd, Bd) + L.f(N(a), Wu), stabilizer)
    return P(a) * (L.bt(gu, Wu) + L.bt(gd, Wd)) + N(a) * (L.bt(gu, Wd) + L.bt(gd, Wu))


def zbox(L, a, R, W, B, low, high, stabilizer=1e-6):
    l, h = (np.broadcast_to(np.asarray(v, np.float64), a.shape) for v in (low, high))
    g = R / stab(L.f(a, W, B) - L.f(l, P(W), _p(P, B)) - L.f(h, N(W), _p(N, B)), stabilizer)
    return a * L.bt(g, W) - l * L.bt(g, P(W)) - h * L.bt(g, N(W))


def flat(L, a, R, W, B, stabilizer=1e-6):
    ones, Wo = np.ones((1,) + L.in_shape), np.ones_like(W)
    return np.broadcast_to(L.bt(R / stab(L.f(ones, Wo), stabilizer), Wo), a.shape)


def wsquare(L, a, R, W, B, stabilizer=1e-6):
    ones = np.ones((1,) + L.in_shape)
    return np.broadcast_to(L.bt(R / stab(L.f(ones, W ** 2, _p(np.square, B)), stabilizer), W ** 2), a.shape)


def _p(fn, B):
    return None if B is None else fn(np.asarray(B, np.float64))


RULES = {"zero": zero, "epsilon": epsilon, "z-plus": zplus, "alpha-beta": alpha_beta, "gamma": gamma,
         "z-box": zbox, "flat": flat, "w-square": wsquare, "norm": norm}


def lrp(rule, layer, a, R, W, B=None, **params):
    """Relevance at the input of `layer` (a Layer) for `rule`; everything in float64."""
    a, R, W = (np.asarray(t, np.float64) for t in (a, R, W))
    return RULES[rule](layer, a, R, W, None if B is None else np.asarray(B, np.float64), **params)
