"""Explainer: relevance for numpy inputs in three lines, from a plain model (compiled in memory, cached) or an
already compiled one, on the CPU or CUDA, in batches."""
import json
import os
from typing import NamedTuple, Optional

import numpy as np
import onnx

from .errors import OnnxLrpError

PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}
_COMPILED = {}  # (file identity, options) -> serialized compiled model; a few entries
_CACHE_SIZE = 4


class Explanation(NamedTuple):
    relevance: object  # np.ndarray for a model with one explained input, else {input name: array}
    output: Optional[np.ndarray]  # the explained model output (None if it is not a tensor, e.g. a ZipMap)
    target: np.ndarray  # the class explained per sample (top class resolved)
    layer_sums: Optional[dict] = None  # linear layer -> [N, 2]: relevance summed over its input, its output
    at: Optional[dict] = None  # node name -> the relevance at its output (compile's layer_relevance)

    @property
    def prediction(self):
        return None if self.output is None else self.output.argmax(axis=1)

    @property
    def bias_relevance(self):
        """Per linear layer, [N]: the relevance its bias and stabilizer absorbed (output sum minus input sum)."""
        return None if self.layer_sums is None else {k: v[:, 1] - v[:, 0] for k, v in self.layer_sums.items()}


def is_compiled(model):
    return any(p.key == "onnx_lrp.composite" for p in model.metadata_props)


def _file_key(path):
    stat = os.stat(path)
    return os.path.realpath(path), stat.st_mtime_ns, stat.st_size


def _compiled_bytes(model, composite, options):
    """The compiled model as bytes; a file compiled with the same options is compiled once per process."""
    from .compiler import compile as compile_model
    key = None
    if not isinstance(model, onnx.ModelProto):
        key = (_file_key(model), composite, json.dumps(options, sort_keys=True, default=str))
        if key in _COMPILED:
            return _COMPILED[key]
    data = compile_model(model, composite, **options).SerializeToString()
    if key is not None:
        while len(_COMPILED) >= _CACHE_SIZE:
            _COMPILED.pop(next(iter(_COMPILED)))
        _COMPILED[key] = data
    return data


def session_options():
    """onnxruntime options for a compiled graph: its weights and activations held once.

    - session.disable_prepacking: every Gemm/MatMul node packs its own copy of a constant B, and the forward and
      the adjoint of a dense layer read the same weight (VGG-16 held its 494 MB of dense weights three times; its
      unpacked adjoints cost 2 % of its time, docs/benchmarks.md).
    - enable_mem_pattern=False: the planned arena block of a relevance graph is far larger than what its
      tensors, freed as soon as the backward has read them, need at once (ResNet-50, batch 8: 2.7 GB against 1.7 GB).
    """
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.disable_prepacking", "1")
    return options


def make_session(model_bytes, providers="auto", options=None):
    """An onnxruntime session. "cuda" fails loudly unless CUDA really attached; "auto" tries CUDA quietly (no
    onnxruntime error log when it cannot load) and falls back to the CPU."""
    import onnxruntime as ort
    options = options or session_options()
    if isinstance(providers, (list, tuple)):
        return ort.InferenceSession(model_bytes, options, providers=list(providers))
    if providers not in ("auto", "cpu", "cuda"):
        raise OnnxLrpError(f"providers={providers!r}: choose 'auto', 'cpu', 'cuda' or a list of onnxruntime "
                           "execution providers")
    available = ort.get_available_providers()
    if providers == "cpu" or "CUDAExecutionProvider" not in available:
        if providers == "cuda":
            raise OnnxLrpError(f"CUDA was asked for, but this onnxruntime has no CUDAExecutionProvider (it has "
                               f"{', '.join(available)}). Install onnxruntime-gpu, or use providers='cpu'.")
        return ort.InferenceSession(model_bytes, options, providers=PROVIDERS["cpu"])
    if providers == "auto":
        options.log_severity_level = 4
        ort.set_default_logger_severity(4)  # the provider bridge logs its load failure on the default logger
    try:
        session = ort.InferenceSession(model_bytes, options, providers=PROVIDERS["cuda"])
    finally:
        if providers == "auto":
            ort.set_default_logger_severity(2)  # onnxruntime's default: warnings
    if providers == "cuda" and session.get_providers()[0] != "CUDAExecutionProvider":
        raise OnnxLrpError(f"CUDA was asked for, but onnxruntime did not attach CUDAExecutionProvider (the session "
                           f"runs on {', '.join(session.get_providers())}): CUDA or cuDNN libraries are missing or do "
                           "not match this onnxruntime-gpu. Its log above says which; or use providers='cpu'.")
    return session


class Explainer:
    """Explainer(model, composite=None, providers="auto", batch_size=32, **compile options).explain(x, target).

    model: a path or onnx.ModelProto, plain (compiled here with `composite` and the options of onnx_lrp.compile:
    epsilon, gamma, alpha, beta, low, high, stabilizer, seed, output, rules, input_shapes, layer_relevance) or
    already compiled by onnx-lrp (then no composite or options may be given). Layer sums (bias relevance) are
    compiled in unless layer_sums=False.
    """

    def __init__(self, model, composite=None, *, providers="auto", batch_size=32, **options):
        if batch_size < 1:
            raise OnnxLrpError(f"batch_size must be at least 1 (got {batch_size})")
        if not isinstance(model, onnx.ModelProto):
            model = os.fspath(model)
            proto = peek_model(model)
        else:
            proto = model
        self.path = model if isinstance(model, str) else None
        compiled_with = _meta(proto).get("onnx_lrp.composite")
        if compiled_with is not None and self.path is not None and has_external_data(proto):
            from .load import read_model
            read_model(self.path)  # its data inside its folder and present: compile's check (a plain model: compile's)
        del proto  # (a file's weights: not held while it compiles)
        if compiled_with is not None:
            if composite is not None or options:
                raise OnnxLrpError(f"this model is compiled already (composite '{compiled_with}'); pass the original "
                                   "model to choose a composite or rule parameters", path=self.path)
            data = model if isinstance(model, str) else model.SerializeToString()
        else:
            options.setdefault("layer_sums", True)
            data = _compiled_bytes(model, composite, options)
        self.batch_size = int(batch_size)
        try:
            self.session = make_session(data, providers)
        except OnnxLrpError:
            raise
        except Exception as exc:  # onnxruntime's Fail, InvalidGraph, ...: a file compiled elsewhere or damaged
            raise OnnxLrpError(f"onnxruntime cannot load the compiled model ({type(exc).__name__}: "
                               f"{_first_line(exc)}). Compile the original model again with this onnx-lrp.",
                               path=self.path) from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.composite = meta.get("onnx_lrp.composite")
        self.explained_output = meta.get("onnx_lrp.explained_output")
        self.layer_names = json.loads(meta.get("onnx_lrp.layer_sums", "[]"))
        self.plan = json.loads(meta.get("onnx_lrp.plan", "[]"))
        self.inputs = [i for i in self.session.get_inputs() if i.name != "target"]
        outputs = {o.name: o for o in self.session.get_outputs()}
        self.relevance_outputs = [n for n in outputs if n.startswith("relevance_") and n != "relevance_layer_sums"
                                  and not n.startswith("relevance_at_")]
        self.at_outputs = [n for n in outputs if n.startswith("relevance_at_")]
        output = outputs.get(self.explained_output)
        self._fetch_output = output is not None and output.type.startswith("tensor(")

    @property
    def providers(self):
        return self.session.get_providers()

    def _feeds(self, x):
        """{input name: array} checked against the model's inputs and cast to their types; the batch size."""
        names = [i.name for i in self.inputs]
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            unknown = [str(k) for k in x if k not in names]
            if missing or unknown:
                raise OnnxLrpError(f"explain: inputs {', '.join(missing)} are missing (the model reads "
                                   f"{', '.join(names)})" if missing else f"explain: {', '.join(unknown)} is not an "
                                   f"input of the model (it reads {', '.join(names)})", path=self.path)
        elif len(self.inputs) != 1:
            raise OnnxLrpError(f"the model has {len(self.inputs)} inputs ({', '.join(names)}); pass a dict "
                               "{name: array}", path=self.path)
        else:
            x = {names[0]: x}
        feeds = {i.name: self._checked(i, x[i.name]) for i in self.inputs}
        sizes = {name: len(a) for name, a in feeds.items()}
        if len(set(sizes.values())) > 1:
            raise OnnxLrpError("explain: the inputs hold different numbers of samples (" +
                               ", ".join(f"{k}: {v}" for k, v in sizes.items()) + ")", path=self.path)
        n = next(iter(sizes.values()))
        if n == 0:
            raise OnnxLrpError("explain: no samples to explain (the batch dim is 0); give at least one", path=self.path)
        return feeds, n

    def _checked(self, model_input, value):
        name, dims = model_input.name, list(model_input.shape)
        want = "[" + ", ".join(str(d) if isinstance(d, int) else str(d or "?") for d in dims) + "]"
        try:
            a = np.asarray(value)
        except Exception as exc:  # a ragged list, ...
            raise OnnxLrpError(f"explain: input '{name}' is not an array ({type(exc).__name__}: {exc}); the model "
                               f"reads {want}", path=self.path) from None
        if a.dtype.hasobject or a.dtype.kind not in "biuf":
            raise OnnxLrpError(f"explain: input '{name}' holds {a.dtype} values, not numbers; the model reads "
                               f"{model_input.type}", path=self.path)
        if a.ndim != len(dims) or any(isinstance(d, int) and d != n for d, n in list(zip(dims, a.shape))[1:]):
            hint = (" (one sample? add the batch dim: x[None])" if a.ndim == len(dims) - 1 else "")
            raise OnnxLrpError(f"explain: input '{name}' has shape {list(a.shape)}; the model reads a batch {want}"
                               f"{hint}", path=self.path)
        dtype = _DTYPES.get(model_input.type)
        if dtype is not None and a.dtype != dtype:
            if a.dtype.kind == "f" and np.dtype(dtype).kind != "f":
                raise OnnxLrpError(f"explain: input '{name}' holds floats ({a.dtype}); the model reads "
                                   f"{model_input.type} (e.g. token ids): pass integers", path=self.path)
            a = a.astype(dtype)
        return a

    def _targets(self, target, n):
        if target is None:
            return np.full(n, -1, np.int64)
        try:
            t = np.asarray(target)
        except (OverflowError, ValueError, TypeError):  # an int beyond int64, a ragged list
            t = np.asarray(target, dtype=object)
        if t.ndim > 1 or t.size not in (1, n):
            raise OnnxLrpError(f"explain: target gives {t.size} class(es) in shape {list(t.shape)} for {n} "
                               "sample(s); give None (each sample's top class), one class, or one per sample",
                               path=self.path)
        values = []
        for v in t.reshape(-1).tolist():
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            if isinstance(v, bool) or not isinstance(v, int):
                raise OnnxLrpError(f"explain: target {v!r} is not a class index (an integer)", path=self.path)
            if not -2 ** 63 <= v < 2 ** 63:
                raise OnnxLrpError(f"explain: target {v} is beyond int64, the type of the model's target input; "
                                   "give a class index (negative: each sample's top class)", path=self.path)
            values.append(v)
        return np.broadcast_to(np.asarray(values, np.int64), (n,)).copy()

    def explain(self, x, target=None, progress=False):
        """Relevance of `target` (None or negative: each sample's top class; an int or one per sample) for the
        batch `x` (an array, or {input name: array}); runs in chunks of batch_size."""
        feeds, n = self._feeds(x)
        targets = self._targets(target, n)
        names = ([self.explained_output] if self._fetch_output else []) + self.relevance_outputs + self.at_outputs
        names += ["relevance_layer_sums"] if self.layer_names else []
        chunks = range(0, n, self.batch_size)
        if progress:
            from tqdm import tqdm
            chunks = tqdm(chunks, total=len(chunks), unit="batch", desc="explaining")
        parts = []
        for start in chunks:
            chunk = {k: v[start:start + self.batch_size] for k, v in feeds.items()}
            chunk["target"] = targets[start:start + self.batch_size]
            try:
                parts.append(dict(zip(names, self.session.run(names, chunk))))
            except Exception as exc:  # a shape the model's own checks refuse, ...
                last = start + len(chunk["target"]) - 1
                raise OnnxLrpError(f"explain: onnxruntime failed on samples {start} to {last} ({type(exc).__name__}: "
                                   f"{_first_line(exc)})", path=self.path) from None
        joined = {k: np.concatenate([p[k] for p in parts]) for k in names}
        output = joined.get(self.explained_output) if self._fetch_output else None
        if output is not None:
            targets = np.where(targets < 0, output.argmax(axis=1), targets)
        relevance = {k[len("relevance_"):]: joined[k] for k in self.relevance_outputs}
        sums = joined.get("relevance_layer_sums")
        return Explanation(
            relevance=next(iter(relevance.values())) if len(relevance) == 1 else relevance,
            output=output, target=targets,
            layer_sums=None if sums is None else {name: sums[:, k] for k, name in enumerate(self.layer_names)},
            at={k[len("relevance_at_"):]: joined[k] for k in self.at_outputs} or None)


_DTYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(float16)": np.float16,
           "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(uint8)": np.uint8,
           "tensor(bool)": np.bool_}


def peek_model(path):
    """The model file without its external data, for its metadata and interface; a file that is missing, a folder,
    empty or not ONNX is refused with compile's own message (load.read_model)."""
    from .load import read_model
    try:
        model = onnx.load(path, load_external_data=False) if os.path.isfile(path) and os.path.getsize(path) else None
    except Exception:  # noqa: BLE001 - read_model words it
        model = None
    if model is None or (not model.graph.node and not model.graph.output):
        read_model(path)  # raises its OnnxLrpError
        raise OnnxLrpError("cannot be read as an ONNX model.", path=path)
    return model


def has_external_data(model):
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in _tensors(model))


def _tensors(model):
    yield from model.graph.initializer
    for node in model.graph.node:
        yield from (a.t for a in node.attribute if a.HasField("t"))


def _first_line(exc):
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _meta(model):
    return {p.key: p.value for p in model.metadata_props}
