"""Models this project did not design, as other people's tools export them (models/real/):

- a text-direction classifier (PP-OCR mobile v2.0 cls, MobileNetV3 from PaddlePaddle via paddle2onnx, opset 11) that
  its authors ship inside the `rapidocr-onnxruntime` wheel (tools/fetch_package_models.py), with its real weights;
- timm RegNetY, GhostNet (two spellings of its hard-sigmoid gate), EfficientNet, ResNet-D, MobileNetV3 (opset 13:
  hard swish as x * HardSigmoid(x)), MixNet and ReXNet, and torchvision MNASNet, RegNetY, MobileNetV3-Large and
  ResNeXt (tools/export_timm.py), bias-free weight-free skeletons;
- Keras applications MobileNetV2, EfficientNetB0, ResNet50 and DenseNet121 converted by tf2onnx
  (tools/export_keras_apps.py): skeletons whose BatchNorms (per-channel Mul + Add in the graph) keep real,
  non-zero shifts.

Each compiles with every composite and reproduces the original outputs; its relevance is finite and not all zero;
without biases and shifts, `epsilon` relevance sums to the seed. Where BatchNorm is written as Mul + Add, folding
it into the conv by hand (an independent numpy fold, below) gives the same relevance: the same function written
another way is explained the same way.
"""
import copy
import glob
import hashlib
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx_lrp
from conftest import MODELS, cached, run
from zoo import WEIGHT_SEED, fill_model

REAL = os.path.join(MODELS, "real")
PACKAGED = {"ppocr_mobile_v2_cls.onnx": {
    "sha256": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    "input_shapes": {"x": ["N", 3, 48, 192]}}}
FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(REAL, "*.onnx")))
COMPOSITES = ["epsilon", "epsilon-plus", "epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1",
              "epsilon-alpha2-beta1-flat"]
BATCH = 2


def original(name):
    def make():
        model = onnx.load(os.path.join(REAL, name))
        return model if name in PACKAGED else fill_model(model, WEIGHT_SEED, source=name)
    return cached(("real", "model", name), make)


def options(name):
    return {"input_shapes": PACKAGED[name]["input_shapes"]} if name in PACKAGED else {}


def feeds(name):
    (x,) = [i for i in original(name).graph.input if i.name not in {t.name for t in original(name).graph.initializer}]
    fixed = options(name).get("input_shapes", {}).get(x.name)
    dims = fixed or [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                     for d in x.type.tensor_type.shape.dim]
    shape = [BATCH] + [int(d) for d in dims[1:]]
    return {x.name: np.random.default_rng(1).uniform(-1, 1, size=shape).astype(np.float32)}


def compiled_run(name, composite, model=None, key="original"):
    def make():
        compiled = onnx_lrp.compile(model or original(name), composite, seed="one-hot", low=-1.0, high=1.0,
                                    **options(name))
        return run(compiled, dict(feeds(name), target=np.full(BATCH, -1, np.int64)))
    return cached(("real", "compiled", name, composite, key), make)


def relevance(out, name):
    (input_name,) = feeds(name)
    return out[f"relevance_{input_name}"]


def test_the_set_covers_four_sources_and_twelve_models():
    sources = {}
    for name in FILES:
        meta = {p.key: p.value for p in onnx.load(os.path.join(REAL, name)).metadata_props}
        sources.setdefault("package" if name in PACKAGED else meta["zoo.source"], []).append(name)
    assert len(FILES) >= 12 and {"package", "timm", "torchvision", "keras-applications"} <= set(sources)
    assert len(sources["timm"]) >= 4 and len(sources["keras-applications"]) == 4


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_model_is_the_file_its_authors_ship(name):
    """Byte for byte the wheel's file (tools/fetch_package_models.py), exported by paddle2onnx at opset 11 with a
    dynamic height and width, a batch written as -1 and an Identity after its Softmax."""
    data = open(os.path.join(REAL, name), "rb").read()
    assert hashlib.sha256(data).hexdigest() == PACKAGED[name]["sha256"]
    model = onnx.load_from_string(data)
    assert model.producer_name == "PaddlePaddle" and model.opset_import[0].version == 11
    with pytest.raises(onnx_lrp.OnnxLrpError, match="--input-shape x=N,3,SIZE,SIZE"):
        onnx_lrp.compile(model)


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("name", FILES)
def test_compiles_and_reproduces_the_original_outputs(name, composite):
    expected = cached(("real", "outputs", name), lambda: run(original(name), feeds(name)))
    out = compiled_run(name, composite)
    for output, value in expected.items():
        np.testing.assert_allclose(out[output], value, rtol=0, atol=1e-5 * np.abs(value).max())
    r = relevance(out, name)
    assert r.shape == feeds(name)[next(iter(feeds(name)))].shape and r.dtype == np.float32
    assert np.all(np.isfinite(r)) and np.abs(r).max() > 0


def bias_free(model):
    """A copy with every bias and shift zero: Conv/Gemm biases, BatchNorm beta and mean, and the per-channel
    constants of Add/Sub (a bias or a BatchNorm shift; scalar constants such as a hard swish's 3 stay)."""
    model = copy.deepcopy(model)
    doomed = set()
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 2:
            doomed.add(node.input[2])
        elif node.op_type == "BatchNormalization":
            doomed.update(node.input[2:4])
        elif node.op_type in ("Add", "Sub"):
            doomed.update(node.input)
    constant_nodes = [(n.output[0], n.attribute[0].t) for n in model.graph.node
                      if n.op_type == "Constant" and n.attribute[0].name == "value"]  # paddle2onnx's parameters
    for name, t in [(t.name, t) for t in model.graph.initializer] + constant_nodes:
        if name in doomed and t.data_type == onnx.TensorProto.FLOAT and int(np.prod(t.dims)) > 1:
            t.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(t)), t.name))
    return model


@pytest.mark.parametrize("name", FILES)
def test_epsilon_relevance_is_conserved_without_biases(name):
    out = compiled_run(name, "epsilon", bias_free(original(name)), key="bias-free")
    sums = relevance(out, name).reshape(BATCH, -1).sum(1)
    np.testing.assert_allclose(sums, 1.0, rtol=0, atol=1e-2)


def respell_by_hand(model):
    """The same function in other spellings, by an independent numpy rewrite: each per-channel Mul -> Add (tf2onnx's
    BatchNorm) right after a Conv is folded into it (W * s, b * s + t); each other one (after a Concat: DenseNet's
    pre-activation BatchNorm) becomes one BatchNormalization node (scale s, bias t, mean 0, variance 1, eps 0).
    Returns the model and how many of each it rewrote."""
    model = copy.deepcopy(model)
    graph = model.graph
    weights = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in graph.initializer}
    readers = {}
    for node in graph.node:
        for n in node.input:
            readers.setdefault(n, []).append(node)
    by_output = {o: n for n in graph.node for o in n.output}
    folded, respelled, doomed, added = 0, 0, [], []
    for mul in list(graph.node):
        users = readers.get(mul.output[0], [])
        if mul.op_type != "Mul" or mul.input[1] not in weights or len(users) != 1 or users[0].op_type != "Add":
            continue
        add = users[0]
        shift = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
        scale_shape = weights[mul.input[1]].shape
        if shift not in weights or len(scale_shape) != 4 or scale_shape[2:] != (1, 1) or \
                weights[shift].shape != scale_shape:
            continue
        s, t = weights[mul.input[1]].reshape(-1), weights[shift].reshape(-1)
        names = [f"{mul.name}_hand_{k}" for k in ("a", "b", "c", "d")]
        conv = by_output.get(mul.input[0])
        if conv is not None and conv.op_type == "Conv" and len(readers[conv.output[0]]) == 1:
            w = weights[conv.input[1]]
            b = weights[conv.input[2]] if len(conv.input) > 2 and conv.input[2] else 0.0
            graph.initializer.extend([numpy_helper.from_array((w * s[:, None, None, None]).astype(np.float32),
                                                              names[0]),
                                      numpy_helper.from_array((b * s + t).astype(np.float32), names[1])])
            del conv.input[1:]
            conv.input.extend(names[:2])
            conv.output[0] = add.output[0]
            folded += 1
        else:
            params = [s, t, np.zeros_like(s), np.ones_like(s)]
            graph.initializer.extend(numpy_helper.from_array(p.astype(np.float32), n) for p, n in zip(params, names))
            added.append((mul, onnx.helper.make_node("BatchNormalization", [mul.input[0], *names], [add.output[0]],
                                                     name=f"{mul.name}_hand_bn", epsilon=0.0)))
            respelled += 1
        doomed += [mul, add]
    nodes = []
    for node in graph.node:
        nodes += [bn for mul, bn in added if mul is node]
        if all(node is not d for d in doomed):
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    return model, folded, respelled


KERAS = [n for n in FILES if n.startswith("keras_")]


@pytest.mark.parametrize("name", KERAS)
def test_batchnorm_as_mul_add_equals_batchnorm_respelled_by_hand(name):
    model = original(name)
    shifts = [numpy_helper.to_array(t) for t in model.graph.initializer
              if any(n.op_type == "Add" and t.name in n.input for n in model.graph.node) and np.prod(t.dims) > 1]
    assert shifts and any(np.abs(s).max() > 1e-3 for s in shifts)  # real, non-zero shifts
    respelled, folded, as_batchnorm = respell_by_hand(model)
    assert folded + as_batchnorm > 0
    np.testing.assert_allclose(run(respelled, feeds(name))[model.graph.output[0].name],
                               run(model, feeds(name))[model.graph.output[0].name], rtol=0, atol=1e-5)
    ours = relevance(compiled_run(name, "epsilon"), name)
    by_hand = relevance(compiled_run(name, "epsilon", respelled, key="respelled by hand"), name)
    assert np.abs(ours - by_hand).max() <= 1e-4 * np.abs(by_hand).max()
