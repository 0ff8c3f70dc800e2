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
        if not isinstance(model, onnx.ModelProto):
            model = os.fspath(model)
            proto = onnx.load(model, load_external_data=False) if os.path.isfile(model) else None
        else:
            proto = model
        compiled_with = _meta(proto).get("onnx_lrp.composite") if proto is not None else None
        del proto  # (a file's weights: not held while it compiles)
        if compiled_with is not None:
            if composite is not None or options:
                raise OnnxLrpError(f"this model is compiled already (composite '{compiled_with}'); pass the original "
                                   "model to choose a composite or rule parameters",
                                   path=model if isinstance(model, str) else None)
            data = model if isinstance(model, str) else model.SerializeToString()
        else:
            options.setdefault("layer_sums", True)
            data = _compiled_bytes(model, composite, options)
        if batch_size < 1:
            raise OnnxLrpError(f"batch_size must be at least 1 (got {batch_size})")
        self.batch_size = int(batch_size)
        self.session = make_session(data, providers)
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
        if isinstance(x, dict):
            missing = [i.name for i in self.inputs if i.name not in x]
            if missing:
                raise OnnxLrpError(f"explain: inputs {', '.join(missing)} are missing (the model reads "
                                   f"{', '.join(i.name for i in self.inputs)})")
            return {i.name: np.asarray(x[i.name]) for i in self.inputs}
        if len(self.inputs) != 1:
            raise OnnxLrpError(f"the model has {len(self.inputs)} inputs ({', '.join(i.name for i in self.inputs)}); "
                               "pass a dict {name: array}")
        return {self.inputs[0].name: np.asarray(x)}

    def explain(self, x, target=None, progress=False):
        """Relevance of `target` (None or negative: each sample's top class; an int or one per sample) for the
        batch `x` (an array, or {input name: array}); runs in chunks of batch_size."""
        feeds = self._feeds(x)
        n = len(next(iter(feeds.values())))
        targets = np.full(n, -1, np.int64) if target is None else np.broadcast_to(
            np.asarray(target, np.int64), (n,)).copy()
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
            parts.append(dict(zip(names, self.session.run(names, chunk))))
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


def _meta(model):
    return {p.key: p.value for p in model.metadata_props}
