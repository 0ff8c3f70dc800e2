"""Weight-free model skeletons (models/torchvision/*.onnx, written by tools/export_torchvision.py) and their
materialization with seeded numpy weights, so that big exported classifiers can be tested without storing weights.

A skeleton is an ordinary ONNX model in which every float initializer with more than MAX_KEPT elements has no data,
only its dims and data_type, and a fill recipe in its doc_string:
    "fill zeros"                       exactly zero (biases, BatchNorm mean and beta: the model stays bias-free)
    "fill const V"                     every element V
    "fill normal mean=M std=S"         i.i.d. normal draws, M and S measured on the exported tensor (then rescaled
                                       so that the materialized model has unit mean-square layer outputs)
Draws are made in initializer order from one np.random.default_rng(seed), so a seed gives one model, and scaling a
recipe (`scaled`) scales its tensor without changing any other.
"""
import os
import re

import numpy as np
import onnx
from onnx import numpy_helper

MAX_KEPT = 16  # float initializers up to this many elements keep their data
SIZE = 64  # the skeletons' input is [N, 3, SIZE, SIZE]
WEIGHT_SEED = 0  # the seed the recipes are calibrated for (tools/export_torchvision.py) and the test uses
SKELETONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "torchvision")

_NUMBER = r"([-+0-9.eE]+|nan|inf)"
_RECIPES = {
    "zeros": re.compile(r"fill zeros$"),
    "const": re.compile(rf"fill const {_NUMBER}$"),
    "normal": re.compile(rf"fill normal mean={_NUMBER} std={_NUMBER}$"),
}


def recipe_of(array):
    """The fill recipe that stands for `array`: its own statistics."""
    a = np.asarray(array, np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError("a tensor with non-finite values has no fill recipe")
    if not a.any():
        return "fill zeros"
    if np.all(a == a.flat[0]):
        return f"fill const {float(a.flat[0])!r}"
    return f"fill normal mean={float(a.mean())!r} std={float(a.std())!r}"


def _parse(recipe):
    """(kind, regex match) of a fill recipe."""
    for kind, pattern in _RECIPES.items():
        match = pattern.match(recipe)
        if match:
            return kind, match
    raise ValueError(f"unknown fill recipe {recipe!r}")


def fill(recipe, shape, dtype, rng):
    kind, match = _parse(recipe)
    if kind == "zeros":
        return np.zeros(shape, dtype)
    if kind == "const":
        return np.full(shape, float(match.group(1)), dtype)
    mean, std = float(match.group(1)), float(match.group(2))
    return rng.normal(mean, std, size=shape).astype(dtype)


def has_data(tensor):
    fields = ("raw_data", "float_data", "double_data", "int32_data", "int64_data", "uint64_data", "string_data")
    return any(tensor.HasField(f) if f == "raw_data" else len(getattr(tensor, f)) for f in fields) or \
        tensor.data_location == onnx.TensorProto.EXTERNAL


def materialize(path, seed, check=True):
    """Load a skeleton and fill its recipe-tagged initializers from np.random.default_rng(seed), in graph order;
    returns a complete onnx.ModelProto (the same seed gives the same weights)."""
    model = fill_model(onnx.load(path), seed, source=path)
    if check:
        onnx.checker.check_model(model, full_check=True)
    return model


def fill_model(model, seed, source="model"):
    """Fill the recipe-tagged initializers of a skeleton ModelProto in place; returns it."""
    rng = np.random.default_rng(seed)
    filled = 0
    for t in model.graph.initializer:
        if not t.doc_string.startswith("fill "):
            if not has_data(t) and int(np.prod(t.dims)) > 0:
                raise ValueError(f"{source}: initializer {t.name!r} has neither data nor a fill recipe")
            continue
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.data_type)
        array = fill(t.doc_string, tuple(t.dims), dtype, rng)
        recipe = t.doc_string
        t.CopyFrom(numpy_helper.from_array(array, t.name))
        t.doc_string = recipe
        filled += 1
    if not filled:
        raise ValueError(f"{source}: no initializer carries a fill recipe; is this a skeleton?")
    return model


def scaled(recipe, factor):
    """The recipe of `factor` (> 0) times the tensor `recipe` makes (from the same random draws)."""
    if not factor > 0:
        raise ValueError(f"scale factor {factor} is not positive")
    kind, match = _parse(recipe)
    if kind == "zeros":
        return recipe
    factor = float(factor)  # a numpy float would print as np.float64(...), which the parser refuses
    if kind == "const":
        return f"fill const {float(match.group(1)) * factor!r}"
    return f"fill normal mean={float(match.group(1)) * factor!r} std={float(match.group(2)) * factor!r}"
