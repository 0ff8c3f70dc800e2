"""Weight-free skeletons of exported models: strip the data of large float initializers into fill recipes
(tests/zoo.py draws them back), and calibrate the recipes so the materialized model has unit-scale activations.
Torch-free, so every exporter tool (PyTorch, timm, tf2onnx) shares it."""
import copy
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from zoo import MAX_KEPT, SIZE, WEIGHT_SEED, fill_model, recipe_of, scaled  # noqa: E402


def skeletonize(model):
    """Strip the data of every float initializer over MAX_KEPT elements; a fill recipe goes into its doc_string."""
    stripped = 0
    for t in model.graph.initializer:
        if t.data_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE) or int(np.prod(t.dims)) <= MAX_KEPT:
            continue
        array = numpy_helper.to_array(t)
        recipe = recipe_of(array)
        dims, dtype, tname = list(t.dims), t.data_type, t.name
        t.Clear()
        t.name, t.data_type, t.doc_string = tname, dtype, recipe
        t.dims.extend(dims)
        stripped += 1
    return stripped


def calibrate(skeleton, seed=WEIGHT_SEED, feed=None):
    """Rescale the recipes so that the materialized model itself has unit mean-square outputs at every Conv, Gemm,
    MatMul, BatchNormalization and Mul by a recipe (tf2onnx's BatchNorm scale): node by node in graph order, the
    node's weight (or scale) recipe is
    multiplied by 1 / sqrt(mean square of its output) on a random batch; the model is bias-free, so the output
    scales by that factor. Without it the deeper activations of MobileNetV3 and EfficientNet vanish or explode,
    depending on the draw. Returns the factors applied."""
    model = fill_model(copy.deepcopy(skeleton), seed)
    recipes = {t.name: t for t in skeleton.graph.initializer if t.doc_string.startswith("fill ")}
    weights = {t.name: t for t in model.graph.initializer}
    if feed is None:
        x = np.random.default_rng(3).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32)
        feed = {skeleton.graph.input[0].name: x}
    factors = []
    for node in list(model.graph.node):
        if node.op_type not in ("Conv", "Gemm", "MatMul", "BatchNormalization", "Mul") or len(node.input) < 2 or \
                node.input[1] not in recipes or recipes[node.input[1]].doc_string == "fill zeros":
            continue
        probe = copy.deepcopy(model)
        del probe.graph.output[:]
        probe.graph.output.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, None))
        s = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
        out = s.run(None, feed)[0].astype(np.float64)
        factor = float(1.0 / np.sqrt(np.mean(out ** 2)))
        assert np.isfinite(factor), f"{node.name}: output mean square {np.mean(out ** 2)}"
        recipe = recipes[node.input[1]]
        recipe.doc_string = scaled(recipe.doc_string, factor)
        w = weights[node.input[1]]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * np.float32(factor), w.name))
        factors.append(factor)
    return factors
