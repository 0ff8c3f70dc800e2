"""ReduceMean/ReduceSum (Norm), gated products (SiLU, squeeze-excitation), embedding lookups, and the Shape
subgraphs exporters write: each against a numpy reference with a dense epsilon layer on top."""
import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from builders import make_model
from conftest import run

EPS = 1e-6
N, C, H, W = 3, 4, 5, 5
CLASSES = 6


def stab(z):
    return z + EPS * np.where(z >= 0, 1.0, -1.0)


def epsilon_dense(a, w, target):
    """Epsilon rule of logits = a @ w.T with a one-hot seed."""
    return a * ((np.eye(CLASSES)[target] / stab(a @ w.T)) @ w)


def dense_model(nodes, x_info, features, weights, rng):
    w = rng.normal(size=(CLASSES, features)).astype(np.float32)
    nodes = nodes + [helper.make_node("Flatten", ["y"], ["f"], name="flatten"),
                     helper.make_node("Gemm", ["f", "w"], ["logits"], name="dense", transB=1)]
    model = make_model(nodes, [x_info], [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", CLASSES])],
                       dict(weights, w=w))
    return model, w.astype(np.float64)


def image(rng):
    return rng.normal(size=(N, C, H, W)).astype(np.float32), np.array([0, 5, 2], np.int64)


X_INFO = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", C, H, W])


def assert_close(ours, expected, rel=1e-5):
    assert ours.shape == expected.shape
    assert np.abs(ours - expected).max() <= rel * np.abs(expected).max()


def plan_of(compiled):
    return {p["node"]: p["rule"] for p in json.loads(next(m.value for m in compiled.metadata_props
                                                          if m.key == "onnx_lrp.plan"))}


@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_mean_is_norm(keepdims, rng):
    model, w = dense_model([helper.make_node("ReduceMean", ["x"], ["y"], name="mean", axes=[2, 3],
                                             keepdims=keepdims)], X_INFO, C, {}, rng)
    x, target = image(rng)
    out = run(onnx_lrp.compile(model, "epsilon", seed="one-hot"), {"x": x, "target": target})
    m = x.astype(np.float64).mean(axis=(2, 3))
    r_mid = epsilon_dense(m, w, target)
    expected = x * (r_mid / stab(m))[:, :, None, None] / (H * W)
    assert_close(out["relevance_x"], expected)
    assert np.allclose(out["relevance_x"].sum((1, 2, 3)), r_mid.sum(1), rtol=1e-5)  # Norm conserves


def test_reduce_sum_with_axes_input_is_norm(rng):
    model, w = dense_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum")], X_INFO, C * H,
                           {"axes": np.array([-1], np.int64)}, rng)
    x, target = image(rng)
    out = run(onnx_lrp.compile(model, "epsilon", seed="one-hot"), {"x": x, "target": target})
    s = x.astype(np.float64).sum(axis=3, keepdims=True)
    r_mid = epsilon_dense(s.reshape(N, -1), w, target).reshape(s.shape)
    assert_close(out["relevance_x"], x * r_mid / stab(s))


def test_reduce_over_the_batch_is_refused(rng):
    model, _ = dense_model([helper.make_node("ReduceSum", ["x", "axes"], ["y"], name="sum", keepdims=1)], X_INFO,
                           C * H * W, {"axes": np.array([0], np.int64)}, rng)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="'sum'.*ReduceSum.*batch"):
        onnx_lrp.compile(model)


def test_silu_passes_relevance_through(rng):
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="sigmoid"),
             helper.make_node("Mul", ["x", "s"], ["y"], name="silu")]
    model, w = dense_model(nodes, X_INFO, C * H * W, {}, rng)
    x, target = image(rng)
    compiled = onnx_lrp.compile(model, "epsilon", seed="one-hot")
    out = run(compiled, {"x": x, "target": target})
    a = x.astype(np.float64) / (1 + np.exp(-x.astype(np.float64)))
    assert_close(out["relevance_x"], epsilon_dense(a.reshape(N, -1), w, target).reshape(x.shape))
    assert plan_of(compiled)["silu"] == "pass (activation of 'x')"


@pytest.mark.parametrize("gate", ["Sigmoid", "HardSigmoid"])
def test_squeeze_excitation_gate_gives_the_signal_all_relevance(gate, rng):
    """x * gate(mean(x)) broadcast over space: the gate is a fixed weight; relevance is conserved into x."""
    nodes = [helper.make_node("ReduceMean", ["x"], ["m"], name="squeeze", axes=[2, 3], keepdims=1),
             helper.make_node("Conv", ["m", "k"], ["e"], name="excite"),
             helper.make_node(gate, ["e"], ["g"], name="gate"),
             helper.make_node("Mul", ["g", "x"], ["y"], name="scale")]
    model, w = dense_model(nodes, X_INFO, C * H * W, {"k": rng.normal(size=(C, C, 1, 1)).astype(np.float32)}, rng)
    x, target = image(rng)
    compiled = onnx_lrp.compile(model, "epsilon", seed="one-hot")
    out = run(compiled, {"x": x, "target": target})
    np.testing.assert_allclose(out["logits"], run(model, {"x": x})["logits"], rtol=1e-6)  # forward unchanged
    kernel = numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == "k"))[:, :, 0, 0]
    excitation = x.astype(np.float64).mean((2, 3)) @ kernel.T
    a = x * _gate(gate, excitation)[..., None, None]
    assert_close(out["relevance_x"], epsilon_dense(a.reshape(N, -1), w, target).reshape(x.shape), rel=1e-4)
    assert plan_of(compiled)["scale"] == "gate: the signal takes all"


def _gate(kind, e):
    return 1 / (1 + np.exp(-e)) if kind == "Sigmoid" else np.clip(0.2 * e + 0.5, 0, 1)


def test_product_of_two_activations_is_refused(rng):
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["p"], name="pool"),
             helper.make_node("Relu", ["p"], ["r"], name="relu"),  # unbounded, and not a function of x alone
             helper.make_node("Mul", ["x", "r"], ["y"], name="square")]
    model, _ = dense_model(nodes, X_INFO, C * H * W, {}, rng)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="'square'.*Mul.*neither is a gate"):
        onnx_lrp.compile(model)


@pytest.mark.parametrize("ids_type", [TensorProto.INT64, TensorProto.INT32])
def test_token_relevance_is_the_embedding_relevance_summed(ids_type, rng):
    vocab, tokens, dim = 20, 7, 3
    table = rng.normal(size=(vocab, dim)).astype(np.float32)
    ids_info = helper.make_tensor_value_info("ids", ids_type, ["N", tokens])
    nodes = [helper.make_node("Cast", ["ids"], ["ids64"], name="cast", to=TensorProto.INT64),
             helper.make_node("Gather", ["table", "ids64"], ["y"], name="embedding")]
    model, w = dense_model(nodes, ids_info, tokens * dim, {"table": table}, rng)
    ids = rng.integers(0, vocab, size=(N, tokens)).astype(np.int64 if ids_type == TensorProto.INT64 else np.int32)
    target = np.array([1, 0, 4], np.int64)
    compiled = onnx_lrp.compile(model, "epsilon", seed="one-hot")
    out = run(compiled, {"ids": ids, "target": target})
    embedded = table[ids].astype(np.float64)
    expected = epsilon_dense(embedded.reshape(N, -1), w, target).reshape(embedded.shape).sum(-1)
    assert out["relevance_ids"].dtype == np.float32
    assert_close(out["relevance_ids"], expected)
    assert [o.name for o in compiled.graph.output] == ["logits", "relevance_ids"]
    assert plan_of(compiled)["embedding"] == "sum over the embedding"


def test_exporter_shape_subgraph_for_flatten(rng):
    """Shape -> Gather(0) -> Unsqueeze -> Concat(-1) -> Reshape, as torch.onnx writes `x.view(x.size(0), -1)`:
    compiles with a symbolic batch, and folds away completely with a fixed one."""
    def model_with(batch):
        nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
                 helper.make_node("Shape", ["r"], ["shape"], name="shape"),
                 helper.make_node("Constant", [], ["zero"], name="zero", value=helper.make_tensor(
                     "zero", TensorProto.INT64, [], [0])),
                 helper.make_node("Gather", ["shape", "zero"], ["batch"], name="batch", axis=0),
                 helper.make_node("Unsqueeze", ["batch", "axis0"], ["batch1"], name="unsqueeze"),
                 helper.make_node("Concat", ["batch1", "minus1"], ["target_shape"], name="cat", axis=0),
                 helper.make_node("Reshape", ["r", "target_shape"], ["y"], name="view")]
        info = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, C, H, W])
        return dense_model(nodes, info, C * H * W, {"axis0": np.array([0], np.int64),
                                                     "minus1": np.array([-1], np.int64)}, np.random.default_rng(1))

    for batch in ("N", N):
        model, w = model_with(batch)
        compiled = onnx_lrp.compile(model, "epsilon", seed="one-hot")
        x, target = image(rng)
        out = run(compiled, {"x": x, "target": target})
        a = np.maximum(x, 0).astype(np.float64).reshape(N, -1)
        assert_close(out["relevance_x"], epsilon_dense(a, w, target).reshape(x.shape))
        shape_nodes = [n for n in compiled.graph.node if n.op_type == "Shape" and "/lrp/" not in n.name]
        assert len(shape_nodes) == (1 if batch == "N" else 0)
