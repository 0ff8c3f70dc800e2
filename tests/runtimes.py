"""Shared by the runtime tests (test_runtime_openvino.py, test_runtime_reference.py, test_runtime_cpp.py): every model
in models/ as the other tests load it (skeletons materialized with tests/zoo.py's seeded weights), a small input for
it, its compiled graph (compiled once per session) and onnxruntime's outputs on it, the reference the other runtimes
are compared with; and OpenVINO, where its wheel is installed.

Inputs: float inputs are uniform in [-1, 1] at the model's own size, batch 1 (BATCH); integer token ids are drawn
below the size of the embedding table they index, and an attention mask is 1 except for the last PAD positions
(whose ids are 0, the pad id of the text models here)."""
import glob
import os

import numpy as np
import onnx
import onnxruntime as ort

import onnx_lrp
from conftest import MODELS, cached, compiled_once
from test_real_models import PACKAGED
from zoo import WEIGHT_SEED, fill_model

BATCH = 1
PAD = 3
# models whose input dims are not all fixed besides the batch: the size test_real_models.py gives them
INPUT_SHAPES = {f"real/{file}": meta["input_shapes"] for file, meta in PACKAGED.items()}
# models/recurrent/ (tests/test_recurrent.py) has time-first, state-input and per-step variants these generic feeds
# do not fit; two batch-first ones stand for the unrolled LSTM and GRU on every runtime. models/packaged/ (the wheels'
# recognizers, detectors and VADs) have tests/test_package_models.py
RECURRENT = ("recurrent/lstm_1l_bi_bf.onnx", "recurrent/gru_2l_bf.onnx")
NAMES = sorted(name for name in (os.path.relpath(p, MODELS) for p in glob.glob(os.path.join(MODELS, "**", "*.onnx"),
                                                                               recursive=True))
               if not name.startswith(("recurrent/", "packaged/")) or name in RECURRENT)


def path(name):
    return os.path.join(MODELS, name)


def is_skeleton(model):
    return any(t.doc_string.startswith("fill ") for t in model.graph.initializer)


def stored_as_skeleton(name):
    return cached(("runtimes", "skeleton", name),
                  lambda: is_skeleton(onnx.load(path(name), load_external_data=False)))


def original(name):
    """The model as a ModelProto, a skeleton filled with WEIGHT_SEED's weights."""
    def make():
        model = onnx.load(path(name))
        return fill_model(model, WEIGHT_SEED, source=name) if is_skeleton(model) else model
    return cached(("runtimes", "model", name), make)


def compiled(name, composite=None):
    """onnx_lrp.compile with the default seed: once per session (by path through compiled_once where the file is
    complete, so other tests share it; skeletons from their materialized weights)."""
    options = {"input_shapes": INPUT_SHAPES[name]} if name in INPUT_SHAPES else {}
    if not stored_as_skeleton(name):
        return compiled_once(path(name), composite, "logit", **options)
    return cached(("runtimes", "compiled", name, composite),
                  lambda: onnx_lrp.compile(original(name), composite, **options))


def vocabulary_size(model, input_name):
    """The row count of the constant table a Gather indexes with `input_name` (through Casts and reshapes), or
    None."""
    tables = {t.name: t.dims[0] for t in model.graph.initializer if t.dims}
    sources = {input_name}
    for node in model.graph.node:
        if node.op_type in ("Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze") and node.input[0] in sources:
            sources.add(node.output[0])
        if node.op_type == "Gather" and node.input[1] in sources and node.input[0] in tables:
            return int(tables[node.input[0]])
    return None


def feeds(name, batch=BATCH, seed=1):
    """The model's inputs (all but `target`) for a batch of `batch`, seeded."""
    model = original(name)
    rng = np.random.default_rng(seed)
    initializers = {t.name for t in model.graph.initializer}
    fixed = INPUT_SHAPES.get(name, {})
    result = {}
    for i in [i for i in model.graph.input if i.name not in initializers]:
        t = i.type.tensor_type
        dims = fixed.get(i.name) or [d.dim_value if d.dim_value > 0 else None for d in t.shape.dim]
        shape = [batch] + [int(d) for d in dims[1:]]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        if dtype.kind == "f":
            result[i.name] = rng.uniform(-1, 1, size=shape).astype(dtype)
        elif "mask" in i.name:
            mask = np.ones(shape, dtype)
            mask[..., -PAD:] = 0
            result[i.name] = mask
        else:
            vocabulary = vocabulary_size(model, i.name)
            assert vocabulary, f"{name}: no embedding table is indexed by the integer input {i.name}"
            result[i.name] = rng.integers(1, vocabulary, size=shape).astype(dtype)
    masks = [v for k, v in result.items() if "mask" in k]
    for k, v in result.items():  # pads: id 0 where the mask is 0
        if masks and v.dtype.kind == "i" and "mask" not in k:
            v[masks[0] == 0] = 0
    return result


def explained_input(name):
    """The input whose relevance the compiled graph gives (the first input; relevance_<its name>)."""
    return next(iter(feeds(name)))


def compiled_feeds(name, batch=BATCH, target=-1):
    return dict(feeds(name, batch), target=np.full(batch, target, np.int64))


def onnxruntime_outputs(name, composite=None):
    """{output name: array} of the compiled graph on onnxruntime's CPU provider: the reference."""
    def make():
        session = ort.InferenceSession(compiled(name, composite).SerializeToString(),
                                       providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(None, compiled_feeds(name))))
    return cached(("runtimes", "onnxruntime", name, composite), make)


def relevance_error(ours, reference):
    """max|ours - reference| / max|reference| (relative to the largest relevance; NaN anywhere gives inf)."""
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    if ours.shape != reference.shape:
        raise AssertionError(f"shape {ours.shape} != reference {reference.shape}")
    scale = np.abs(reference).max()
    assert scale > 0, "the reference relevance is all zero"
    difference = np.abs(ours - reference).max()
    return float(difference / scale) if np.isfinite(difference) else float("inf")


# --- OpenVINO ---------------------------------------------------------------------------------------------------

def openvino_or_none():
    try:
        import openvino
    except ImportError:
        return None
    return openvino


def openvino_outputs(name, tmp_dir, composite=None, precision="f32"):
    """{output name: array} of the compiled graph on OpenVINO's CPU plugin, read from an .onnx file (OpenVINO's
    ONNX frontend) and compiled with INFERENCE_PRECISION_HINT `precision` (None: the plugin's default, bf16 on CPUs
    that have it)."""
    import openvino as ov
    file = os.path.join(tmp_dir, name.replace(os.sep, "__"))
    if not os.path.exists(file):
        onnx.save(compiled(name, composite), file)
    core = ov.Core()
    config = {} if precision is None else {"INFERENCE_PRECISION_HINT": precision}
    request = core.compile_model(core.read_model(file), "CPU", config).create_infer_request()
    result = request.infer(compiled_feeds(name))
    wanted = {o.name for o in compiled(name, composite).graph.output}
    # a port has every name of the tensor (OpenVINO merges the names of tensors its passes fold together)
    return {(port.get_names() & wanted).pop(): np.array(value) for port, value in result.items()}


def openvino_default_precision():
    import openvino as ov
    return str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))
