"""Resize in linear and cubic mode (issue 18): the relevance is the op's exact adjoint, R_x = A_H^T R A_W, against a
float64 numpy reference whose interpolation matrices are written from the ONNX operator definition (coordinate
transformation, linear and cubic kernels with clamped borders), not from the compiler. The same reference's forward
must reproduce onnxruntime's Resize, which checks the reference itself."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp

RNG = np.random.default_rng(5)
H, W, C = 5, 4, 2


def _source(i, scale, length_in, length_out, mode):
    """The input coordinate of output index i (ONNX Resize's coordinate_transformation_mode)."""
    if mode == "half_pixel":
        return (i + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        return (i + 0.5) / scale - 0.5 if length_out > 1 else 0.0
    if mode == "align_corners":
        return i * (length_in - 1) / (length_out - 1) if length_out > 1 else 0.0
    if mode == "asymmetric":
        return i / scale
    raise ValueError(mode)


def _cubic(t, a):
    t = abs(t)
    if t <= 1:
        return (a + 2) * t ** 3 - (a + 3) * t ** 2 + 1
    if t < 2:
        return a * t ** 3 - 5 * a * t ** 2 + 8 * a * t - 4 * a
    return 0.0


def _matrix(length_in, scale, mode, kind, a=-0.75):
    length_out = int(np.floor(length_in * scale))
    m = np.zeros((length_out, length_in))
    for i in range(length_out):
        x = _source(i, scale, length_in, length_out, mode)
        if kind == "linear":
            x = min(max(x, 0), length_in - 1)
            lo = int(np.floor(x))
            hi, w = min(lo + 1, length_in - 1), x - lo
            m[i, lo] += 1 - w
            m[i, hi] += w
        else:  # cubic: four taps around floor(x), indices clamped to the border (exclude_outside=0)
            base = int(np.floor(x))
            for k in range(base - 1, base + 3):
                m[i, min(max(k, 0), length_in - 1)] += _cubic(x - k, a)
    return m


def _model(kind, mode, scales):
    inits = [numpy_helper.from_array(np.array(scales, np.float32), "scales"),
             numpy_helper.from_array(RNG.normal(size=(C * int(H * scales[2]) * int(W * scales[3]), 3))
                                     .astype(np.float32) * 0.2, "head")]
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["z"], name="resize", mode=kind,
                              coordinate_transformation_mode=mode),
             helper.make_node("Flatten", ["z"], ["flat"], name="flat"),
             helper.make_node("MatMul", ["flat", "head"], ["logits"], name="head")]
    graph = helper.make_graph(nodes, "resize", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, H, W])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("kind,mode,scales", [
    ("linear", "half_pixel", [1, 1, 2.0, 2.0]), ("linear", "align_corners", [1, 1, 2.0, 1.5]),
    ("linear", "asymmetric", [1, 1, 1.6, 2.0]), ("linear", "pytorch_half_pixel", [1, 1, 2.0, 3.0]),
    ("cubic", "half_pixel", [1, 1, 2.0, 2.0]), ("cubic", "asymmetric", [1, 1, 2.0, 1.5]),
    ("linear", "half_pixel", [1, 1, 0.6, 1.0])])
def test_interpolation_relevance_is_the_adjoint(kind, mode, scales):
    model = _model(kind, mode, scales)
    x = RNG.normal(size=(2, C, H, W)).astype(np.float32)
    a_h, a_w = _matrix(H, scales[2], mode, kind), _matrix(W, scales[3], mode, kind)
    z = np.einsum("oh,nchw,pw->ncop", a_h, x.astype(np.float64), a_w)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    head = numpy_helper.to_array(model.graph.initializer[1]).astype(np.float64)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], z.reshape(2, -1) @ head, rtol=1e-4, atol=1e-5)
    compiled = onnx_lrp.compile(model, "epsilon")
    target = np.array([0, 2], np.int64)
    _, relevance = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x, "target": target})
    flat = z.reshape(2, -1)
    logits = flat @ head
    r_logits = np.eye(3)[target] * logits
    stabilized = logits + 1e-6 * (np.sign(logits) + (logits == 0))
    r_z = (flat * ((r_logits / stabilized) @ head.T)).reshape(z.shape)
    expected = np.einsum("oh,ncop,pw->nchw", a_h, r_z, a_w)
    np.testing.assert_allclose(relevance, expected, atol=1e-5 * np.abs(expected).max())
