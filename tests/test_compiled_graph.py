"""The compiled model's contract (../shared/design.md): interface, standard ops only, versions, seed, metadata."""
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnx_lrp
from onnx_lrp.compiler import max_runtime_ir_version
from builders import cnn, make_model, mlp
from conftest import MODELS, run


def test_interface_and_standard_ops(rng):
    model = cnn(rng)
    compiled = onnx_lrp.compile(model)
    onnx.checker.check_model(compiled, full_check=True)
    assert {n.domain for n in compiled.graph.node} <= {"", "ai.onnx"}
    assert all(i.version >= 16 for i in compiled.opset_import if i.domain in ("", "ai.onnx"))
    assert compiled.ir_version <= max_runtime_ir_version()
    inputs = [(i.name, i.type.tensor_type.elem_type) for i in compiled.graph.input]
    assert inputs == [("x", TensorProto.FLOAT), ("target", TensorProto.INT64)]
    assert [o.name for o in compiled.graph.output] == ["logits", "relevance_x"]
    rel = compiled.graph.output[1].type.tensor_type
    assert rel.elem_type == TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in rel.shape.dim] == ["N", 3, 16, 16]
    assert compiled.graph.input[1].type.tensor_type.shape.dim[0].dim_param == "N"
    # every generated node lives under <node>/lrp/
    forward = {n.name for n in model.graph.node}
    generated = [n.name for n in compiled.graph.node if n.name not in forward]
    assert generated and all("/lrp/" in name for name in generated)


def test_forward_outputs_are_unchanged(rng):
    model = cnn(rng)
    x = rng.normal(size=(5, 3, 16, 16)).astype(np.float32)
    plain = onnx_lrp.compile(model)  # the original outputs, computed by the same graph
    import onnxruntime as ort
    original = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    out = run(plain, {"x": x, "target": np.zeros(5, np.int64)})
    np.testing.assert_allclose(out["logits"], original[0], rtol=1e-6, atol=1e-6)


def test_negative_target_explains_the_top_class(rng):
    compiled = onnx_lrp.compile(cnn(rng))
    x = rng.normal(size=(6, 3, 16, 16)).astype(np.float32)
    top = run(compiled, {"x": x, "target": np.full(6, -1, np.int64)})
    explicit = run(compiled, {"x": x, "target": top["logits"].argmax(1).astype(np.int64)})
    np.testing.assert_array_equal(top["relevance_x"], explicit["relevance_x"])
    other = run(compiled, {"x": x, "target": (top["logits"].argmax(1) + 1).astype(np.int64) % 10})
    assert not np.allclose(other["relevance_x"], top["relevance_x"])


def test_target_outside_the_class_range_gives_zero_relevance(rng):
    """Documented behaviour: a target >= number of classes selects no class, so the relevance is all zero."""
    compiled = onnx_lrp.compile(mlp(rng), seed="one-hot")
    x = rng.normal(size=(3, 12)).astype(np.float32)
    out = run(compiled, {"x": x, "target": np.array([4, 100, 1], np.int64)})
    assert np.all(out["relevance_x"][:2] == 0)
    assert np.abs(out["relevance_x"][2]).sum() > 0


def test_metadata_records_the_plan(rng):
    compiled = onnx_lrp.compile(cnn(rng), "epsilon-plus-flat", rules=["dense2=epsilon:epsilon=0.01"])
    meta = {p.key: p.value for p in compiled.metadata_props}
    assert meta["onnx_lrp.version"] == onnx_lrp.__version__
    assert meta["onnx_lrp.composite"] == "epsilon-plus-flat"
    assert meta["onnx_lrp.seed"] == "logit"
    plan = {step["node"]: step["rule"] for step in json.loads(meta["onnx_lrp.plan"])}
    assert plan["conv1"].startswith("flat")  # the first linear layer, by graph order
    assert plan["conv2"].startswith("z-plus") and plan["conv3"].startswith("z-plus")
    assert plan["dense1"] == "epsilon(epsilon=1e-06)" and plan["dense2"] == "epsilon(epsilon=0.01)"
    assert plan["pool1"] == "winner-takes-all" and plan["pool2"] == "norm" and plan["relu1"] == "pass"


def test_first_layer_choice_follows_zennit(rng):
    """epsilon-gamma-box gives z-box only to a first *Conv* (an MLP gets none); the flat composites take the
    first Conv or dense layer."""
    def rules(model, composite):
        meta = {p.key: p.value for p in onnx_lrp.compile(model, composite, low=-3, high=3).metadata_props}
        return [s["rule"].split("(")[0] for s in json.loads(meta["onnx_lrp.plan"]) if s["op"] in
                ("Conv", "Gemm", "MatMul", "MatMul+Add")]
    assert rules(cnn(rng), "epsilon-gamma-box") == ["z-box", "gamma", "gamma", "epsilon", "epsilon"]
    assert rules(mlp(rng), "epsilon-gamma-box") == ["epsilon"] * 3
    assert rules(mlp(rng), "epsilon-alpha2-beta1-flat") == ["flat", "epsilon", "epsilon"]
    assert rules(cnn(rng), "epsilon-alpha2-beta1") == ["alpha-beta"] * 3 + ["epsilon"] * 2


def test_final_softmax_is_cut_and_said(rng):
    model = cnn(rng)
    model.graph.node.append(helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1))
    model.graph.output[0].name = "probs"
    notes = []
    compiled = onnx_lrp.compile(model, notes=notes, seed="one-hot")
    assert any("Softmax" in n and "'logits'" in n for n in notes)
    x = rng.normal(size=(4, 3, 16, 16)).astype(np.float32)
    out = run(compiled, {"x": x, "target": np.zeros(4, np.int64)})
    reference = run(onnx_lrp.compile(cnn(np.random.default_rng(0)), seed="one-hot"),
                    {"x": x, "target": np.zeros(4, np.int64)})
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out["relevance_x"], reference["relevance_x"], rtol=1e-5, atol=1e-8)


def test_unsupported_nodes_are_all_listed_at_once(rng):
    w = {"w": rng.normal(size=(4, 8)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
             helper.make_node("Hardmax", ["h"], ["e"], name="hardmax_node"),
             helper.make_node("LpNormalization", ["e"], ["n"], name="lpnorm_node"),
             helper.make_node("Mul", ["n", "h"], ["logits"], name="mul_of_two")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 8])], w)
    with pytest.raises(onnx_lrp.UnsupportedNodesError) as info:
        onnx_lrp.compile(model)
    message = str(info.value)
    for name, op in (("hardmax_node", "Hardmax"), ("lpnorm_node", "LpNormalization"), ("mul_of_two", "Mul")):
        assert f"'{name}'" in message and op in message
    assert len(info.value.nodes) == 3


def test_batchnorm_is_folded_and_a_lone_batchnorm_passes(rng):
    c = 3
    w = {"s": np.full(c, 2.0, np.float32), "b": np.full(c, 0.5, np.float32), "m": np.zeros(c, np.float32),
         "v": np.ones(c, np.float32), "w1": rng.normal(size=(4, c, 3, 3)).astype(np.float32),
         "w2": rng.normal(size=(2, 4)).astype(np.float32)}
    nodes = [helper.make_node("BatchNormalization", ["x", "s", "b", "m", "v"], ["bn0"], name="input_bn"),
             helper.make_node("Conv", ["bn0", "w1"], ["c1"], name="conv"),
             helper.make_node("BatchNormalization", ["c1", "bn_s", "bn_b", "bn_m", "bn_v"], ["bn1"], name="bn"),
             helper.make_node("GlobalAveragePool", ["bn1"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "w2"], ["logits"], name="dense", transB=1)]
    w.update({"bn_s": rng.uniform(0.5, 1.5, 4).astype(np.float32), "bn_b": rng.normal(size=4).astype(np.float32),
              "bn_m": rng.normal(size=4).astype(np.float32), "bn_v": rng.uniform(0.5, 1.5, 4).astype(np.float32)})
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 6, 6])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])], w)
    notes = []
    compiled = onnx_lrp.compile(model, "epsilon", notes=notes)
    assert any("'bn'" in n and "'conv'" in n for n in notes)
    assert [n.name for n in compiled.graph.node if n.op_type == "BatchNormalization"] == ["input_bn"]
    x = rng.normal(size=(2, c, 6, 6)).astype(np.float32)
    import onnxruntime as ort
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    out = run(compiled, {"x": x, "target": np.zeros(2, np.int64)})
    np.testing.assert_allclose(out["logits"], expected[0], rtol=1e-5, atol=1e-5)
    assert np.isfinite(out["relevance_x"]).all()


def test_ir_version_is_kept_and_old_opsets_are_upgraded(rng):
    model = mlp(rng)
    model.ir_version = 7
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", 13))
    compiled = onnx_lrp.compile(model)
    opset = next(i.version for i in compiled.opset_import if i.domain == "")
    assert opset >= 16 and compiled.ir_version == 8  # opset 17 needs IR >= 8
    model = mlp(rng)
    model.ir_version = 9
    assert onnx_lrp.compile(model).ir_version == 9
    model.ir_version = onnx.IR_VERSION  # newer than onnxruntime loads: lowered
    assert onnx_lrp.compile(model).ir_version == min(onnx.IR_VERSION, max_runtime_ir_version())


def test_auto_pad_same_conv_matches_explicit_pads(rng):
    def model(**conv_attrs):
        w = {"w": rng.normal(size=(4, 2, 3, 3)).astype(np.float32), "d": rng.normal(size=(3, 4 * 3 * 3))
             .astype(np.float32)}
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", strides=[2, 2], **conv_attrs),
                 helper.make_node("Flatten", ["c"], ["f"], name="flat"),
                 helper.make_node("Gemm", ["f", "d"], ["logits"], name="dense", transB=1)]
        return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 6, 6])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], w)
    rng_state = rng.bit_generator.state
    same = model(auto_pad="SAME_UPPER")
    rng.bit_generator.state = rng_state
    explicit = model(pads=[0, 0, 1, 1])  # total pad 1 per axis, the odd one at the end
    x = rng.normal(size=(2, 2, 6, 6)).astype(np.float32)
    feeds = {"x": x, "target": np.array([0, 2], np.int64)}
    a = run(onnx_lrp.compile(same, "epsilon-plus"), feeds)["relevance_x"]
    b = run(onnx_lrp.compile(explicit, "epsilon-plus"), feeds)["relevance_x"]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_shipped_models_compile_with_every_composite():
    for name in ("mlp_tabular", "minivgg_cifar10", "bn_avgpool_cnn", "conv1d_sequence"):
        for composite in onnx_lrp.COMPOSITES:
            onnx_lrp.compile(f"{MODELS}/{name}.onnx", composite, low=-3, high=3, verify=False)


def _dense_model(rng, nodes, inputs_shape, classes=3):
    w = {"w": rng.normal(size=(6, classes)).astype(np.float32), "c": rng.normal(size=classes).astype(np.float32)}
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, inputs_shape)],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], w)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-plus-flat"])
def test_gemm_trans_a_equals_plain_gemm(composite):
    plain = _dense_model(np.random.default_rng(3), [helper.make_node("Gemm", ["x", "w", "c"], ["logits"],
                                                                     name="fc", alpha=0.5, beta=2.0)], ["N", 6])
    trans = _dense_model(np.random.default_rng(3), [
        helper.make_node("Transpose", ["x"], ["xt"], name="to_columns", perm=[1, 0]),
        helper.make_node("Gemm", ["xt", "w", "c"], ["logits"], name="fc", transA=1, alpha=0.5, beta=2.0)],
        ["N", 6])
    x = np.random.default_rng(4).normal(size=(5, 6)).astype(np.float32)
    feeds = {"x": x, "target": np.array([0, 1, 2, -1, 0], np.int64)}
    a = run(onnx_lrp.compile(plain, composite), feeds)
    b = run(onnx_lrp.compile(trans, composite), feeds)
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-6)
    np.testing.assert_allclose(a["relevance_x"], b["relevance_x"], rtol=1e-5, atol=1e-7)
    assert np.abs(a["relevance_x"]).sum() > 0


def test_shape_ops_move_relevance_back_exactly(rng):
    """Reshape / Transpose / Squeeze / Unsqueeze / Flatten around a dense layer change nothing in the relevance."""
    plain = _dense_model(np.random.default_rng(5), [
        helper.make_node("Gemm", ["x", "w", "c"], ["logits"], name="fc")], ["N", 6])
    shapes = {"shape": np.array([0, 2, 3], np.int64), "ax": np.array([1], np.int64)}
    moved = _dense_model(np.random.default_rng(5), [
        helper.make_node("Reshape", ["x", "shape"], ["r"], name="reshape"),            # [N, 2, 3]
        helper.make_node("Transpose", ["r"], ["t"], name="transpose", perm=[0, 2, 1]),  # [N, 3, 2]
        helper.make_node("Unsqueeze", ["t", "ax"], ["u"], name="unsqueeze"),             # [N, 1, 3, 2]
        helper.make_node("Squeeze", ["u", "ax"], ["s"], name="squeeze"),                 # [N, 3, 2]
        helper.make_node("Transpose", ["s"], ["t2"], name="transpose_back", perm=[0, 2, 1]),
        helper.make_node("Flatten", ["t2"], ["f"], name="flatten"),                      # [N, 6]
        helper.make_node("Gemm", ["f", "w", "c"], ["logits"], name="fc")], ["N", 6])
    for k, v in shapes.items():
        moved.graph.initializer.append(onnx.numpy_helper.from_array(v, k))
    x = rng.normal(size=(4, 6)).astype(np.float32)
    feeds = {"x": x, "target": np.array([0, 1, 2, 1], np.int64)}
    a = run(onnx_lrp.compile(plain, "epsilon"), feeds)["relevance_x"]
    b = run(onnx_lrp.compile(moved, "epsilon"), feeds)["relevance_x"]
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8)


def test_residual_add_splits_relevance_by_the_norm_rule(rng):
    """Add of two activations: R_k = x_k * R / s(x_1 + x_2), then Epsilon through each branch (numpy reference)."""
    w1, w2 = rng.normal(size=(5, 3)).astype(np.float32), rng.normal(size=(5, 3)).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="branch1"),
             helper.make_node("MatMul", ["x", "w2"], ["h2"], name="branch2"),
             helper.make_node("Add", ["h1", "h2"], ["logits"], name="residual")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], {"w1": w1, "w2": w2})
    x = rng.normal(size=(4, 5)).astype(np.float32)
    target = np.array([0, 1, 2, 0])
    out = run(onnx_lrp.compile(model, "epsilon", seed="one-hot"), {"x": x, "target": target})

    def stab(z):
        return z + 1e-6 * np.where(z < 0, -1.0, 1.0)
    x64, h1, h2 = x.astype(np.float64), x @ w1.astype(np.float64), x @ w2.astype(np.float64)
    seed = np.eye(3)[target]
    r1, r2 = h1 * seed / stab(h1 + h2), h2 * seed / stab(h1 + h2)
    expected = x64 * ((r1 / stab(h1)) @ w1.T) + x64 * ((r2 / stab(h2)) @ w2.T)
    np.testing.assert_allclose(out["relevance_x"], expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())


def test_residual_block_conserves_relevance(rng):
    c = 4
    w = {"w0": (rng.normal(size=(c, 3, 3, 3)) * 0.3).astype(np.float32),
         "w1": (rng.normal(size=(c, c, 3, 3)) * 0.3).astype(np.float32),
         "w2": (rng.normal(size=(c, c, 3, 3)) * 0.3).astype(np.float32),
         "wd": rng.normal(size=(5, c)).astype(np.float32)}
    p = dict(pads=[1, 1, 1, 1])
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="stem", **p),
             helper.make_node("Relu", ["c0"], ["a0"], name="relu0"),
             helper.make_node("Conv", ["a0", "w1"], ["c1"], name="conv1", **p),
             helper.make_node("Relu", ["c1"], ["a1"], name="relu1"),
             helper.make_node("Conv", ["a1", "w2"], ["c2"], name="conv2", **p),
             helper.make_node("Add", ["c2", "a0"], ["s"], name="residual"),
             helper.make_node("Relu", ["s"], ["a2"], name="relu2"),
             helper.make_node("GlobalAveragePool", ["a2"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "wd"], ["logits"], name="fc", transB=1)]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 5])], w)
    x = rng.normal(size=(6, 3, 8, 8)).astype(np.float32)
    # Epsilon only: z-plus on conv2, whose signed output feeds the sum directly, drops the relevance of neurons
    # without positive contributions (as Zennit's ZPlus does), which is not conservative by design.
    out = run(onnx_lrp.compile(model, "epsilon", seed="one-hot"), {"x": x, "target": np.full(6, -1, np.int64)})
    np.testing.assert_allclose(out["relevance_x"].reshape(6, -1).sum(1), 1.0, atol=1e-3)


def test_norm_of_pooling_and_sums_uses_the_composite_stabilizer(rng):
    """Zennit's composites give their `stabilizer` to the Norm of pooling and Sum too (layer_map_base)."""
    nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"], name="gap"),
             helper.make_node("ReduceMean", ["x"], ["g2"], name="mean", axes=[2, 3], keepdims=1),
             helper.make_node("Add", ["g", "g2"], ["s"], name="sum"),
             helper.make_node("Flatten", ["s"], ["logits"], name="flatten")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 2, 2])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], {})
    x = (0.01 * rng.normal(size=(2, 3, 2, 2))).astype(np.float32)
    eps = 0.1
    out = run(onnx_lrp.compile(model, stabilizer=eps, seed="one-hot"), {"x": x, "target": np.array([0, 2])})

    def stab(z):
        return z + eps * np.where(z < 0, -1.0, 1.0)
    g = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
    seed = np.eye(3)[[0, 2]][:, :, None, None]
    r_g = g * seed / stab(2 * g)  # the sum of two equal pooled tensors gives each half
    expected = 2 * x * (r_g / stab(g)) / 4
    np.testing.assert_allclose(out["relevance_x"], expected, rtol=1e-5, atol=1e-9)
