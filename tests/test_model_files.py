"""Old and odd files: opsets 8 to 21 and IR versions 3 to 10 compile to the same relevance; IR 3's initializers
listed as graph inputs are taken for weights; a fixed batch of 1 is kept."""
import numpy as np
import pytest
from onnx import helper

import onnx_lrp
from builders import cnn, mlp
from conftest import run

# (opset, IR version) pairs as exporters of each era wrote them
FILES = [(8, 3), (9, 4), (10, 5), (11, 6), (12, 7), (13, 7), (14, 7), (15, 8), (17, 9), (19, 9), (21, 10)]


def as_file(model, opset, ir):
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", opset))
    model.ir_version = ir
    if ir < 4:  # IR 3: every initializer is also a graph input
        for init in model.graph.initializer:
            model.graph.input.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
    return model


@pytest.mark.parametrize("build", [cnn, mlp], ids=["cnn", "mlp"])
@pytest.mark.parametrize("opset,ir", FILES)
def test_old_opsets_and_ir_versions_give_the_same_relevance(build, opset, ir):
    reference = onnx_lrp.compile(build(np.random.default_rng(3)), "epsilon-gamma-box", low=-3, high=3)
    compiled = onnx_lrp.compile(as_file(build(np.random.default_rng(3)), opset, ir), "epsilon-gamma-box",
                                low=-3, high=3)
    assert [i.name for i in compiled.graph.input] == ["x", "target"]  # IR 3's weight inputs are weights
    assert compiled.ir_version >= max(ir, 8)
    shape = [d.dim_value or 4 for d in reference.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(4).normal(size=shape).astype(np.float32)
    feeds = {"x": x, "target": np.array([-1] * shape[0], np.int64)}
    expected, ours = run(reference, feeds), run(compiled, feeds)
    np.testing.assert_allclose(ours["logits"], expected["logits"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ours["relevance_x"], expected["relevance_x"], rtol=1e-4,
                               atol=1e-5 * np.abs(expected["relevance_x"]).max())


def test_fixed_batch_of_one_is_kept(rng):
    model = cnn(rng)
    for vi in (model.graph.input[0], model.graph.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_value = 1
    compiled = onnx_lrp.compile(model)
    dims = {vi.name: [d.dim_value if d.HasField("dim_value") else d.dim_param
                      for d in vi.type.tensor_type.shape.dim] for vi in (*compiled.graph.input, *compiled.graph.output)}
    assert dims == {"x": [1, 3, 16, 16], "target": [1], "logits": [1, 10], "relevance_x": [1, 3, 16, 16]}
    x = rng.normal(size=(1, 3, 16, 16)).astype(np.float32)
    out = run(compiled, {"x": x, "target": np.array([-1], np.int64)})
    assert np.isfinite(out["relevance_x"]).all() and np.abs(out["relevance_x"]).sum() > 0
