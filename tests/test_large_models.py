"""Models over protobuf's 2 GB limit are written with external data. Tested with the threshold lowered; the real
2 GB case is shown by tools/demo_large_model.py (see docs/large-models.md)."""
import os

import numpy as np
import onnx
import onnxruntime as ort

import onnx_lrp
from builders import cnn
from conftest import run


def test_write_model_uses_external_data_over_the_threshold(tmp_path, rng):
    compiled = onnx_lrp.compile(cnn(rng))
    before = compiled.SerializeToString()
    files = onnx_lrp.write_model(compiled, tmp_path / "big.lrp.onnx", external_data_threshold=1000)
    assert [os.path.basename(f) for f in files] == ["big.lrp.onnx", "big.lrp.onnx.data"]
    assert sorted(os.listdir(tmp_path)) == ["big.lrp.onnx", "big.lrp.onnx.data"]  # no temporary files left
    written = onnx.load(str(tmp_path / "big.lrp.onnx"), load_external_data=False)
    large = [t for t in written.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL or t.raw_data]
    assert large and all(t.data_location == onnx.TensorProto.EXTERNAL for t in large if len(t.raw_data) >= 1000)
    assert {"w2", "w3", "w4"} <= {t.name for t in large if t.data_location == onnx.TensorProto.EXTERNAL}
    assert compiled.SerializeToString() == before  # the caller's model is unchanged
    onnx.checker.check_model(str(tmp_path / "big.lrp.onnx"), full_check=True)
    x = rng.normal(size=(3, 3, 16, 16)).astype(np.float32)
    feeds = {"x": x, "target": np.array([0, 1, -1], np.int64)}
    session = ort.InferenceSession(str(tmp_path / "big.lrp.onnx"), providers=["CPUExecutionProvider"])
    from_file = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    in_memory = run(compiled, feeds)
    np.testing.assert_array_equal(from_file["relevance_x"], in_memory["relevance_x"])


def test_small_models_stay_in_one_file(tmp_path, rng):
    files = onnx_lrp.write_model(onnx_lrp.compile(cnn(rng)), tmp_path / "small.onnx")
    assert [os.path.basename(f) for f in files] == ["small.onnx"] and os.listdir(tmp_path) == ["small.onnx"]


def test_compile_verifies_the_graph_without_serializing_the_weights(monkeypatch, rng):
    """compile() checks its output with onnx.checker and an onnxruntime session on a copy whose weights are typed
    inputs: no copy of hundreds of MB of weights, and nothing to split into external data over 2 GB."""
    from onnx_lrp import compiler
    checked = []
    real_check = onnx.checker.check_model
    monkeypatch.setattr(compiler.onnx.checker, "check_model",
                        lambda model, **kw: (checked.append(model), real_check(model, **kw))[1])
    compiled = onnx_lrp.compile(cnn(rng))
    light = [m for m in checked if isinstance(m, onnx.ModelProto) and "target" in {i.name for i in m.graph.input}][-1]
    assert all(np.prod(t.dims) <= 64 for t in light.graph.initializer)
    assert {"w2", "w3"} <= {i.name for i in light.graph.input}  # the weights, as typed inputs
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    assert np.isfinite(run(compiled, {"x": x, "target": np.zeros(2, np.int64)})["relevance_x"]).all()