"""Every rule on one Conv / Gemm / MatMul+Add layer, compiled and run in onnxruntime, against tests/numpy_lrp.py.

Each model is: layer under test -> (Flatten) -> final Gemm [N, classes], the final Gemm on the epsilon rule, so a
dense (not one-hot) relevance reaches the layer under test. The reference applies epsilon to the final Gemm, then
the rule under test, in float64.
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp

sys.path.insert(0, os.path.dirname(__file__))
import numpy_lrp as ref  # noqa: E402

BATCH, CLASSES, TOL = 4, 5, 1e-4

# (rule spec given to the compiler, reference rule, reference parameters)
RULE_CASES = [
    ("zero", "zero", {}),
    ("epsilon", "epsilon", {}),
    ("epsilon:epsilon=0.1", "epsilon", {"epsilon": 0.1}),
    ("z-plus", "z-plus", {}),
    ("alpha-beta", "alpha-beta", {}),
    ("alpha-beta:alpha=1,beta=0", "alpha-beta", {"alpha": 1.0, "beta": 0.0}),
    ("gamma", "gamma", {}),
    ("gamma:gamma=0.5", "gamma", {"gamma": 0.5}),
    ("z-box:low=-2,high=2", "z-box", {"low": -2.0, "high": 2.0}),
    ("flat", "flat", {}),
    ("w-square", "w-square", {}),
    ("norm", "norm", {}),
    ("norm:stabilizer=0.01", "norm", {"stabilizer": 0.01}),
]
SEEDS = range(4)
# each rule gets its own 4 seeds, so that together the rules see many different layers
CASES = [pytest.param(spec, name, params, 100 * k + s, id=f"{spec}-{s}")
         for k, (spec, name, params) in enumerate(RULE_CASES) for s in SEEDS]


def _input(rng, shape, params):
    """Signed values with exact zeros; clipped into the box for z-box."""
    x = rng.standard_normal(shape) * 1.5
    x[rng.random(shape) < 0.25] = 0.0
    if "low" in params:
        x = np.clip(x, params["low"], params["high"])
    return x.astype(np.float32)


def _finish(rng, nodes, inits, x, hidden_size, h_name):
    """Append Flatten + the final Gemm, build the model; returns (model, final weight, final bias)."""
    wf = (rng.standard_normal((CLASSES, hidden_size)) / np.sqrt(hidden_size)).astype(np.float32)
    bf = (rng.standard_normal(CLASSES) * 0.3).astype(np.float32)
    nodes += [helper.make_node("Flatten", [h_name], ["h_flat"], name="flatten", axis=1),
              helper.make_node("Gemm", ["h_flat", "wf", "bf"], ["logits"], name="final", transB=1)]
    inits += [numpy_helper.from_array(wf, "wf"), numpy_helper.from_array(bf, "bf")]
    graph = helper.make_graph(
        nodes, "layer_under_test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", *x.shape[1:]])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, wf, bf


def _conv_case(seed, params):
    rng = np.random.default_rng(seed)
    nd = 1 + seed % 3
    depthwise = seed % 2 == 1
    C = int(rng.choice([2, 3, 4])) if nd == 3 else int(rng.choice([2, 3, 4, 6]))
    group = C if depthwise else int(rng.choice([g for g in range(1, C + 1) if C % g == 0]))
    O = group * int(rng.integers(1, 3)) * (1 if depthwise else int(rng.integers(1, 3)))
    kernel = [int(k) for k in rng.integers(1, 4 if nd < 3 else 3, nd)]
    strides = [int(s) for s in rng.integers(1, 3, nd)]
    dilations = [int(d) for d in rng.integers(1, 3, nd)]
    pads = [int(p) for p in rng.integers(0, 3, 2 * nd)]  # asymmetric begin / end pads
    max_size = {1: 10, 2: 7, 3: 5}[nd]
    spatial = [int(rng.integers((k - 1) * d + 1, max_size + 1)) for k, d in zip(kernel, dilations)]
    x = _input(rng, (BATCH, C, *spatial), params)
    w = (rng.standard_normal((O, C // group, *kernel)) / np.sqrt(C // group * np.prod(kernel))).astype(np.float32)
    b = (rng.standard_normal(O) * 0.3).astype(np.float32)
    layer = ref.Layer.conv(w, (C, *spatial), strides, pads, dilations, group)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["h"], name="conv", kernel_shape=kernel, strides=strides,
                              pads=pads, dilations=dilations, group=group)]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    model, wf, bf = _finish(rng, nodes, inits, x, int(np.prod(layer.out_shape)), "h")
    info = dict(nd=nd, C=C, O=O, group=group, kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                spatial=spatial)
    return model, x, layer, w, b, wf, bf, rng, info


def _dense_case(seed, params):
    """seed even: Gemm (random transB, alpha, beta, with or without bias); odd: MatMul + Add of a bias."""
    rng = np.random.default_rng(seed)
    d_in, d_out = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    x = _input(rng, (BATCH, d_in), params)
    w = (rng.standard_normal((d_in, d_out)) / np.sqrt(d_in)).astype(np.float32)  # x @ w
    b = (rng.standard_normal(d_out) * 0.3).astype(np.float32)
    if seed % 2 == 0:
        trans_b = (seed // 2) % 2
        alpha = float(rng.choice([1.0, 0.7, -1.3]))
        beta = float(rng.choice([1.0, 0.5, -2.0]))
        with_bias = bool(rng.integers(0, 2))
        stored = (w.T if trans_b else w).copy()
        inits = [numpy_helper.from_array(stored, "w")] + ([numpy_helper.from_array(b, "b")] if with_bias else [])
        nodes = [helper.make_node("Gemm", ["x", "w"] + (["b"] if with_bias else []), ["h"], name="first",
                                  transB=trans_b, alpha=alpha, beta=beta)]
        w_ref, b_ref = alpha * w.astype(np.float64), beta * b.astype(np.float64) if with_bias else None
        info = dict(op="Gemm", transB=trans_b, alpha=alpha, beta=beta, bias=with_bias)
    else:
        bias_first = bool(rng.integers(0, 2))
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h0"], name="first"),
                 helper.make_node("Add", ["b", "h0"] if bias_first else ["h0", "b"], ["h"], name="bias_add")]
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        w_ref, b_ref = w, b
        info = dict(op="MatMul+Add", bias_first=bias_first)
    info.update(d_in=d_in, d_out=d_out)
    model, wf, bf = _finish(rng, nodes, inits, x, d_out, "h")
    return model, x, ref.Layer.dense(w_ref), w_ref, b_ref, wf, bf, rng, info


def _run_and_compare(model, x, layer, w, b, wf, bf, rng, info, rules, ref_rule, params, **compile_kw):
    compiled = onnx_lrp.compile(model, seed="one-hot", rules=rules, **compile_kw)
    session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
    target = rng.integers(0, CLASSES, BATCH).astype(np.int64)
    target[0] = -1  # the top class
    logits, relevance = session.run(["logits", "relevance_x"], {"x": x, "target": target})

    # float64 reference: forward, epsilon on the final Gemm, then the rule under test
    x64, wf64, bf64 = x.astype(np.float64), wf.astype(np.float64), bf.astype(np.float64)
    h = layer.f(x64, np.asarray(w, np.float64), None if b is None else np.asarray(b, np.float64))
    hf = h.reshape(BATCH, -1)
    z = hf @ wf64.T + bf64
    np.testing.assert_allclose(logits, z, rtol=1e-4, atol=1e-4 * np.abs(z).max(), err_msg=f"forward {info}")
    chosen = np.where(target < 0, logits.argmax(1), target)
    seed = np.eye(CLASSES)[chosen]
    r_h = (hf * ((seed / ref.stab(z)) @ wf64)).reshape(h.shape)
    expected = ref.lrp(ref_rule, layer, x64, r_h, w, b, **params)

    assert relevance.shape == x.shape
    assert np.all(np.isfinite(relevance)), f"non-finite relevance for {rules[0]} on {info}"
    scale = np.abs(expected).max()
    assert scale > 0
    err = np.abs(relevance - expected).max() / scale
    assert err <= TOL, f"{rules[0]} on {info}: max|ours - ref| / max|ref| = {err:.3g} (max|ref| = {scale:.3g})"


@pytest.mark.parametrize("spec, ref_rule, params, seed", CASES)
def test_conv_rule(spec, ref_rule, params, seed):
    case = _conv_case(seed, params)
    _run_and_compare(*case, rules=[f"Conv={spec}", "Gemm=epsilon"], ref_rule=ref_rule, params=params)


@pytest.mark.parametrize("spec, ref_rule, params, seed", CASES)
def test_dense_rule(spec, ref_rule, params, seed):
    case = _dense_case(seed, params)
    _run_and_compare(*case, rules=[f"first={spec}", "final=epsilon"], ref_rule=ref_rule, params=params)


@pytest.mark.parametrize("seed", [7, 8, 9])
def test_conv_zbox_per_channel_bounds(seed):
    """Bounds given to compile() as per-channel tensors [1, C, 1...] broadcast to the input (padding included)."""
    model, x, layer, w, b, wf, bf, rng, info = _conv_case(seed, {})
    shape = (1, info["C"]) + (1,) * info["nd"]
    low = -rng.uniform(0.5, 2.5, shape).astype(np.float32)
    high = rng.uniform(0.5, 2.5, shape).astype(np.float32)
    x = np.clip(x, low, high)
    _run_and_compare(model, x, layer, w, b, wf, bf, rng, info, rules=["Conv=z-box", "Gemm=epsilon"],
                     ref_rule="z-box", params={"low": low, "high": high}, low=low.tolist(), high=high.tolist())
