"""Models from other frameworks, as their converters write them (made by tools/make_framework_models.py):

- models/keras_cnn.onnx: Keras CNN via tf2onnx (NHWC input, Transpose and a Shape/Gather/Concat/Reshape Flatten,
  MatMul+Add dense layers);
- models/sklearn_mlp.onnx: scikit-learn MLPClassifier via skl2onnx with default options (outputs `output_label`
  int64 and `output_probability`, a ZipMap of the Softmax; the Softmax input is the explained score).

Each compiles; the compiled model reproduces the original's outputs; relevance is finite, has the input's shape
and equals an independent float64 numpy Epsilon-LRP of the same weights; and without biases relevance is conserved:
it sums to the explained logit (logit seed) or to 1 (one-hot seed). Only the committed .onnx files are needed.
"""
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx_lrp
from conftest import MODELS, run

KERAS, SKLEARN = "keras_cnn", "sklearn_mlp"
FRAMEWORK_MODELS = [KERAS, SKLEARN]
SHAPES = {KERAS: (8, 8, 1), SKLEARN: (64,)}
COMPOSITES = ["epsilon", "epsilon-plus-flat", "epsilon-alpha2-beta1", "epsilon-gamma-box"]
N = 16


def load(name):
    return onnx.load(os.path.join(MODELS, f"{name}.onnx"))


def compile_(model, composite="epsilon", **kw):
    if composite == "epsilon-gamma-box":
        kw.update(low=0.0, high=1.0)  # both models read pixels scaled to [0, 1]
    return onnx_lrp.compile(model, composite, **kw)


def inputs(name, rng, n=N):
    return rng.uniform(0.0, 1.0, size=(n, *SHAPES[name])).astype(np.float32)


def targets(n=N, classes=10):
    """Half the batch explains the top class (-1), the other half a fixed class each."""
    t = np.arange(n, dtype=np.int64) % classes
    t[::2] = -1
    return t


def logits_tensor(model):
    """The score LRP explains, found without onnx_lrp: the model output itself (Keras) or, for skl2onnx's
    ZipMap(Softmax(z)) probabilities, the Softmax input z."""
    producer = {o: n for n in model.graph.node for o in n.output}
    out = next(o.name for o in model.graph.output if o.type.WhichOneof("value") == "sequence_type"
               or o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT)
    node = producer.get(out)
    if node is not None and node.op_type == "ZipMap":
        softmax = producer[node.input[0]]
        assert softmax.op_type == "Softmax"
        return softmax.input[0]
    return out


def with_logits_output(model):
    """A copy of the original model that also returns its logits tensor (when it is not already an output)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    name = logits_tensor(model)
    if name not in {o.name for o in model.graph.output}:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return model, name


def without_biases(model):
    """A copy with every bias zeroed: Conv/Gemm's third input, and the constant of an Add after a MatMul."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    producer = {o: n for n in model.graph.node for o in n.output}
    biases = set()
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm") and len(node.input) > 2 and node.input[2]:
            biases.add(node.input[2])
        if node.op_type == "Add" and node.input[0] in producer and producer[node.input[0]].op_type == "MatMul":
            biases.add(node.input[1])
    inits = {i.name: i for i in model.graph.initializer}
    assert biases and biases <= set(inits), "every bias should be an initializer"
    for name in biases:
        zero = numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(inits[name])), name)
        inits[name].CopyFrom(zero)
    return model


def chosen_classes(logits, target):
    return np.where(target < 0, logits.argmax(1), target)


def assert_same_outputs(original, compiled):
    assert set(original) <= set(compiled)
    for name, value in original.items():
        got = compiled[name]
        if isinstance(value, list):  # ZipMap: a list of {class: probability}
            assert len(got) == len(value)
            for a, b in zip(got, value):
                assert a.keys() == b.keys()
                np.testing.assert_allclose([a[k] for k in b], [b[k] for k in b], rtol=1e-6, atol=1e-7)
        elif value.dtype.kind in "iub":
            np.testing.assert_array_equal(got, value)
        else:
            np.testing.assert_allclose(got, value, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# An independent float64 numpy Epsilon-LRP of the two architectures, weights read from the ONNX initializers.

def stab(z, eps=1e-6):
    return z + eps * (np.sign(z) + (z == 0))


def weights_in_order(model, op_types):
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    return [(node, [inits[i] for i in node.input[1:] if i in inits]) for node in model.graph.node
            if node.op_type in op_types]


def dense_layers(model):
    """[(W [in, out], B [out])] of MatMul+Add pairs, in graph order."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: numpy_helper.to_array(i).astype(np.float64) for i in model.graph.initializer}
    layers = []
    for node in model.graph.node:
        if node.op_type == "Add" and producer.get(node.input[0]) is not None \
                and producer[node.input[0]].op_type == "MatMul":
            layers.append((inits[producer[node.input[0]].input[1]], inits[node.input[1]]))
    return layers


def dense_forward(a, W, B):
    return a @ W + B


def dense_epsilon(a, z, W, R):
    return a * ((R / stab(z)) @ W.T)


def conv_same(x, W, B):
    """3x3 convolution, stride 1, pads 1 (Keras padding='same'), NCHW / OIHW."""
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    z = np.zeros((n, W.shape[0], h, w)) + B[None, :, None, None]
    for i in range(3):
        for j in range(3):
            z += np.einsum("nchw,oc->nohw", xp[:, :, i:i + h, j:j + w], W[:, :, i, j])
    return z


def conv_epsilon(x, z, W, R):
    n, c, h, w = x.shape
    g = R / stab(z)
    dxp = np.zeros((n, c, h + 2, w + 2))
    for i in range(3):
        for j in range(3):
            dxp[:, :, i:i + h, j:j + w] += np.einsum("nohw,oc->nchw", g, W[:, :, i, j])
    return x * dxp[:, :, 1:-1, 1:-1]


def maxpool2(x):
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    return windows.max(-1), windows.argmax(-1)


def maxpool2_back(winner, R, shape):
    n, c, h, w = shape
    out = np.zeros((n, c, h // 2, w // 2, 4))
    np.put_along_axis(out, winner[..., None], R[..., None], axis=-1)
    return out.reshape(n, c, h // 2, w // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(shape)


def seed(logits, target, kind):
    chosen = chosen_classes(logits, target)
    one_hot = np.eye(logits.shape[1])[chosen]
    return one_hot if kind == "one-hot" else one_hot * logits


def reference_sklearn(model, x, target, kind):
    ops = [n.op_type for n in model.graph.node if n.op_type in ("MatMul", "Add", "Relu", "Softmax")]
    assert ops == ["MatMul", "Add", "Relu", "MatMul", "Add", "Relu", "MatMul", "Add", "Softmax"], ops
    layers = dense_layers(model)
    acts, zs = [x.astype(np.float64)], []
    for k, (W, B) in enumerate(layers):
        zs.append(dense_forward(acts[-1], W, B))
        acts.append(np.maximum(zs[-1], 0) if k < len(layers) - 1 else zs[-1])
    R = seed(zs[-1], target, kind)
    for k in reversed(range(len(layers))):
        R = dense_epsilon(acts[k], zs[k], layers[k][0], R)
    return R, zs[-1]


def reference_keras(model, x, target, kind):
    ops = [n.op_type for n in model.graph.node if n.op_type in ("Conv", "Relu", "MaxPool", "Transpose", "MatMul")]
    assert ops == ["Conv", "Relu", "MaxPool", "Conv", "Relu", "Transpose", "MatMul", "Relu", "MatMul"], ops
    convs = [(node, ws) for node, ws in weights_in_order(model, {"Conv"})]
    for node, (W, B) in convs:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert W.shape[2:] == (3, 3) and attrs.get("pads") == [1, 1, 1, 1] and attrs.get("strides", [1, 1]) == [1, 1]
    (W1, B1), (W2, B2) = [ws for _, ws in convs]
    (W3, B3), (W4, B4) = dense_layers(model)
    a0 = x.astype(np.float64).transpose(0, 3, 1, 2)  # NHWC -> NCHW
    z1 = conv_same(a0, W1, B1)
    a1 = np.maximum(z1, 0)
    a2, winner = maxpool2(a1)
    z3 = conv_same(a2, W2, B2)
    a3 = np.maximum(z3, 0)
    f = a3.transpose(0, 2, 3, 1).reshape(len(x), -1)  # Keras flattens NHWC
    z4 = dense_forward(f, W3, B3)
    a4 = np.maximum(z4, 0)
    z5 = dense_forward(a4, W4, B4)
    R = seed(z5, target, kind)
    R = dense_epsilon(a4, z5, W4, R)
    R = dense_epsilon(f, z4, W3, R)
    R = R.reshape(a3.transpose(0, 2, 3, 1).shape).transpose(0, 3, 1, 2)
    R = conv_epsilon(a2, z3, W2, R)
    R = maxpool2_back(winner, R, a1.shape)
    R = conv_epsilon(a0, z1, W1, R)
    return R.transpose(0, 2, 3, 1), z5


REFERENCES = {KERAS: reference_keras, SKLEARN: reference_sklearn}


# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", FRAMEWORK_MODELS)
def test_committed_model_is_the_converters_output(name):
    """Guards the premise of this file: the files are what the converters write, not edited to suit onnx-lrp."""
    model = load(name)
    assert model.producer_name == {KERAS: "tf2onnx", SKLEARN: "skl2onnx"}[name]
    assert os.path.getsize(os.path.join(MODELS, f"{name}.onnx")) < 1 << 20
    ops = {n.op_type for n in model.graph.node}
    if name == KERAS:
        assert {"Transpose", "Shape", "MatMul"} <= ops and [i.name for i in model.graph.input] == ["input"]
    else:
        assert {"ZipMap", "Softmax", "ArgMax"} <= ops
        assert [o.name for o in model.graph.output] == ["output_label", "output_probability"]
        assert model.graph.output[1].type.WhichOneof("value") == "sequence_type"


@pytest.mark.parametrize("composite", COMPOSITES)
@pytest.mark.parametrize("name", FRAMEWORK_MODELS)
def test_compiled_outputs_equal_original_and_relevance_is_finite(name, composite, rng):
    model = load(name)
    compiled = compile_(model, composite)
    assert [i.name for i in compiled.graph.input] == ["input", "target"]
    assert [o.name for o in compiled.graph.output] == [o.name for o in model.graph.output] + ["relevance_input"]
    x = inputs(name, rng)
    original = run(model, {"input": x})
    out = run(compiled, {"input": x, "target": targets()})
    assert_same_outputs(original, out)
    relevance = out["relevance_input"]
    assert relevance.shape == x.shape and relevance.dtype == np.float32
    assert np.isfinite(relevance).all()
    assert (np.abs(relevance).reshape(N, -1).max(1) > 0).all(), "every sample should receive some relevance"


@pytest.mark.parametrize("kind", ["logit", "one-hot"])
@pytest.mark.parametrize("name", FRAMEWORK_MODELS)
def test_epsilon_equals_numpy_reference(name, kind, rng):
    """With the committed biases: the compiled Epsilon relevance equals an independent float64 computation."""
    model = load(name)
    compiled = compile_(model, "epsilon", seed=kind)
    x = inputs(name, rng)
    t = targets()
    got = run(compiled, {"input": x, "target": t})["relevance_input"]
    want, logits = REFERENCES[name](model, x, t, kind)
    original, logits_name = with_logits_output(model)
    np.testing.assert_allclose(run(original, {"input": x})[logits_name], logits, rtol=1e-4, atol=1e-4)
    scale = np.abs(want).reshape(N, -1).max(1).reshape(-1, *[1] * len(SHAPES[name]))
    np.testing.assert_allclose(got / scale, want / scale, atol=1e-4)


@pytest.mark.parametrize("kind", ["logit", "one-hot"])
@pytest.mark.parametrize("name", FRAMEWORK_MODELS)
def test_epsilon_conserves_relevance_without_biases(name, kind, rng):
    model = without_biases(load(name))
    compiled = compile_(model, "epsilon", seed=kind)
    x = inputs(name, rng)
    t = targets()
    sums = run(compiled, {"input": x, "target": t})["relevance_input"].reshape(N, -1).sum(1)
    original, logits_name = with_logits_output(model)
    logits = run(original, {"input": x})[logits_name]
    explained = logits[np.arange(N), chosen_classes(logits, t)] if kind == "logit" else np.ones(N)
    assert (np.abs(explained) > 1e-3).all()
    np.testing.assert_allclose(sums, explained, rtol=1e-2)


@pytest.mark.parametrize("name", FRAMEWORK_MODELS)
def test_biases_absorb_relevance(name, rng):
    """The converse, so the conservation test can fail: with the trained biases the sums leave the seed."""
    compiled = compile_(load(name), "epsilon", seed="one-hot")
    x = inputs(name, rng)
    sums = run(compiled, {"input": x, "target": targets()})["relevance_input"].reshape(N, -1).sum(1)
    assert np.abs(sums - 1.0).max() > 1e-2
