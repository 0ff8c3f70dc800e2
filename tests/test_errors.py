"""Bad input fails cleanly: one OnnxLrpError from the API, the same message and exit 2 from the command line,
no traceback, no file written, the input untouched. One test per case."""
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

import onnx_lrp
from builders import make_model, mlp
from conftest import MODELS, run


def cli(*args):
    return subprocess.run([sys.executable, "-m", "onnx_lrp.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def assert_clean_failure(path, expected, *extra, tmp_path=None):
    """The API raises OnnxLrpError naming the file; the CLI exits 2 with the same message and writes nothing."""
    kwargs = {}
    for item in extra:
        key, _, value = item.lstrip("-").partition("=")
        if key == "rule":
            kwargs.setdefault("rules", []).append(value)
        else:
            kwargs[key] = _value(value)
    folder = tmp_path or os.path.dirname(os.path.abspath(path))
    before = sorted(os.listdir(folder))
    with pytest.raises(onnx_lrp.OnnxLrpError) as info:
        onnx_lrp.compile(str(path), **kwargs)
    assert expected in str(info.value) and str(path) in str(info.value)
    result = cli("compile", path, *[a for item in extra for a in item.split("=", 1)])
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("onnx-lrp: error: ") and expected in result.stderr
    assert "Traceback" not in result.stderr and str(path) in result.stderr
    assert sorted(os.listdir(folder)) == before


def _value(v):
    try:
        return float(v)
    except ValueError:
        return v


@pytest.fixture
def model_path(tmp_path):
    path = tmp_path / "model.onnx"
    shutil.copy(f"{MODELS}/mlp_tabular.onnx", path)
    return path


def save(tmp_path, model, name="model.onnx"):
    path = tmp_path / name
    onnx.save(model, path)
    return path


def test_missing_file(tmp_path):
    assert_clean_failure(tmp_path / "missing.onnx", "file not found")


def test_empty_file(tmp_path):
    (tmp_path / "empty.onnx").write_bytes(b"")
    assert_clean_failure(tmp_path / "empty.onnx", "file is empty")


def test_random_bytes(tmp_path):
    (tmp_path / "random.onnx").write_bytes(np.random.default_rng(1).bytes(4096))
    assert_clean_failure(tmp_path / "random.onnx", "cannot be parsed as an ONNX model")


def test_truncated_file(tmp_path):
    data = open(f"{MODELS}/minivgg_cifar10.onnx", "rb").read()
    (tmp_path / "truncated.onnx").write_bytes(data[: len(data) // 2])
    assert_clean_failure(tmp_path / "truncated.onnx", "cannot be parsed as an ONNX model")


def test_not_an_onnx_file(tmp_path):
    (tmp_path / "readme.onnx").write_text("# this is a markdown file\n" * 20)
    assert_clean_failure(tmp_path / "readme.onnx", "ONNX model")


def test_a_folder(tmp_path):
    (tmp_path / "dir.onnx").mkdir()
    assert_clean_failure(tmp_path / "dir.onnx", "is a folder")


def test_unsupported_ops_listed_at_once(tmp_path, rng):
    w = {"w": rng.normal(size=(4, 4)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
             helper.make_node("Hardmax", ["h"], ["e"], name="first_bad"),
             helper.make_node("LpNormalization", ["e"], ["logits"], name="second_bad")]
    path = save(tmp_path, make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                                     [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], w))
    assert_clean_failure(path, "2 node(s) cannot be compiled")
    message = cli("compile", path).stderr
    assert "'first_bad' (op ai.onnx::Hardmax)" in message and "'second_bad' (op ai.onnx::LpNormalization)" in message


def test_unsupported_op_in_a_gate_branch_blocks_nothing(rng):
    """A gate takes no relevance, so an op without a rule inside the gate's branch receives none and is left as it
    is (issue 17); the same op on the signal path is still refused."""
    w = {"w": rng.normal(size=(4, 4)).astype(np.float32), "w2": rng.normal(size=(4, 3)).astype(np.float32)}
    def model(gated):
        nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
                 helper.make_node("Hardmax", ["h"], ["hard"], name="no_rule"),
                 helper.make_node("Sigmoid", ["hard" if gated else "h"], ["gate"], name="gate"),
                 helper.make_node("Mul", ["h" if gated else "hard", "gate"], ["gated"], name="product"),
                 helper.make_node("MatMul", ["gated", "w2"], ["logits"], name="head")]
        return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])], w)
    compiled = onnx_lrp.compile(model(gated=True), "epsilon")
    assert any(o.name == "relevance_x" for o in compiled.graph.output)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="no_rule"):
        onnx_lrp.compile(model(gated=False), "epsilon")


@pytest.mark.parametrize("op", ["If", "Loop", "Scan"])
def test_control_flow(tmp_path, rng, op):
    body_out = helper.make_tensor_value_info("b_out", TensorProto.FLOAT, ["N", 4])
    if op == "If":
        branch = helper.make_graph([helper.make_node("Identity", ["h"], ["b_out"])], "branch", [], [body_out])
        node = helper.make_node("If", ["cond"], ["logits"], name="control", then_branch=branch, else_branch=branch)
        extra = {}  # the condition is an input (an If on a constant is inlined: tests/test_input_values.py)
    elif op == "Loop":
        body = helper.make_graph(
            [helper.make_node("Identity", ["c_in"], ["c_out"]), helper.make_node("Relu", ["s_in"], ["s_out"])],
            "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                     helper.make_tensor_value_info("c_in", TensorProto.BOOL, []),
                     helper.make_tensor_value_info("s_in", TensorProto.FLOAT, ["N", 4])],
            [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []),
             helper.make_tensor_value_info("s_out", TensorProto.FLOAT, ["N", 4])])
        node = helper.make_node("Loop", ["trip", "cond", "h"], ["logits"], name="control", body=body)
        extra = {"trip": np.array(2, np.int64), "cond": np.array(True)}
    else:
        body = helper.make_graph([helper.make_node("Relu", ["s_in"], ["s_out"])], "body",
                                 [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, ["N", 4])],
                                 [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, ["N", 4])])
        node = helper.make_node("Scan", ["h"], ["logits"], name="control", body=body, num_scan_inputs=0)
        extra = {}
    weights = {"w": rng.normal(size=(4, 4)).astype(np.float32), **extra}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"), node]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])]
    if op == "If":
        inputs.append(helper.make_tensor_value_info("cond", TensorProto.BOOL, []))
    model = make_model(nodes, inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], weights)
    path = save(tmp_path, model)
    with pytest.raises(onnx_lrp.OnnxLrpError) as info:
        onnx_lrp.compile(str(path))
    assert "'control'" in str(info.value) and op in str(info.value)
    result = cli("compile", path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "'control'" in result.stderr


def test_unknown_op_domain(tmp_path, rng):
    w = {"w": rng.normal(size=(4, 4)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w"], ["h"], name="dense"),
             helper.make_node("FancyAct", ["h"], ["logits"], name="custom", domain="com.example")]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])], w)
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    path = save(tmp_path, model)
    assert_clean_failure(path, "op domain 'com.example' is not supported")


def test_external_data_outside_the_model_folder_is_refused_unread(tmp_path, rng):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(16, np.float32).tobytes())
    os.chmod(secret, 0o000)  # reading it would fail loudly; refusing must not read it at all
    folder = tmp_path / "models"
    folder.mkdir()
    model = mlp(rng, features=4)
    w = next(i for i in model.graph.initializer if i.name == "w1")
    w.ClearField("float_data")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    w.external_data.extend([onnx.StringStringEntryProto(key="location", value="../secret.bin")])
    path = folder / "model.onnx"
    path.write_bytes(model.SerializeToString())
    try:
        assert_clean_failure(path, "outside the model's folder")
    finally:
        os.chmod(secret, 0o600)


def test_external_data_inside_the_folder_loads(tmp_path, rng):
    model = mlp(rng, features=64)
    onnx.save_model(model, tmp_path / "ext.onnx", save_as_external_data=True, location="ext.data",
                    size_threshold=16)
    assert (tmp_path / "ext.data").exists()
    compiled = onnx_lrp.compile(str(tmp_path / "ext.onnx"))
    x = rng.normal(size=(2, 64)).astype(np.float32)
    assert np.isfinite(run(compiled, {"x": x, "target": np.zeros(2, np.int64)})["relevance_x"]).all()


def test_output_folder_that_does_not_exist(model_path, tmp_path):
    result = cli("compile", model_path, "-o", tmp_path / "nowhere" / "out.onnx")
    assert result.returncode == 2 and "does not exist" in result.stderr and "Traceback" not in result.stderr


def test_output_equal_to_input_is_refused(model_path):
    before = model_path.read_bytes()
    for out in (model_path, model_path.parent / "." / model_path.name):
        result = cli("compile", model_path, "-o", out)
        assert result.returncode == 2 and "never overwrites its input" in result.stderr
    assert model_path.read_bytes() == before


def test_unknown_composite(model_path):
    assert_clean_failure(model_path, "unknown composite 'epsilon-banana'", "--composite=epsilon-banana")


def test_unknown_rule(model_path):
    assert_clean_failure(model_path, "unknown rule 'banana'", "--rule=Gemm=banana")


def test_alpha_minus_beta_not_one(model_path):
    assert_clean_failure(model_path, "alpha - beta must equal 1", "--rule=Gemm=alpha-beta:alpha=3,beta=1")


def test_negative_epsilon(model_path):
    assert_clean_failure(model_path, "epsilon must be positive", "--epsilon=-0.1")


def test_zbox_without_bounds(tmp_path):
    path = tmp_path / "cnn.onnx"
    shutil.copy(f"{MODELS}/minivgg_cifar10.onnx", path)
    assert_clean_failure(path, "z-box needs both bounds", "--composite=epsilon-gamma-box")


def test_zbox_rule_without_bounds(model_path):
    assert_clean_failure(model_path, "z-box needs both bounds", "--rule=Gemm=z-box")


def test_rule_pattern_matching_nothing(model_path):
    assert_clean_failure(model_path, "matches no linear node", "--rule=conv_*=gamma")


def test_output_pattern_matching_nothing(model_path):
    assert_clean_failure(model_path, "matches no model output", "--output=scores")


def test_explained_output_not_float(tmp_path, rng):
    model = mlp(rng)
    model.graph.node.append(helper.make_node("ArgMax", ["logits"], ["label"], name="argmax", axis=1, keepdims=0))
    model.graph.output.insert(0, helper.make_tensor_value_info("label", TensorProto.INT64, ["N"]))
    path = save(tmp_path, model)
    assert_clean_failure(path, "is not a float tensor", "--output=label")
    compiled = onnx_lrp.compile(str(path))  # without --output the first float output is explained
    assert [o.name for o in compiled.graph.output] == ["label", "logits", "relevance_x"]


def test_api_wraps_internal_errors(monkeypatch, model_path):
    """A bug inside onnx-lrp still reaches the API user as OnnxLrpError, with the cause chained."""
    from onnx_lrp import compiler

    def broken(*args, **kwargs):
        raise KeyError("boom")
    monkeypatch.setattr(compiler, "make_plan", broken)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="internal error") as info:
        onnx_lrp.compile(str(model_path))
    assert isinstance(info.value.__cause__, KeyError)
