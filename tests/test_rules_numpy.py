"""Every rule on one Conv / Gemm / MatMul+Add layer, compiled and run in onnxruntime, against tests/numpy_lrp.py.

Each model is: layer under test -> (Flatten) -> final Gemm [N, classes], the final Gemm on the epsilon rule, so a
dense (not one-hot) relevance reaches the layer under test. The reference applies epsilon to the final Gemm, then
the rule under test, in float64. test_rule_where_z_is_zero puts the final Gemm on flat instead (its relevance is not
a multiple of the layer's output), on exactly representable numbers, so outputs with z == 0 exactly get relevance.
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


def _input(rng, shape, params, exact=False):
    """Signed values with exact zeros; clipped into the box for z-box. exact: small integers."""
    x = rng.integers(-2, 3, shape).astype(np.float64) if exact else rng.standard_normal(shape) * 1.5
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


def _params(rng, shape, scale, exact):
    """Random float32 parameters; exact: multiples of 0.5 in [-1, 1] without 0, so float32 sums are exact."""
    if exact:
        return rng.choice(np.float32([-1.0, -0.5, 0.5, 1.0]), shape)
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def _conv_case(seed, params, bias=True, dead=False, exact=False):
    """A random Conv; dead=True: its output channel 0 has zero weights; exact: see _params and _input."""
    rng = np.random.default_rng(seed)
    nd = 1 + seed % 3
    mode = ("plain", "depthwise", "grouped", "depthwise")[seed % 4]
    C = int(rng.choice([4, 6] if mode == "grouped" else [2, 3, 4]))
    group = 1 if mode == "plain" else C if mode == "depthwise" else int(rng.choice([2, C // 2]))
    O = group * int(rng.integers(1, 3))  # depthwise: channel multiplier 1 or 2
    O = 2 * group if dead else O  # so that live channels remain
    kernel = [int(k) for k in rng.integers(1, 4 if nd < 3 else 3, nd)]
    strides = [int(s) for s in rng.integers(1, 3, nd)]
    dilations = [int(d) for d in rng.integers(1, 3, nd)]
    reach = [min(2, (k - 1) * d) for k, d in zip(kernel, dilations)] * 2  # no window lies wholly in the padding
    pads = [int(rng.integers(0, r + 1)) for r in reach]  # asymmetric begin / end pads
    max_size = {1: 10, 2: 7, 3: 5}[nd]
    spatial = [int(rng.integers((k - 1) * d + 1, max_size + 1)) for k, d in zip(kernel, dilations)]
    x = _input(rng, (BATCH, C, *spatial), params, exact)
    w = _params(rng, (O, C // group, *kernel), 1 / np.sqrt(C // group * np.prod(kernel)), exact)
    b = _params(rng, O, 0.3, exact) if bias else None
    if dead:
        w[0] = 0.0
    layer = ref.Layer.conv(w, (C, *spatial), strides, pads, dilations, group)
    if exact and bias:  # make one output of sample 1 exactly 0: its bias cancels its weighted sum
        b[0] = -layer.f(x[1:2].astype(np.float64), w.astype(np.float64))[(0, 0) + (0,) * nd]
    nodes = [helper.make_node("Conv", ["x", "w"] + (["b"] if bias else []), ["h"], name="conv",
                              kernel_shape=kernel, strides=strides, pads=pads, dilations=dilations, group=group)]
    inits = [numpy_helper.from_array(w, "w")] + ([numpy_helper.from_array(b, "b")] if bias else [])
    model, wf, bf = _finish(rng, nodes, inits, x, int(np.prod(layer.out_shape)), "h")
    info = dict(nd=nd, C=C, O=O, group=group, kernel=kernel, strides=strides, pads=pads, dilations=dilations,
                spatial=spatial)
    return model, x, layer, w, b, wf, bf, rng, info


def _dense_case(seed, params, bias=True, dead=False, exact=False):
    """seed even: Gemm (random transB, alpha, beta, with or without bias); odd: MatMul + Add of a bias.

    bias=False: no bias at all (MatMul alone); dead=True: output 0 has zero weights; exact: see _params, _input."""
    rng = np.random.default_rng(seed)
    d_in, d_out = int(rng.integers(3, 9)), int(rng.integers(3, 9))
    x = _input(rng, (BATCH, d_in), params, exact)
    w = _params(rng, (d_in, d_out), 1 / np.sqrt(d_in), exact)  # x @ w
    b = _params(rng, d_out, 0.3, exact)
    if dead:
        w[:, 0] = 0.0
    if seed % 2 == 0:
        trans_b = (seed // 2) % 2
        alpha = float(rng.choice([1.0, 0.5, -2.0] if exact else [1.0, 0.7, -1.3]))
        beta = float(rng.choice([1.0, 0.5, -2.0]))
        with_bias = bool(rng.integers(0, 2)) and bias
        if exact and with_bias:  # make output 0 of sample 1 exactly 0
            b[0] = -alpha * float(x[1] @ w[:, 0]) / beta
        stored = (w.T if trans_b else w).copy()
        inits = [numpy_helper.from_array(stored, "w")] + ([numpy_helper.from_array(b, "b")] if with_bias else [])
        nodes = [helper.make_node("Gemm", ["x", "w"] + (["b"] if with_bias else []), ["h"], name="first",
                                  transB=trans_b, alpha=alpha, beta=beta)]
        w_ref, b_ref = alpha * w.astype(np.float64), beta * b.astype(np.float64) if with_bias else None
        info = dict(op="Gemm", transB=trans_b, alpha=alpha, beta=beta, bias=with_bias)
    elif not bias:
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="first")]
        inits = [numpy_helper.from_array(w, "w")]
        w_ref, b_ref = w, None
        info = dict(op="MatMul")
    else:
        bias_first = bool(rng.integers(0, 2))
        if exact:
            b[0] = -float(x[1] @ w[:, 0])
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h0"], name="first"),
                 helper.make_node("Add", ["b", "h0"] if bias_first else ["h0", "b"], ["h"], name="bias_add")]
        inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
        w_ref, b_ref = w, b
        info = dict(op="MatMul+Add", bias_first=bias_first)
    info.update(d_in=d_in, d_out=d_out)
    model, wf, bf = _finish(rng, nodes, inits, x, d_out, "h")
    return model, x, ref.Layer.dense(w_ref), w_ref, b_ref, wf, bf, rng, info


def _run_and_compare(model, x, layer, w, b, wf, bf, rng, info, rules, ref_rule, params, final="epsilon",
                     **compile_kw):
    """final: the rule of the final Gemm, 'epsilon' (R at its input is a multiple of h) or 'flat' (it is not)."""
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
    if final == "epsilon":
        r_h = (hf * ((seed / ref.stab(z)) @ wf64)).reshape(h.shape)
    else:  # flat: n = f(1; 1) = the number of the final Gemm's inputs, R_in = 1^T (R / s(n))
        ones = np.ones_like(wf64)
        r_h = ((seed / ref.stab(np.ones((1, hf.shape[1])) @ ones.T)) @ ones).reshape(h.shape)
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


@pytest.mark.parametrize("spec, ref_rule, params, seed", [c for c in CASES if c.values[3] % 100 < 2])
@pytest.mark.parametrize("kind", ["conv", "dense"])
def test_rule_where_z_is_zero(kind, spec, ref_rule, params, seed):
    """Exactly representable numbers, so some z are exactly 0 (cancellation; even seeds: no bias and a dead output),
    and the final Gemm on flat gives them non-zero relevance: zero and gamma drop it, the others divide by +eps."""
    bias = seed % 2 == 1
    build = _conv_case if kind == "conv" else _dense_case
    case = build(seed, params, bias=bias, dead=not bias, exact=True)
    layer, x, w, b = case[2], case[1], case[3], case[4]
    z = layer.f(x.astype(np.float64), np.asarray(w, np.float64), None if b is None else np.asarray(b, np.float64))
    assert np.any(z == 0), "the case must hold outputs with z == 0 exactly"
    rules = [f"Conv={spec}", "Gemm=flat"] if kind == "conv" else [f"first={spec}", "final=flat"]
    _run_and_compare(*case, rules=rules, ref_rule=ref_rule, params=params, final="flat")
