"""Build the two models from other frameworks that tests/test_frameworks.py compiles:

- models/keras_cnn.onnx: a small Keras CNN (NHWC Conv2D/ReLU/MaxPooling2D/Conv2D/ReLU/Flatten/Dense/ReLU/Dense)
  trained briefly on scikit-learn's 8x8 digits (pixels / 16), converted by tf2onnx at opset 17. Input `input`
  float32 [N, 8, 8, 1], output `logits` float32 [N, 10].
- models/sklearn_mlp.onnx: a scikit-learn MLPClassifier (64 -> 32 -> 16 -> 10, ReLU) trained on the same digits
  (flattened, / 16), converted by skl2onnx with its default options (target opset 17: it writes ai.onnx 16 and
  ai.onnx.ml 1, the lowest its ops need), so the outputs are as users get them: `output_label` int64 [N] and
  `output_probability`, a ZipMap seq(map(int64, float)) of the final Softmax.

Neither converter is a dependency of onnx-lrp or of its tests (the tests read the committed .onnx files). Run it
from a separate virtual environment, so that tensorflow's numpy/protobuf pins never touch the project's:

    python -m venv /work/venv-conv
    /work/venv-conv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 skl2onnx==1.20.0 scikit-learn==1.9.1 \
        onnxruntime==1.31.1
    /work/venv-conv/bin/python tools/make_framework_models.py            # writes both models
    /work/venv-conv/bin/python tools/make_framework_models.py keras      # or only one: keras | sklearn

(These exact versions were used for the committed files; keras 3.15.1, onnx 1.23.2, protobuf 7.36.2 and numpy
2.4.6 came with them.) tf2onnx's `from_keras` fails on Keras 3 models (KeyError on the output's keras_tensor
name), so the Keras model is wrapped in a tf.function and converted with `tf2onnx.convert.from_function`, which is
what `from_keras` does internally for Keras 2. Training is seeded and gives the same weights on every run (tf2onnx's
generated node names may differ); when onnxruntime is installed in the venv, the script checks that the written ONNX
file gives the framework's own predictions.
"""
import os
import sys

import numpy as np
from sklearn.datasets import load_digits

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
OPSET = 17
TRAIN = 1500  # the first 1500 digits train, the remaining 297 test


def digits():
    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def ort_outputs(path, x):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def make_keras():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf2onnx

    images, labels = digits()
    x = images[..., None]  # NHWC
    tf.keras.utils.set_random_seed(0)
    L = tf.keras.layers
    model = tf.keras.Sequential([
        tf.keras.Input((8, 8, 1), name="input"),
        L.Conv2D(8, 3, padding="same", activation="relu", name="conv1"),
        L.MaxPooling2D(2, name="pool1"),
        L.Conv2D(16, 3, padding="same", activation="relu", name="conv2"),
        L.Flatten(name="flatten"),
        L.Dense(32, activation="relu", name="fc1"),
        L.Dense(10, name="logits"),
    ])
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                  loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(x[:TRAIN], labels[:TRAIN], epochs=15, batch_size=64, verbose=0)
    accuracy = model.evaluate(x[TRAIN:], labels[TRAIN:], verbose=0)[1]
    print(f"keras CNN test accuracy: {accuracy:.3f}", flush=True)

    spec = (tf.TensorSpec((None, 8, 8, 1), tf.float32, name="input"),)

    @tf.function(input_signature=spec)
    def forward(inp):
        return {"logits": model(inp, training=False)}

    path = os.path.join(MODELS, "keras_cnn.onnx")
    onnx_model, _ = tf2onnx.convert.from_function(forward, input_signature=spec, opset=OPSET, output_path=path)
    print(f"wrote {path} ({os.path.getsize(path)} bytes): "
          f"{' '.join(n.op_type for n in onnx_model.graph.node)}", flush=True)
    expected = model(x[TRAIN:], training=False).numpy()
    got = ort_outputs(path, x[TRAIN:])
    if got is not None:
        np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-4)
        print("onnxruntime matches keras", flush=True)


def make_sklearn():
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.neural_network import MLPClassifier

    images, labels = digits()
    x = images.reshape(len(images), -1)
    clf = MLPClassifier(hidden_layer_sizes=(32, 16), max_iter=300, random_state=0)
    clf.fit(x[:TRAIN], labels[:TRAIN])
    print(f"sklearn MLP test accuracy: {clf.score(x[TRAIN:], labels[TRAIN:]):.3f}", flush=True)

    onnx_model = convert_sklearn(clf, "sklearn_mlp", initial_types=[("input", FloatTensorType([None, 64]))],
                                 target_opset={"": OPSET, "ai.onnx.ml": 3})
    path = os.path.join(MODELS, "sklearn_mlp.onnx")
    with open(path, "wb") as f:
        f.write(onnx_model.SerializeToString())
    print(f"wrote {path} ({os.path.getsize(path)} bytes): "
          f"{' '.join(n.op_type for n in onnx_model.graph.node)}", flush=True)
    got = ort_outputs(path, x[TRAIN:])
    if got is not None:
        assert (got[0] == clf.predict(x[TRAIN:])).all()
        probabilities = np.array([[row[k] for k in range(10)] for row in got[1]])
        np.testing.assert_allclose(probabilities, clf.predict_proba(x[TRAIN:]), rtol=1e-4, atol=1e-5)
        print("onnxruntime matches scikit-learn", flush=True)


def main(argv):
    which = argv or ["keras", "sklearn"]
    unknown = set(which) - {"keras", "sklearn"}
    if unknown:
        sys.exit(f"usage: make_framework_models.py [keras] [sklearn]; unknown: {' '.join(sorted(unknown))}")
    os.makedirs(MODELS, exist_ok=True)
    if "keras" in which:
        make_keras()
    if "sklearn" in which:
        make_sklearn()


if __name__ == "__main__":
    main(sys.argv[1:])
