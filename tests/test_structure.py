"""The structural clean-up on onnx-ir (passes/structure.py): what it removes, lifts and names, that the interface
and the weights come through untouched, and that the compiled model still computes the original."""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from builders import make_model
from conftest import run
from onnx_lrp.passes.structure import CleanStructure


def messy_mlp(rng):
    """x -> Identity -> MatMul(w1) + Constant bias -> Relu -> Dropout (mask unused) -> unnamed MatMul(w2) ->
    Dropout (mask is an output) -> Identity -> logits; plus a dead branch and an unused initializer; IR 3, with the
    initializers listed among the graph inputs."""
    w1, w2 = rng.normal(size=(6, 5)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Identity", ["x"], ["x_copy"], name="copy"),
        helper.make_node("MatMul", ["x_copy", "w1"], ["h"], name="dense1"),
        helper.make_node("Constant", [], ["b1"], name="bias1", value_floats=[0.1, -0.2, 0.3, 0.0, 0.5]),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="dense1_bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu"),
        helper.make_node("Dropout", ["r"], ["d", "unused_mask"], name="dropout1"),
        helper.make_node("MatMul", ["d", "w2"], ["o"]),
        helper.make_node("Dropout", ["o"], ["o_dropped", "mask"], name="dropout2"),
        helper.make_node("Identity", ["o_dropped"], ["logits"], name="last"),
        helper.make_node("Sigmoid", ["x"], ["dead"], name="dead_branch"),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3]),
               helper.make_tensor_value_info("mask", TensorProto.BOOL, ["N", 3])]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])], outputs,
                       {"w1": w1, "w2": w2, "unused": np.ones(4, np.float32)}, ir_version=3)
    model.graph.input.extend(helper.make_tensor_value_info(i.name, i.data_type, list(i.dims))
                             for i in model.graph.initializer)
    return model


def test_clean_structure(rng):
    model = messy_mlp(rng)
    weights = {i.name: i.raw_data for i in model.graph.initializer}
    CleanStructure().run(model, [])
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Identity") == 1  # only the one that writes a graph output stays (the interface keeps its name)
    assert ops.count("Dropout") == 1  # the one whose mask is an output
    assert "Constant" not in ops and "Sigmoid" not in ops  # lifted; dead
    assert [i.name for i in model.graph.input] == ["x"] and model.ir_version >= 4
    assert [o.name for o in model.graph.output] == ["logits", "mask"]
    names = [n.name for n in model.graph.node]
    assert all(names) and len(set(names)) == len(names) and "MatMul" in names  # unnamed: named after its op
    initializers = {i.name: i for i in model.graph.initializer}
    assert "unused" not in initializers
    np.testing.assert_array_equal(numpy_helper.to_array(initializers["b1"]),
                                  np.array([0.1, -0.2, 0.3, 0.0, 0.5], np.float32))
    for name in ("w1", "w2"):  # the weights are the model's own tensors, bytes unchanged
        assert initializers[name].raw_data == weights[name]
    onnx.checker.check_model(model)


def test_the_same_function_written_plainly_gets_the_same_relevance(rng):
    """The messy spelling and a plain MatMul-Add-Relu-MatMul with the same weights: the same logits and relevance."""
    model = messy_mlp(rng)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    bias = np.array([0.1, -0.2, 0.3, 0.0, 0.5], np.float32)
    plain = make_model(
        [helper.make_node("MatMul", ["x", "w1"], ["h"], name="dense1"),
         helper.make_node("Add", ["h", "b1"], ["hb"], name="dense1_bias"),
         helper.make_node("Relu", ["hb"], ["r"], name="relu"),
         helper.make_node("MatMul", ["r", "w2"], ["logits"], name="dense2")],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        {"w1": weights["w1"], "w2": weights["w2"], "b1": bias})
    x = rng.normal(size=(4, 6)).astype(np.float32)
    feeds = {"x": x, "target": np.array([-1, 0, 1, 2], np.int64)}
    for composite in ("epsilon", "epsilon-plus-flat"):
        ours = run(onnx_lrp.compile(model, composite), feeds)
        reference = run(onnx_lrp.compile(plain, composite), feeds)
        np.testing.assert_allclose(ours["logits"], reference["logits"], rtol=1e-6)
        np.testing.assert_allclose(ours["relevance_x"], reference["relevance_x"], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(ours["mask"], run(model, {"x": x})["mask"])
