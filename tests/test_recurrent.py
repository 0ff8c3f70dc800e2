"""LSTM and GRU (issue 17): torch exports as the ONNX ops (1 and 2 layers, bidirectional, batch-first and
time-first, initial states as inputs) and the same weights written out as cells, against the float64 numpy
reference of Arras et al.'s rules (numpy_recurrent.py). Models: tools/make_recurrent_models.py."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

import onnx_lrp
from onnx_lrp.passes.recurrent import UnrollRecurrent

from numpy_recurrent import explain as reference

HERE = os.path.dirname(os.path.abspath(__file__))
MODELS = os.path.join(HERE, "..", "models", "recurrent")
OP_MODELS = ["lstm_1l_bf", "lstm_2l_bf", "lstm_1l_bi_bf", "lstm_2l_bi_tf", "lstm_1l_tf",
             "gru_1l_bf", "gru_2l_bf", "gru_1l_bi_bf", "gru_2l_bi_tf", "gru_1l_tf", "lstm_2l_bi_tfdyn",
             "gru_2l_bi_tfdyn"]


def _path(name):
    return os.path.join(MODELS, f"{name}.onnx")


def _session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _time_first(name):
    return name.endswith(("tf", "tfdyn"))


def _input(name, rng):
    x = rng.normal(size=(2, 6, 5) if name.endswith("tf") else (4, 6, 5)).astype(np.float32)
    return x.transpose(1, 0, 2).copy() if _time_first(name) else x


def _run(compiled, feeds, target):
    session = _session(compiled)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {**feeds, "target": target})))


@pytest.mark.parametrize("seed", ["logit", "one-hot"])
@pytest.mark.parametrize("name", OP_MODELS)
def test_op_matches_numpy_reference(name, seed):
    rng = np.random.default_rng(len(name))
    x = _input(name, rng)
    batch = x.shape[1] if _time_first(name) else x.shape[0]
    target = np.array([k % 3 for k in range(batch)], np.int64)
    target[0] = -1
    compiled = onnx_lrp.compile(_path(name), "epsilon", seed=seed)
    out = _run(compiled, {"x": x}, target)
    original = _session(onnx.load(_path(name))).run(None, {"x": x})[0]
    np.testing.assert_allclose(out["logits"], original, atol=1e-5)
    logits, r_x, _, _ = reference(onnx.load(_path(name)), x, target, batch_first=not _time_first(name), seed=seed)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-5)
    scale = np.abs(r_x).max()
    assert scale > 0
    np.testing.assert_allclose(out["relevance_x"], r_x, atol=1e-5 * scale)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cells_written_out_get_the_op_relevance(cell):
    """The same weights as hand-written cells (x2h(x) + h2h(h), chunk, sigmoid/tanh, products; zero states built
    at run time from the input's shape) get the relevance of the op, and both that of the reference."""
    x = _input(f"{cell}_1l_bf", np.random.default_rng(3))
    target = np.array([0, 1, 2, -1], np.int64)
    from_cells = _run(onnx_lrp.compile(_path(f"{cell}_cells_bf"), "epsilon"), {"x": x}, target)
    from_op = _run(onnx_lrp.compile(_path(f"{cell}_1l_bf"), "epsilon"), {"x": x}, target)
    _, r_x, _, _ = reference(onnx.load(_path(f"{cell}_1l_bf")), x, target)
    scale = np.abs(r_x).max()
    np.testing.assert_allclose(from_cells["logits"], from_op["logits"], atol=1e-5)
    np.testing.assert_allclose(from_cells["relevance_x"], r_x, atol=1e-5 * scale)
    np.testing.assert_allclose(from_op["relevance_x"], r_x, atol=1e-5 * scale)


def test_initial_states_as_inputs():
    """h0, c0 [layers, N, H] with the batch at axis 1: found from the dims' names, explained, and their relevance
    equals the reference's."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 6, 5)).astype(np.float32)
    h0, c0 = (rng.normal(size=(2, 3, 7)).astype(np.float32) for _ in range(2))
    compiled = onnx_lrp.compile(_path("lstm_2l_bf_state"), "epsilon")
    assert [i.type.tensor_type.shape.dim[0].dim_param for i in compiled.graph.input if i.name == "target"] == ["N"]
    target = np.array([2, -1, 0], np.int64)
    out = _run(compiled, {"x": x, "h0": h0, "c0": c0}, target)
    _, r_x, r_h0, r_c0 = reference(onnx.load(_path("lstm_2l_bf_state")), x, target, h0=h0, c0=c0)
    scale = max(np.abs(r_x).max(), np.abs(r_h0).max(), np.abs(r_c0).max())
    np.testing.assert_allclose(out["relevance_x"], r_x, atol=1e-5 * scale)
    np.testing.assert_allclose(out["relevance_h0"], r_h0, atol=1e-5 * scale)
    np.testing.assert_allclose(out["relevance_c0"], r_c0, atol=1e-5 * scale)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_conservation_without_biases(cell):
    """Zero biases: the relevance of the inputs sums to the explained logit (every rule is conservative: gates
    take none, sums and linear maps split it all)."""
    x = np.random.default_rng(9).normal(size=(4, 6, 5)).astype(np.float32)
    compiled = onnx_lrp.compile(_path(f"{cell}_2l_bi_bf_nobias"), "epsilon", epsilon=1e-9, stabilizer=1e-9)
    out = _run(compiled, {"x": x}, np.full(4, -1, np.int64))
    explained = out["logits"].max(axis=1)
    np.testing.assert_allclose(out["relevance_x"].sum(axis=(1, 2)), explained, atol=1e-4 * np.abs(explained).max())


def test_conservation_counts_the_initial_states():
    """Zero biases and initial states as inputs: the input's and the states' relevance sum to the logit."""
    rng = np.random.default_rng(10)
    x, h0, c0 = (rng.normal(size=s).astype(np.float32) for s in ((4, 6, 5), (2, 4, 7), (2, 4, 7)))
    compiled = onnx_lrp.compile(_path("lstm_2l_bf_state_nobias"), "epsilon", epsilon=1e-9, stabilizer=1e-9)
    out = _run(compiled, {"x": x, "h0": h0, "c0": c0}, np.full(4, -1, np.int64))
    total = sum(out[f"relevance_{n}"].sum(axis=tuple(range(1, 3))) if n == "x" else
                out[f"relevance_{n}"].sum(axis=(0, 2)) for n in ("x", "h0", "c0"))
    explained = out["logits"].max(axis=1)
    assert np.abs(out["relevance_h0"]).max() > 0 and np.abs(out["relevance_c0"]).max() > 0
    np.testing.assert_allclose(total, explained, atol=1e-4 * np.abs(explained).max())


def _lstm_graph(T=4, direction="forward", layout=0, peepholes=False, lens=None, initial=False):
    """A hand-built ONNX LSTM exercising the op's options torch never writes."""
    rng = np.random.default_rng(1)
    D, I, H = (2 if direction == "bidirectional" else 1), 3, 4
    inits = [helper.make_tensor(n, 1, a.shape, a.ravel()) for n, a in (
        ("W", rng.normal(size=(D, 4 * H, I)).astype(np.float32)),
        ("R", rng.normal(size=(D, 4 * H, H)).astype(np.float32)),
        ("B", rng.normal(size=(D, 8 * H)).astype(np.float32)),
        ("P", rng.normal(size=(D, 3 * H)).astype(np.float32)),
        ("fc", rng.normal(size=(D * H, 2)).astype(np.float32)))]
    inits.append(helper.make_tensor("lens", 6, [2], np.full(2, T if lens is None else lens, np.int32)))
    x_shape = [2, T, I] if layout else [T, 2, I]
    inputs = [helper.make_tensor_value_info("x", 1, x_shape)]
    states = ["", ""]
    if initial:
        shape = [2, D, H] if layout else [D, 2, H]
        inputs += [helper.make_tensor_value_info("h0", 1, shape), helper.make_tensor_value_info("c0", 1, shape)]
        states = ["h0", "c0"]
    lstm = helper.make_node("LSTM", ["x", "W", "R", "B", "lens" if lens is not None else "", *states,
                                     "P" if peepholes else ""], ["", "y_h"], hidden_size=H, direction=direction,
                            layout=layout)
    nodes = [lstm, helper.make_node("Flatten" if layout else "Transpose", ["y_h"], ["flat_or_t"],
                                    **({"axis": 1} if layout else {"perm": [1, 0, 2]}))]
    if not layout:
        nodes.append(helper.make_node("Flatten", ["flat_or_t"], ["flat"], axis=1))
    nodes.append(helper.make_node("MatMul", ["flat" if not layout else "flat_or_t", "fc"], ["logits"]))
    graph = helper.make_graph(nodes, "lstm", inputs, [helper.make_tensor_value_info("logits", 1, [2, 2])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.mark.parametrize("options", [dict(direction="reverse"), dict(direction="bidirectional", layout=1),
                                     dict(peepholes=True), dict(lens=4), dict(initial=True, layout=1)],
                         ids=["reverse", "bidirectional-layout1", "peepholes", "full-lengths", "initial-states"])
def test_unrolled_op_computes_the_op(options):
    """The unrolled cells compute what onnxruntime's LSTM op computes, for the options torch does not write."""
    model = _lstm_graph(**options)
    rng = np.random.default_rng(2)
    feeds = {i.name: rng.normal(size=[d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    if options.get("layout"):  # onnxruntime runs layout 0 only: the same op, time- and direction-first
        time_first = {k: v.transpose(1, 0, 2).copy() for k, v in feeds.items()}
        expected = _session(_lstm_graph(**dict(options, layout=0))).run(None, time_first)[0]
    else:
        expected = _session(model).run(None, feeds)[0]
    compiled = onnx_lrp.compile(model, "epsilon")
    got = _run(compiled, feeds, np.array([-1, 1], np.int64))
    np.testing.assert_allclose(got["logits"], expected, atol=1e-5)
    assert np.all(np.isfinite(got["relevance_x"])) and np.abs(got["relevance_x"]).max() > 0


def test_refusals_name_the_node_and_the_fix():
    model = _lstm_graph(lens=3)  # sequence_lens shorter than T
    with pytest.raises(onnx_lrp.OnnxLrpError, match="sequence_lens"):
        onnx_lrp.compile(model, "epsilon")
    model = _lstm_graph()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "T"
    with pytest.raises(onnx_lrp.OnnxLrpError, match="input-shape"):
        onnx_lrp.compile(model, "epsilon")


def test_pass_leaves_models_without_recurrence_alone():
    model = onnx.load(os.path.join(HERE, "..", "models", "digits_cnn.onnx"))
    before = [n.name for n in model.graph.node]
    UnrollRecurrent().run(model, [])
    assert [n.name for n in model.graph.node] == before


def test_state_batch_axis_from_the_open_dim():
    """A state [2, ?, 7] whose batch dim has no name: the one open dim is its batch (the error for a state with two
    open dims names the batch and the fix)."""
    model = onnx.load(_path("lstm_2l_bf_state"))
    for vi in model.graph.input[1:]:
        vi.type.tensor_type.shape.dim[1].Clear()
    compiled = onnx_lrp.compile(model, "epsilon")
    rng = np.random.default_rng(6)
    x, h0, c0 = (rng.normal(size=s).astype(np.float32) for s in ((3, 6, 5), (2, 3, 7), (2, 3, 7)))
    out = _run(compiled, {"x": x, "h0": h0, "c0": c0}, np.full(3, -1, np.int64))
    _, r_x, r_h0, _ = reference(onnx.load(_path("lstm_2l_bf_state")), x, np.full(3, -1), h0=h0, c0=c0)
    np.testing.assert_allclose(out["relevance_h0"], r_h0, atol=1e-5 * np.abs(r_x).max())
    model.graph.input[1].type.tensor_type.shape.dim[0].Clear()
    with pytest.raises(onnx_lrp.OnnxLrpError, match=r"input 'h0' has dims \[\?, \?, 7\].*--input-shape h0="):
        onnx_lrp.compile(model, "epsilon")
