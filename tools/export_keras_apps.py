"""Convert Keras applications with tf2onnx and store them as weight-free skeletons.

Writes models/real/keras_<name>.onnx: MobileNetV2, EfficientNetB0, ResNet50 and DenseNet121 from
keras.applications, as tf2onnx converts them. TensorFlow and tf2onnx are needed only here, never by onnx-lrp or its
tests; run it from a separate virtual environment so that TensorFlow's numpy/protobuf pins never touch the project's:

    python -m venv /work/venv-tf
    /work/venv-tf/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2 onnxruntime==1.32.0 numpy==2.4.6
    /work/venv-tf/bin/python tools/export_keras_apps.py [NAME ...]     # NAME: mobilenet_v2 efficientnet_b0 ...

(keras 3.15.1 and protobuf 7.36.2 came with those.) Every model is built with weights=None, include_top=True,
classes=10, input_shape=(64, 64, 3) after keras.utils.set_random_seed(0), so its input is NHWC [N, 64, 64, 3]
(named input_layer) and its output `predictions` is Keras's Softmax. Unlike tools/export_torchvision.py the models
are NOT bias-free: every Conv/Dense bias is drawn from N(0, 0.1), and every BatchNormalization gets gamma ~
U(0.5, 1.5), beta ~ N(0, 0.1) and, in graph order, moving_mean and moving_variance equal to the mean and variance of
its actual input on a random batch, so its output has unit scale and a real per-channel shift
beta - gamma * mean / sqrt(var). tf2onnx folds a BatchNorm into a bias-free plain Conv before it (weight and bias),
but writes it as a per-channel Mul + Add after a depthwise Conv, after a Conv with a bias (all of ResNet50's) and
where no Conv precedes it (DenseNet's pool/concat -> BN -> ReLU -> Conv); the script prints where. Its transpose
optimizer leaves one Transpose (NHWC -> NCHW before the first Conv; EfficientNet's Rescaling/Normalization run
before it on the NHWC input).

tf2onnx's from_keras fails on Keras 3 models (KeyError on a keras_tensor name), so the model is wrapped in a
tf.function with an input signature (dynamic batch) and converted with tf2onnx.convert.from_function at opset 17.
EfficientNet's Normalization layer keeps its mean and variance as eager tensors, which the tf.function captures
and tf2onnx turns into two extra graph inputs; they are replaced by numpy arrays first, which become constants.
The conversion is checked against Keras in onnxruntime on a batch of 3 (logits, the Softmax's input, within 1e-4
relative; ResNet50's 4.6e-5 is float32 round-off: Keras's own float32 logits are 5.5e-5 from its float64 ones).

The skeleton: the shifts are scaled down first (shrink_shifts: at most a tenth of the signal they are added to,
still non-zero), then tools/skeleton.py strips every float initializer over 16 elements into a fill recipe ("fill
normal mean=M std=S" of the tensor's own statistics) and calibrate() rescales the Conv/MatMul weight recipes so
that the model tests/zoo.py's materialize(path, 0) draws has unit-scale activations; the script checks that its
logits are finite and differ between classes and between samples. How each file was made is in its metadata_props
(zoo.*).
"""
import argparse
import collections
import copy
import logging
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf2onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "real")
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tools"))
from zoo import MAX_KEPT, WEIGHT_SEED, materialize  # noqa: E402
from skeleton import calibrate, skeletonize  # noqa: E402

OPSET = 17
SIZE = 64
SHIFT = 0.1  # shifts are drawn at most this large relative to the signal they are added to (shrink_shifts)
MODELS = {"mobilenet_v2": "MobileNetV2", "efficientnet_b0": "EfficientNetB0", "resnet50": "ResNet50",
          "densenet121": "DenseNet121"}


def build(family, rng):
    keras.backend.clear_session()  # layer names (the ONNX input's too) do not depend on what was built before
    keras.utils.set_random_seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = getattr(keras.applications, family)(weights=None, include_top=True, classes=10,
                                                     input_shape=(SIZE, SIZE, 3))
    notes = [f"keras {w.category.__name__}: {' '.join(str(w.message).split())[:200]}" for w in caught]
    L = keras.layers
    for layer in model.layers:
        if isinstance(layer, L.Normalization):  # EfficientNet's: mean 0, variance 1 (no ImageNet statistics)
            # its mean and variance are eager tensors that the tf.function captures, and tf2onnx makes captured
            # eager tensors graph inputs; as numpy arrays they are written as constants
            layer.mean, layer.variance = np.asarray(layer.mean), np.asarray(layer.variance)
            notes.append(f"{layer.name}: mean and variance given to the tf.function as numpy constants (captured "
                         "eager tensors become extra ONNX graph inputs in tf2onnx)")
        if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D, L.Dense)) and layer.use_bias:
            layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    x = rng.normal(size=(8, SIZE, SIZE, 3)).astype(np.float32)
    for layer in model.layers:  # in graph order: each BatchNorm sees the inputs the ones before it give
        if isinstance(layer, L.BatchNormalization):
            inputs = keras.Model(model.input, layer.input)(x, training=False).numpy().astype(np.float64)
            axes = tuple(range(inputs.ndim - 1))
            channels = inputs.shape[-1]
            layer.gamma.assign(rng.uniform(0.5, 1.5, channels).astype(np.float32))
            layer.beta.assign(rng.normal(0, 0.1, channels).astype(np.float32))
            layer.moving_mean.assign(inputs.mean(axes).astype(np.float32))
            layer.moving_variance.assign(inputs.var(axes).astype(np.float32))
    return model, notes


def convert(model):
    input_name = model.layers[0].name
    spec = (tf.TensorSpec((None, SIZE, SIZE, 3), tf.float32, name=input_name),)

    @tf.function(input_signature=spec)
    def forward(x):
        return {"predictions": model(x, training=False)}

    logged = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda r: logged.append(f"{r.name}: {r.getMessage().splitlines()[0][:300]}")
    logging.getLogger().addHandler(handler)
    logging.getLogger("tf2onnx").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            proto, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET)
    finally:
        logging.getLogger().removeHandler(handler)
        logging.getLogger("tf2onnx").removeHandler(handler)
    notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:200]}" for w in caught}) + logged
    return proto, notes


def make_stable(model):
    """tf2onnx writes the initializers in an order, and with generated names (const_fold_opt__635), that change from
    run to run (its node list does not); the recipes are drawn in initializer order, so sort them by first use.
    The batch dimension, unk__<number> on the input and another on the output, is named N on both."""
    for value in list(model.graph.input) + list(model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    first = {}
    for k, node in enumerate(model.graph.node):
        for j, name in enumerate(node.input):
            first.setdefault(name, (k, j))
    tensors = sorted(model.graph.initializer, key=lambda t: first.get(t.name, (len(model.graph.node), 0)))
    tensors = [copy.deepcopy(t) for t in tensors]
    del model.graph.initializer[:]
    model.graph.initializer.extend(tensors)


def affine_report(model):
    """Where the Mul/Add with a per-channel constant operand (BatchNorm as tf2onnx writes it) sit."""
    consts = {t.name: list(t.dims) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    after = collections.Counter()
    for n in model.graph.node:
        const = next((consts[i] for i in n.input if int(np.prod(consts.get(i, [1]))) > 1), None)
        if n.op_type in ("Mul", "Add") and const is not None:
            src = producer.get(next(i for i in n.input if i not in consts))
            kind = "graph input" if src is None else src.op_type
            if kind == "Conv" and next((a.i for a in src.attribute if a.name == "group"), 1) > 1:
                kind = "depthwise Conv"
            layout = " (NHWC constant)" if len(const) == 4 and const[-1] > 1 else ""
            after[f"{n.op_type} after {kind}{layout}"] += 1
    return after


def shrink_shifts(model):
    """Scale every shift tensor that will be stripped (a Conv bias, or the constant of an Add after a BatchNorm's
    per-channel Mul) so that its RMS is at most SHIFT times the RMS of the signal it is added to: a calibrated Conv
    output (1) or that times the Mul's scale. A redrawn shift is no longer matched to its channel's mean; at full
    size the shifts push ResNet-50's ReLUs to always-on or always-off, and the materialized logits of different
    inputs differ by 0.2% (5% at SHIFT = 0.1). Returns how many tensors were scaled."""
    arrays = {t.name: numpy_helper.to_array(t).astype(np.float64) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    rms = lambda a: float(np.sqrt(np.mean(a ** 2)))  # noqa: E731
    factors = {}
    for n in model.graph.node:
        shift, level = None, None
        if n.op_type == "Conv" and len(n.input) > 2:
            shift, level = n.input[2], 1.0
        elif n.op_type == "Add" and len(n.input) == 2 and any(i in arrays for i in n.input):
            shift = next(i for i in n.input if i in arrays)
            mul = producer.get(next(i for i in n.input if i != shift))
            scale = next((arrays[i] for i in mul.input if i in arrays), None) if mul and mul.op_type == "Mul" \
                else None
            level = rms(scale) if scale is not None and scale.size > MAX_KEPT else None
        if level is not None and arrays[shift].size > MAX_KEPT and rms(arrays[shift]) > SHIFT * level:
            factors[shift] = min(factors.get(shift, 1.0), SHIFT * level / rms(arrays[shift]))
    for t in model.graph.initializer:
        if t.name in factors:
            t.CopyFrom(numpy_helper.from_array((arrays[t.name] * factors[t.name]).astype(np.float32), t.name))
    return len(factors)


def run(model, feed, output=None):
    if output is not None:  # a tensor inside the graph: make it the only output
        model = copy.deepcopy(model)
        del model.graph.output[:]
        model.graph.output.append(onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None))
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, feed)[0]


def keras_logits(model, x):
    """The input of the final Softmax, from the Dense layer's own input and weights (float64)."""
    dense = model.layers[-1]
    features = keras.Model(model.input, dense.input)(x, training=False).numpy().astype(np.float64)
    return features @ dense.kernel.numpy().astype(np.float64) + dense.bias.numpy().astype(np.float64)


def relative(got, expected):
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def export(name):
    family = MODELS[name]
    model, notes = build(family, np.random.default_rng(1))
    proto, converter_notes = convert(model)
    notes += converter_notes or [f"no warnings from keras {keras.__version__} or tf2onnx {tf2onnx.__version__}"]
    input_name = proto.graph.input[0].name
    logits_name = next(n.input[0] for n in proto.graph.node if n.op_type == "Softmax")
    x = np.random.default_rng(2).normal(size=(3, SIZE, SIZE, 3)).astype(np.float32)  # batch 3: N is dynamic
    err_logits = relative(run(proto, {input_name: x}, logits_name), keras_logits(model, x))
    err_probabilities = relative(run(proto, {input_name: x}), model(x, training=False).numpy())
    full = len(proto.SerializeToString())
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    affine = affine_report(proto)

    make_stable(proto)
    shrunk = shrink_shifts(proto)
    stripped = skeletonize(proto)
    feed = {input_name: np.random.default_rng(3).normal(size=(4, SIZE, SIZE, 3)).astype(np.float32)}
    factors = calibrate(proto, feed=feed)
    notes.append(f"{shrunk} shift tensors (Conv biases, BatchNorm Add constants) scaled to RMS <= {SHIFT} x their "
                 f"signal's before stripping; recipes rescaled for unit mean-square outputs at {len(factors)} nodes "
                 f"(tools/skeleton.py calibrate): factors {min(factors):.3g} .. {max(factors):.3g}")
    entries = {
        "zoo.source": "keras-applications",
        "zoo.family": family,
        "zoo.exporter": f"tf2onnx {tf2onnx.__version__}",
        "zoo.framework": f"tensorflow {tf.__version__} / keras {keras.__version__}",
        "zoo.opset": str(OPSET),
        "zoo.model": f"keras.applications.{family}(weights=None, include_top=True, classes=10, "
                     f"input_shape=({SIZE}, {SIZE}, 3)) after keras.utils.set_random_seed(0); biases N(0, 0.1), "
                     "BatchNorm gamma U(0.5, 1.5), beta N(0, 0.1), moving mean/variance of its input on a random "
                     "batch; tf2onnx.convert.from_function on a tf.function; shifts scaled, stripped and "
                     "calibrated by tools/export_keras_apps.py",
        "zoo.input": f"{input_name}=[N,{SIZE},{SIZE},3]",
        "zoo.export_notes": "\n".join(notes),
    }
    for key, value in entries.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    path = os.path.join(OUT, f"keras_{name}.onnx")
    onnx.save(proto, path)
    size = os.path.getsize(path)
    assert size < 1 << 20, f"{name}: skeleton of {size} bytes"

    probe = np.random.default_rng(4).normal(size=(8, SIZE, SIZE, 3)).astype(np.float32)
    logits = run(materialize(path, WEIGHT_SEED), {input_name: probe}, logits_name).astype(np.float64)
    over_classes, over_samples = logits.std(axis=1).min(), logits.std(axis=0).mean()
    ok = np.all(np.isfinite(logits)) and 1e-3 < np.abs(logits).max() < 1e3 and over_classes > 1e-3 \
        and over_samples > 1e-3
    print(f"{name}: {family}, input {entries['zoo.input']}, ORT vs Keras: logits {err_logits:.1e}, probabilities "
          f"{err_probabilities:.1e} relative; full {full / 1e6:.1f} MB, skeleton {size / 1e3:.0f} kB ({stripped} "
          f"initializers stripped)\n  materialized logits (seed {WEIGHT_SEED}, batch 8): |max| "
          f"{np.abs(logits).max():.3g}, std over classes >= {over_classes:.3g}, mean std over samples "
          f"{over_samples:.3g}{'' if ok else '  DEGENERATE'}\n"
          f"  ops: {' '.join(f'{k} {v}' for k, v in sorted(ops.items()))}\n"
          f"  Mul/Add with a per-channel constant: {', '.join(f'{k}: {v}' for k, v in sorted(affine.items()))}",
          flush=True)
    for note in notes:
        print(f"  export note: {note}")
    assert err_logits < 1e-4 and ok, name


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to export (default: all of {', '.join(MODELS)})")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(MODELS)
    if unknown:
        parser.error(f"unknown model {', '.join(sorted(unknown))}")
    os.makedirs(OUT, exist_ok=True)
    for name in args.names or MODELS:
        export(name)


if __name__ == "__main__":
    main()
