"""--opset N writes the compiled model at a chosen opset with the same relevance; float16 models compile and run,
their relevance computed in float32 inside."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp
from conftest import MODELS, relative_error, run
from onnx_lrp.cli import main
from onnx_lrp.load import max_runtime_opset

SMALL = ["minivgg_cifar10.onnx", "bn_avgpool_cnn.onnx", "conv1d_sequence.onnx", "mlp_tabular.onnx",
         "transformers/vit.onnx", "transformers/bert_sdpa.onnx"]


def feeds_for(model, rng, batch=2, dtype=np.float32):
    feeds = {}
    weights = {i.name for i in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in weights:
            continue
        dims = [d.dim_value if d.HasField("dim_value") else batch for d in vi.type.tensor_type.shape.dim]
        if vi.name == "target":
            feeds[vi.name] = np.full(dims, -1, np.int64)
        elif vi.type.tensor_type.elem_type == TensorProto.INT64:
            feeds[vi.name] = rng.integers(0, 20, dims).astype(np.int64)
        else:
            feeds[vi.name] = rng.normal(size=dims).astype(dtype)
    return feeds


def relevance_of(compiled, feeds):
    out = run(compiled, feeds)
    return np.concatenate([v.ravel() for k, v in sorted(out.items()) if k.startswith("relevance_")])


@pytest.mark.parametrize("name", SMALL)
def test_every_opset_gives_the_same_relevance(name, rng):
    path = os.path.join(MODELS, name)
    base = onnx_lrp.compile(path)
    feeds = feeds_for(base, rng)
    reference = relevance_of(base, feeds)
    own = next(i.version for i in onnx.load(path).opset_import if i.domain in ("", "ai.onnx"))
    for opset in sorted({max(own, 16), 18, 21, max_runtime_opset()}):
        compiled = onnx_lrp.compile(path, opset=opset)
        assert [i.version for i in compiled.opset_import if i.domain in ("", "ai.onnx")] == [opset]
        assert relative_error(relevance_of(compiled, feeds), reference) <= 1e-6, opset


def test_opset_out_of_range_is_a_clear_error():
    path = os.path.join(MODELS, "mlp_tabular.onnx")
    for opset in (11, max_runtime_opset() + 1):
        with pytest.raises(onnx_lrp.OnnxLrpError, match=f"opset {opset} is not supported: choose one from 16 to"):
            onnx_lrp.compile(path, opset=opset)
    with pytest.raises(onnx_lrp.OnnxLrpError, match="converting it to opset 16 failed.*LayerNormalization"):
        onnx_lrp.compile(os.path.join(MODELS, "transformers", "vit.onnx"), opset=16)


def test_cli_opset(tmp_path):
    out = tmp_path / "m.lrp.onnx"
    assert main(["compile", os.path.join(MODELS, "minivgg_cifar10.onnx"), "-o", str(out), "--opset", "20"]) == 0
    assert [i.version for i in onnx.load(str(out)).opset_import if i.domain in ("", "ai.onnx")] == [20]


def half_model(path, keep_io):
    """The float32 model with float16 weights and constants: with float16 inputs and outputs, or (keep_io) with
    float32 ones cast to and from float16 inside, as onnxconverter-common's keep_io_types writes it."""
    model = onnx.load(path)
    graph = model.graph

    def half(t):
        return numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), t.name)

    for k, init in enumerate(graph.initializer):
        if init.data_type == TensorProto.FLOAT:
            graph.initializer[k].CopyFrom(half(init))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.TENSOR and attr.t.data_type == TensorProto.FLOAT:
                attr.t.CopyFrom(half(attr.t))
    del graph.value_info[:]
    inputs = [i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT]
    outputs = [o.name for o in graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT]
    if keep_io:
        renamed = {n: f"{n}_fp16" for n in inputs + outputs}
        for node in graph.node:
            node.input[:] = [renamed.get(n, n) for n in node.input]
            node.output[:] = [renamed.get(n, n) for n in node.output]
        nodes = [helper.make_node("Cast", [n], [renamed[n]], to=TensorProto.FLOAT16) for n in inputs]
        nodes += list(graph.node)
        nodes += [helper.make_node("Cast", [renamed[n]], [n], to=TensorProto.FLOAT) for n in outputs]
        del graph.node[:]
        graph.node.extend(nodes)
    else:
        for vi in (*graph.input, *graph.output):
            if vi.name in inputs + outputs:
                vi.type.tensor_type.elem_type = TensorProto.FLOAT16
    return model


def rounded_float32(model):
    """The float32 twin of a half model: the same (rounded) weights widened, so only the arithmetic differs."""
    twin = onnx.load_from_string(model.SerializeToString())
    onnx_lrp.precision.widen_to_float32(twin)
    return twin


@pytest.mark.parametrize("keep_io", [False, True], ids=["float16-io", "float32-io"])
@pytest.mark.parametrize("name", ["minivgg_cifar10.onnx", "bn_avgpool_cnn.onnx", "mlp_tabular.onnx",
                                  "transformers/vit.onnx"])
def test_float16_model_compiles_and_explains_in_float32(name, keep_io, rng):
    path = os.path.join(MODELS, name)
    half = half_model(path, keep_io)
    notes = []
    compiled = onnx_lrp.compile(half, notes=notes)
    assert any("float16" in n for n in notes) != keep_io  # float16 at the interface is said
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*compiled.graph.input, *compiled.graph.output)}
    original = {vi.name: vi.type.tensor_type.elem_type for vi in (*half.graph.input, *half.graph.output)}
    assert all(types[n] == t for n, t in original.items())  # the interface keeps its types
    assert all(t == TensorProto.FLOAT for n, t in types.items() if n.startswith("relevance_"))
    assert not any(i.data_type == TensorProto.FLOAT16 for i in compiled.graph.initializer)

    feeds32 = feeds_for(onnx.load(path), rng)
    for k, v in feeds32.items():  # both models see the same (float16-representable) input
        if v.dtype == np.float32:
            feeds32[k] = v.astype(np.float16).astype(np.float32)
    feeds = {k: v.astype(np.float16) if v.dtype == np.float32 and not keep_io else v for k, v in feeds32.items()}
    feeds32["target"] = feeds["target"] = np.full(2, -1, np.int64)
    ours = relevance_of(compiled, feeds)
    twin = relevance_of(onnx_lrp.compile(rounded_float32(half)), feeds32)
    assert relative_error(ours, twin) <= 1e-5  # float32 arithmetic inside, only the interface casts
    full = relevance_of(onnx_lrp.compile(path), feeds32)
    assert relative_error(ours, full) <= 1e-2  # against the float32 model: float16 weight rounding only
