"""ConvTranspose as a linear layer (the upsampling of segmentation decoders and text detectors: PP-OCRv4's DBNet
head): each rule against a float64 numpy reference that writes the layer as its dense matrix M (the operator's
definition applied to every basis vector, in loops; onnx.reference's grouped ConvTranspose is wrong in onnx 1.23),
R_x = rule(M, x, R_z)."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp

RNG = np.random.default_rng(3)
C_IN, C_OUT, GROUP = 4, 6, 2
W = RNG.normal(size=(C_IN, C_OUT // GROUP, 3, 3)).astype(np.float32)
B = RNG.normal(size=C_OUT).astype(np.float32) * 0.1
W_HEAD = RNG.normal(size=(C_OUT * 8 * 8, 3)).astype(np.float32) * 0.1
ATTRS = dict(strides=[2, 2], pads=[1, 1, 1, 1], output_padding=[1, 1], group=GROUP)


def _model(x_shape=(None, C_IN, 4, 4)):
    nodes = [helper.make_node("ConvTranspose", ["x", "w", "b"], ["z"], name="up", **ATTRS),
             helper.make_node("Flatten", ["z"], ["flat"], name="flat"),
             helper.make_node("MatMul", ["flat", "head"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "deconv", [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                                                             ["N", *x_shape[1:]])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
                              [numpy_helper.from_array(W, "w"), numpy_helper.from_array(B, "b"),
                               numpy_helper.from_array(W_HEAD, "head")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _conv_transpose(x):
    """ConvTranspose of one sample [C_in, 4, 4] in float64 loops, from the operator's definition: every input
    element adds x * W[c, o] to the output at (i * stride - pad + ki, j * stride - pad + kj)."""
    (s, _), (p, _) = ATTRS["strides"], ATTRS["pads"][:2]
    out_size = (4 - 1) * s - 2 * p + 3 + ATTRS["output_padding"][0]
    out = np.zeros((C_OUT, out_size, out_size))
    per_group_in, per_group_out = C_IN // GROUP, C_OUT // GROUP
    for c in range(C_IN):
        g = c // per_group_in
        for o in range(per_group_out):
            for i in range(4):
                for j in range(4):
                    for ki in range(3):
                        for kj in range(3):
                            oi, oj = i * s - p + ki, j * s - p + kj
                            if 0 <= oi < out_size and 0 <= oj < out_size:
                                out[g * per_group_out + o, oi, oj] += x[c, i, j] * W[c, o, ki, kj]
    return out


def _matrix():
    """M [out, in] of the ConvTranspose without its bias: column k is the layer applied to the basis vector e_k."""
    size = C_IN * 4 * 4
    return np.stack([_conv_transpose(np.eye(size)[k].reshape(C_IN, 4, 4)).reshape(-1) for k in range(size)], axis=1)


def _stabilize(z, eps):
    return z + eps * (np.sign(z) + (z == 0))


def _reference(rule, x, target, eps=1e-6):
    M = _matrix()
    bias = np.repeat(B.astype(np.float64), 64)
    a = x.reshape(len(x), -1).astype(np.float64)
    z = a @ M.T + bias
    logits = z @ W_HEAD.astype(np.float64)
    r_logits = np.eye(3)[target] * logits
    r_z = z * ((r_logits / _stabilize(logits, eps)) @ W_HEAD.T.astype(np.float64))  # epsilon on the head
    if rule == "epsilon":
        r_a = a * ((r_z / _stabilize(z, eps)) @ M)
    else:  # z-plus (Zennit's): positive weights on the positive inputs, negative on the negative, the bias's positive part
        mp, mn = np.maximum(M, 0), np.minimum(M, 0)
        ap, an = np.maximum(a, 0), np.minimum(a, 0)
        zp = ap @ mp.T + an @ mn.T + np.maximum(bias, 0)
        ratio = r_z / _stabilize(zp, eps)
        r_a = ap * (ratio @ mp) + an * (ratio @ mn)
    return logits, r_a.reshape(x.shape)


@pytest.mark.parametrize("rule", ["epsilon", "z-plus"])
def test_conv_transpose_rules_match_the_matrix_reference(rule):
    x = RNG.normal(size=(2, C_IN, 4, 4)).astype(np.float32)
    target = np.array([0, 2])
    compiled = onnx_lrp.compile(_model(), "epsilon", rules=[f"ConvTranspose={rule}"])
    session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
    logits, relevance = session.run(None, {"x": x, "target": target.astype(np.int64)})
    expected_logits, expected = _reference(rule, x, target)
    np.testing.assert_allclose(logits, expected_logits, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(relevance, expected, atol=1e-5 * np.abs(expected).max())
