"""output_relevance (issue 17): the relevance of the explained output as a model input. One-hot it is `target`;
relevance is linear in it; it explains scores that are not [batch, classes] (a score per step), and
onnx_lrp.selection builds it from a short spec."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx_lrp
from onnx_lrp import selection

from numpy_recurrent import explain as recurrent_reference

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models")


def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


@pytest.mark.parametrize("composite,seed", [("epsilon-plus-flat", "logit"), ("epsilon-gamma-box", "one-hot"),
                                            ("epsilon", "logit")])
def test_one_hot_is_target_and_relevance_is_linear(composite, seed):
    path = os.path.join(ROOT, "minivgg_cifar10.onnx")
    options = dict(seed=seed, **({"low": -3, "high": 3} if composite == "epsilon-gamma-box" else {}))
    by_target = onnx_lrp.compile(path, composite, **options)
    by_tensor = onnx_lrp.compile(path, composite, output_relevance=True, **options)
    assert "target" not in [i.name for i in by_tensor.graph.input]
    (seed_input,) = [i for i in by_tensor.graph.input if i.name == "output_relevance"]
    assert seed_input.type.tensor_type.shape.dim[1].dim_value == 10
    x = np.random.default_rng(0).normal(size=(3, 3, 32, 32)).astype(np.float32)
    name = next(o.name for o in by_target.graph.output if o.name.startswith("relevance_"))
    results = {}
    for k in (2, 7):
        target = np.full(3, k, np.int64)
        expected = _run(by_target, {"input": x, "target": target})[name]
        scores = _run(by_tensor, {"input": x, "output_relevance": np.zeros((3, 10), np.float32)})
        got = _run(by_tensor, {"input": x, "output_relevance": selection.one_hot(scores[by_target.graph.output[0]
                                                                                         .name], target)})[name]
        np.testing.assert_allclose(got, expected, atol=1e-6 * np.abs(expected).max())
        results[k] = got
    both = np.zeros((3, 10), np.float32)
    both[:, [2, 7]] = 1
    summed = _run(by_tensor, {"input": x, "output_relevance": both})[name]
    np.testing.assert_allclose(summed, results[2] + results[7], atol=1e-6 * np.abs(summed).max())
    contrast = _run(by_tensor, {"input": x, "output_relevance": both * np.array([0] * 2 + [1] + [0] * 4 + [-1] +
                                                                                [0] * 2, np.float32)})[name]
    np.testing.assert_allclose(contrast, results[2] - results[7], atol=1e-6 * np.abs(contrast).max())


@pytest.mark.parametrize("name", ["lstm_per_step_bf", "gru_per_step_bf"])
@pytest.mark.parametrize("spec", ["4,max", "*,1", "max,0"])
def test_a_score_per_step(name, spec):
    """A recognizer's [N, T, classes] scores: target refuses with the way forward; output_relevance explains any
    step and class, equal to the numpy reference of Arras et al.'s rules."""
    path = os.path.join(ROOT, "recurrent", f"{name}.onnx")
    with pytest.raises(onnx_lrp.OnnxLrpError, match="--output-relevance"):
        onnx_lrp.compile(path, "epsilon")
    compiled = onnx_lrp.compile(path, "epsilon", output_relevance=True)
    x = np.random.default_rng(4).normal(size=(3, 6, 5)).astype(np.float32)
    scores = _run(compiled, {"x": x, "output_relevance": np.zeros((3, 6, 3), np.float32)})["logits"]
    chosen = selection.select(scores, spec)
    got = _run(compiled, {"x": x, "output_relevance": chosen})
    _, r_x, _, _ = recurrent_reference(onnx.load(path), x, None, output_relevance=chosen)
    np.testing.assert_allclose(got["relevance_x"], r_x, atol=1e-5 * np.abs(r_x).max())


def test_selection_specs():
    s = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    s[1, 2, 5] = -1  # per sample: the best of row 2 is then column 4
    picked = selection.select(s, "2,max")
    assert picked.shape == s.shape and picked.sum() == 2
    assert picked[0, 2, 5] == 1 and picked[1, 2, 4] == 1
    box = selection.select(s, "1,max:0:3")
    assert box[0, 1, 2] == 1 and box.sum() == 2
    joint = selection.select(s, "max,max")
    assert joint[0, 3, 5] == 1 and joint.sum() == 2
    assert selection.select(s, "*,1").sum() == 8
    masked = selection.select(s, "-1,*", mask=np.arange(6))
    np.testing.assert_array_equal(masked[1, 3], np.arange(6))
    np.testing.assert_array_equal(selection.one_hot(s[:, 0], [-1, 2]), np.eye(6)[[5, 2]])
    time_first = selection.select(s.transpose(1, 0, 2), "2,max", batch_axis=1)
    np.testing.assert_array_equal(time_first, picked.transpose(1, 0, 2))
    for bad in ("1", "1,2,3", "x,1", "9,1"):
        with pytest.raises(onnx_lrp.OnnxLrpError, match="selection"):
            selection.select(s, bad)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="mask"):
        selection.select(s, "1,*", mask=np.ones(5))


def test_an_inner_tensor_leaves_other_branches_out():
    """A detector's output concatenates decoded boxes (here through an op with no rule) and class scores: explaining
    the class-score tensor (--output on a tensor that is no model output) leaves the box branch out, and the
    compiled model outputs the explained scores after its own outputs."""
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(size=(4, 8)).astype(np.float32), "w"),
             numpy_helper.from_array(np.array([4, 4], np.int64), "split")]
    nodes = [helper.make_node("MatMul", ["x", "w"], ["head"], name="head"),
             helper.make_node("Split", ["head", "split"], ["box_raw", "cls_raw"], axis=1, name="split"),
             helper.make_node("Hardmax", ["box_raw"], ["boxes"], name="decode_boxes"),
             helper.make_node("Sigmoid", ["cls_raw"], ["scores"], name="class_scores"),
             helper.make_node("Concat", ["boxes", "scores"], ["detections"], axis=1, name="concat")]
    graph = helper.make_graph(nodes, "det", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["N", 8])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="decode_boxes"):
        onnx_lrp.compile(model, "epsilon", output_relevance=True)
    notes = []
    compiled = onnx_lrp.compile(model, "epsilon", output="cls_raw", notes=notes)
    assert any("no model output" in n for n in notes)
    assert [o.name for o in compiled.graph.output] == ["detections", "cls_raw", "relevance_x"]
    x = rng.normal(size=(3, 4)).astype(np.float32)
    out = _run(compiled, {"x": x, "target": np.full(3, -1, np.int64)})
    w = numpy_helper.to_array(inits[0]).astype(np.float64)
    z = x @ w[:, 4:]
    chosen = z.argmax(1)
    stabilized = z + 1e-6 * (np.sign(z) + (z == 0))
    expected = x * ((np.eye(4)[chosen] * z / stabilized) @ w[:, 4:].T)  # epsilon on the class columns
    np.testing.assert_allclose(out["relevance_x"], expected, atol=1e-5 * np.abs(expected).max())
