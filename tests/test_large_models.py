"""Models over protobuf's 2 GB limit are written with external data. Tested with the threshold lowered; the real
2 GB case is shown by tools/demo_large_model.py (see docs/large-models.md)."""
import os

import numpy as np
import onnx
import onnxruntime as ort

import onnx_lrp
from onnx_lrp import save
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


def test_compile_verifies_an_oversized_model_through_external_data(monkeypatch, rng):
    """Over the limit, compile() cannot serialize the model for onnx.checker / onnxruntime: it verifies from a
    temporary file with external data instead."""
    calls = []
    original = save.write_model

    def spy(model, path, **kwargs):
        calls.append(path)
        return original(model, path, **kwargs)
    monkeypatch.setattr(save, "EXTERNAL_DATA_THRESHOLD", 1000)
    monkeypatch.setattr(save, "write_model", spy)
    compiled = onnx_lrp.compile(cnn(rng))
    assert len(calls) == 1 and calls[0].endswith("compiled.onnx")
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    assert np.isfinite(run(compiled, {"x": x, "target": np.zeros(2, np.int64)})["relevance_x"]).all()
