"""--input-value (issue 17): a setting input pinned to a constant leaves the interface, and the Ifs it decides are
inlined (passes/control.py), so a model that branches on a sample rate compiles and explains like the branch it
takes."""
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp

RNG = np.random.default_rng(0)
W16, W8, W_OUT = (RNG.normal(size=s).astype(np.float32) for s in ((6, 5), (6, 5), (5, 3)))


def _dense(x, w, out, prefix):
    return [helper.make_node("MatMul", [x, w], [f"{prefix}_z"], name=f"{prefix}_matmul"),
            helper.make_node("Relu", [f"{prefix}_z"], [out], name=f"{prefix}_relu")]


def _branch(w_name, weight, label):
    """A branch that reads the outer `x` and has a Constant node and an initializer of its own."""
    nodes = [helper.make_node("Constant", [], ["scale"], value=numpy_helper.from_array(np.float32(1.0), "s")),
             helper.make_node("Mul", ["x", "scale"], ["scaled"])] + _dense("scaled", w_name, "hidden", label)
    return helper.make_graph(nodes, label, [], [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, None)],
                             [numpy_helper.from_array(weight, w_name)])


def _model(with_if=True):
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])]
    inits = [numpy_helper.from_array(W_OUT, "w_out"), numpy_helper.from_array(np.array(16000, np.int64), "rate16")]
    if with_if:
        inputs.append(helper.make_tensor_value_info("sr", TensorProto.INT64, []))
        nodes = [helper.make_node("Equal", ["sr", "rate16"], ["is16"], name="is_16k"),
                 helper.make_node("If", ["is16"], ["hidden"], name="by_rate",
                                  then_branch=_branch("w16", W16, "then"), else_branch=_branch("w8", W8, "else"))]
    else:
        inits.append(numpy_helper.from_array(W16, "w16"))
        nodes = _dense("x", "w16", "hidden", "plain")
    nodes.append(helper.make_node("MatMul", ["hidden", "w_out"], ["logits"], name="head"))
    graph = helper.make_graph(nodes, "rate", inputs, [helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                                                    ["N", 3])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _run(model, feeds):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))


def test_pinned_setting_inlines_the_branch():
    x = RNG.normal(size=(4, 6)).astype(np.float32)
    target = np.array([-1, 0, 1, 2], np.int64)
    notes = []
    pinned = onnx_lrp.compile(_model(), "epsilon", input_values={"sr": 16000}, notes=notes)
    assert [i.name for i in pinned.graph.input] == ["x", "target"]
    assert not any(n.op_type == "If" for n in pinned.graph.node)
    assert any("pinned" in n for n in notes) and any("then branch" in n for n in notes)
    plain = onnx_lrp.compile(_model(with_if=False), "epsilon")
    got, expected = _run(pinned, {"x": x, "target": target}), _run(plain, {"x": x, "target": target})
    original = _run(_model(), {"x": x, "sr": np.array(16000, np.int64)})["logits"]
    np.testing.assert_allclose(got["logits"], original, atol=1e-6)
    np.testing.assert_allclose(got["relevance_x"], expected["relevance_x"], atol=1e-6)
    other = onnx_lrp.compile(_model(), "epsilon", input_values={"sr": 8000})
    np.testing.assert_allclose(_run(other, {"x": x, "target": target})["logits"],
                               _run(_model(), {"x": x, "sr": np.array(8000, np.int64)})["logits"], atol=1e-6)


def test_unpinned_if_says_how_to_pin_it():
    with pytest.raises(onnx_lrp.OnnxLrpError, match="--input-value"):
        onnx_lrp.compile(_model(), "epsilon")


@pytest.mark.parametrize("values,message", [({"rate": 1}, "not a model input"), ({"sr": "fast"}, "does not fit"),
                                            ({"sr": [1, 2]}, "value")])
def test_bad_pins_are_named(values, message):
    with pytest.raises(onnx_lrp.OnnxLrpError, match=message):
        onnx_lrp.compile(_model(), "epsilon", input_values=values)


def test_cli_pins_and_takes_output_relevance(tmp_path):
    """`onnx-lrp compile --input-value sr=16000 --output-relevance`: the compiled file takes x and output_relevance."""
    import subprocess
    import sys

    import onnx
    path, out = tmp_path / "rate.onnx", tmp_path / "rate.lrp.onnx"
    onnx.save(_model(), path)
    run = subprocess.run([sys.executable, "-m", "onnx_lrp.cli", "compile", str(path), "-o", str(out), "--composite",
                          "epsilon", "--input-value", "sr=16000", "--output-relevance"], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "pinned" in run.stderr
    compiled = onnx.load(out)
    assert [i.name for i in compiled.graph.input] == ["x", "output_relevance"]
    x = RNG.normal(size=(2, 6)).astype(np.float32)
    seed = np.zeros((2, 3), np.float32)
    seed[:, 1] = 1
    by_tensor = _run(compiled, {"x": x, "output_relevance": seed})["relevance_x"]
    by_target = _run(onnx_lrp.compile(_model(), "epsilon", input_values={"sr": 16000}),
                     {"x": x, "target": np.array([1, 1], np.int64)})["relevance_x"]
    np.testing.assert_allclose(by_tensor, by_target, atol=1e-6)
    bad = subprocess.run([sys.executable, "-m", "onnx_lrp.cli", "compile", str(path), "-o", str(out),
                          "--input-value", "sr"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--input-value 'sr'" in bad.stderr and "Traceback" not in bad.stderr
