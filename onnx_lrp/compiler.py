"""compile(): model.onnx -> an ONNX model that computes the prediction and its LRP relevance in one graph."""
import copy
import fnmatch
import json
import os
from collections import defaultdict
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import onnx
from onnx import TensorProto, helper

from . import __version__
from .composites import DEFAULT_COMPOSITE, DEFAULT_PARAMS, default_composite
from .errors import OnnxLrpError
from .graph import GraphBuilder
from .load import (batch_axes, check_and_upgrade, check_opset, default_opset, fill_interface, override_input_shapes,
                   pin_input_values, read_model, tensor_shapes, without_weights)
from .ops import REGISTRY
from .passes import canonicalize
from .passes.structure import PruneUnused
from .plan import make_plan
from .precision import restore_interface, widen_to_float32
from .vanishing import positive_parts
from .rules.base import check_positive

SEEDS = ("logit", "one-hot")
TARGET = "target"
OUTPUT_RELEVANCE = "output_relevance"


def compile(model, composite=None, *, epsilon=1e-6, gamma=0.25, alpha=2.0, beta=1.0, low=None,
            high=None, stabilizer=1e-6, seed="logit", output=None, rules=(), input_shapes=None, opset=None,
            layer_relevance=(), layer_sums=False, output_relevance=False, input_values=None, notes=None, verify=True):
    """Compile `model` (a path or an onnx.ModelProto) into a relevance graph; returns an onnx.ModelProto.

    composite: a name from COMPOSITES; None picks attnlrp for a model with attention or LayerNorm/RMSNorm and
    epsilon-plus-flat otherwise (the notes say which).

    rules: 'PATTERN=RULE[:key=value,...]' overrides; PATTERN is an op type (Conv, Gemm, MatMul) or a node-name
    glob. input_values: {input name: value} pins setting inputs (a sample rate): each becomes a constant and leaves
    the compiled model's inputs, and the Ifs it decides are inlined. input_shapes: {input name: [dim, ...]} fixes dynamic input dims (an int fixes one, a string keeps it
    symbolic), as onnxsim's --overwrite-input-shape. opset: the opset of the compiled model (16 up to the newest the
    installed onnxruntime loads; default: the model's own, at least 16); the model is converted first.
    layer_relevance: node names or globs; each matching node on the explained path adds an output
    `relevance_at_<node name>` with the relevance at that node's output. layer_sums: add the output
    `relevance_layer_sums` [N, layers, 2], per linear layer (in graph order, names in the metadata
    `onnx_lrp.layer_sums`) the relevance summed over its input and over its output; their difference is what the
    bias (and the stabilizer) absorbed. notes: a list that receives what the compiler tells the user
    (folded BatchNorms, a cut Softmax).
    Raises OnnxLrpError, and only that, for any problem: with the model, with the options, or inside onnx-lrp
    (then the message says "internal error" and the original exception is chained as __cause__).
    """
    path = None if isinstance(model, onnx.ModelProto) else model
    try:
        return _compile(model, composite, epsilon=epsilon, gamma=gamma, alpha=alpha, beta=beta, low=low, high=high,
                        stabilizer=stabilizer, seed=seed, output=output, rules=rules, input_shapes=input_shapes,
                        opset=opset, layer_relevance=layer_relevance, layer_sums=layer_sums,
                        output_relevance=output_relevance, input_values=input_values, notes=notes, verify=verify)
    except OnnxLrpError:
        raise
    except (Exception, RecursionError) as exc:
        raise OnnxLrpError(f"internal error while compiling ({type(exc).__name__}: {exc}). Please report it with the "
                           "model; `onnx-lrp --debug compile ...` shows where it happened.",
                           path=None if path is None else os.fspath(path)) from exc


def _compile(model, composite, *, epsilon, gamma, alpha, beta, low, high, stabilizer, seed, output, rules,
             input_shapes, opset, layer_relevance, layer_sums, output_relevance, input_values, notes, verify):
    path = None if isinstance(model, onnx.ModelProto) else os.fspath(model)
    notes = [] if notes is None else notes
    if seed not in SEEDS:
        raise OnnxLrpError(f"unknown seed '{seed}'; choose one of: {', '.join(SEEDS)}", path=path)
    params = make_params(path, epsilon=epsilon, gamma=gamma, alpha=alpha, beta=beta, low=low, high=high,
                         stabilizer=stabilizer)
    prepared = prepare(model, composite, params, rules=rules, output=output, input_shapes=input_shapes, opset=opset,
                       notes=notes, output_relevance=output_relevance, input_values=input_values)
    model, plan = prepared.model, prepared.plan
    taps = LayerTaps(plan, layer_relevance, layer_sums, path)
    _emit(model, plan, seed, params["stabilizer"], taps, output_relevance)
    _record(model, plan, prepared.composite, params, seed, taps, output_relevance)
    restore_interface(model, prepared.half_interface)
    _finish_versions(model, prepared.source_ir)
    PruneUnused().run(model, notes)
    if verify:
        _verify(model, path)
    return model


def make_params(path=None, **values):
    """The rule parameters: DEFAULT_PARAMS updated with `values` (None keeps the default), the stabilizer checked."""
    params = dict(DEFAULT_PARAMS, **{k: v for k, v in values.items() if v is not None or k in ("low", "high")})
    try:
        params["stabilizer"] = check_positive("stabilizer", params["stabilizer"])
    except ValueError as exc:
        raise OnnxLrpError(str(exc), path=path) from None
    return params


class Prepared(NamedTuple):
    model: onnx.ModelProto  # the canonical model, shapes inferred: what the relevance pass is appended to
    plan: object
    composite: str
    half_interface: dict
    source_ir: int


def prepare(model, composite, params, *, rules=(), output=None, input_shapes=None, opset=None, notes=None,
            strict=True, output_relevance=False, input_values=None):
    """Read, check, canonicalize and plan: everything before the relevance pass is written. strict=False returns a
    plan whose `unsupported` lists the nodes that would stop compile (for `onnx-lrp inspect`)."""
    path = None if isinstance(model, onnx.ModelProto) else os.fspath(model)
    notes = [] if notes is None else notes
    opset = check_opset(opset, path)
    source = read_model(path) if path else copy.deepcopy(model)
    if not path and not source.graph.node:
        raise OnnxLrpError("the model holds no nodes.")
    source_ir = source.ir_version
    fill_interface(source)
    pin_input_values(source, input_values, path)
    if input_values:
        pinned = ", ".join(f"{name}={value!r}" for name, value in input_values.items())
        notes.append(f"note: input(s) pinned ({pinned}): the compiled model no longer takes them")
    override_input_shapes(source, input_shapes, path)
    half_interface = widen_to_float32(source)
    if half_interface:
        notes.append(f"note: float16 inputs/outputs {', '.join(half_interface)}: compiled in float32 inside, with "
                     "casts at the interface; the relevance outputs are float32")
    model = check_and_upgrade(source, path, opset=opset)
    canonicalize(model, notes)
    model = check_and_upgrade(model, path, check=False)  # shapes of the rewritten graph
    if composite is None:
        composite = default_composite(model)
        if composite != DEFAULT_COMPOSITE:
            notes.append(f"note: the model has attention or LayerNorm/RMSNorm: explained with the transformer "
                         f"composite '{composite}' (LXT's AttnLRP); --composite chooses another")
    plan = make_plan(model, composite, params, rules, output, path, strict=strict, output_relevance=output_relevance)
    notes.extend(plan.notes)
    return Prepared(model, plan, composite, half_interface, source_ir)


class LayerTaps:
    """Extra outputs inside the relevance pass: the relevance at chosen nodes' outputs, and per linear layer the
    relevance summed over its input and its output (bias relevance). In the gradient form relevance is the
    tensor times its gradient, as LXT reads it off a layer."""

    def __init__(self, plan, patterns, sums, path):
        self.gradient = plan.form == "gradient"
        self.at = []
        for pattern in patterns:
            matched = [s.name for s in plan.steps if fnmatch.fnmatchcase(s.name, pattern)]
            if not matched:
                known = ", ".join(s.name for s in plan.steps)
                raise OnnxLrpError(f"--layer-relevance '{pattern}' matches no node on the explained path; those "
                                   f"nodes are: {known}", path=path)
            self.at += [m for m in matched if m not in self.at]
        self.summed = [s.name for s in plan.steps if s.kind == "Linear"] if sums else []
        self.sums = {}  # layer name -> (input sum, output sum) tensors
        self.outputs = []  # (output name, relevance tensor, forward tensor) of the relevance at a node

    def relevance(self, b, tensor, arriving, scope):
        return b.op("Mul", [tensor, arriving], scope, "tensor_times_gradient") if self.gradient else arriving

    def per_sample_sum(self, b, tensor, arriving, scope):
        rank = len(b.shapes[tensor])
        summed = b.reduce("ReduceSum", self.relevance(b, tensor, arriving, scope), range(1, rank), scope,
                          "per_sample_sum", keepdims=0)
        return b.op("Unsqueeze", [summed, b.const(np.array([1, 2], np.int64), scope, "sum_axes", np.int64)], scope,
                    "per_sample_sum_column")

    def tap(self, b, step, rel_outs, emitted):
        if step.name in self.at and rel_outs[0] is not None:
            self.outputs.append((f"relevance_at_{step.name}",
                                 self.relevance(b, step.outputs[0], rel_outs[0], step.name), step.outputs[0]))
        if step.name in self.summed and rel_outs[0] is not None:
            x = step.layer.x
            into = self.per_sample_sum(b, x, emitted[x], step.name) if x in emitted else b.op(
                "Mul", [self.per_sample_sum(b, step.outputs[0], rel_outs[0], step.name), b.scalar(0.0)], step.name,
                "nothing_in")
            self.sums[step.name] = (into, self.per_sample_sum(b, step.outputs[0], rel_outs[0], step.name))

    def finish(self, b, graph, batch_dim):
        for name, tensor, forward in self.outputs:
            b.nodes.append(helper.make_node("Identity", [tensor], [name], name=b.fresh(name, "output")))
            dims = b.shapes.get(forward)
            graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT,
                                                              None if dims is None else [batch_dim] + dims[1:]))
        self.summed = [n for n in self.summed if n in self.sums]  # (a layer no relevance reached has no sums)
        if self.summed:
            pairs = [b.op("Concat", list(self.sums[n]), n, "in_out", axis=2) for n in self.summed]
            b.nodes.append(helper.make_node("Concat", pairs, ["relevance_layer_sums"], axis=1,
                                            name=b.fresh("layer_sums", "output")))
            graph.output.append(helper.make_tensor_value_info("relevance_layer_sums", TensorProto.FLOAT,
                                                              [batch_dim, len(self.summed), 2]))


def _emit(model, plan, seed, norm_stabilizer, taps, output_relevance=False):
    graph = model.graph
    b = GraphBuilder(graph, tensor_shapes(graph), default_opset(model), norm_stabilizer)
    b.positive_part = positive_parts(plan, seed)
    scope = "seed"
    logits = plan.logits
    chosen = _output_relevance(b, plan, scope) if output_relevance else _one_hot_target(b, plan, scope)
    gradient = plan.form == "gradient"
    if not gradient:
        start = chosen if seed == "one-hot" else b.op("Mul", [chosen, logits], scope, "logit")
    else:  # a gradient of 1 at the logit gives relevance logit (LXT's seed); one-hot relevance: 1 / logit
        start = chosen if seed == "logit" else b.op("Mul", [chosen, b.op(
            "Reciprocal", [logits], scope, "inverse_logit")], scope, "inverse_seed")

    arriving = defaultdict(list)
    arriving[logits].append(start)
    for step in reversed(plan.steps):
        rel_outs = [b.sum(arriving.pop(o), step.name, "relevance_sum") if arriving.get(o) else None
                    for o in step.outputs]
        if all(r is None for r in rel_outs):
            continue
        emitter = REGISTRY[step.kind].gradient if gradient else REGISTRY[step.kind].emit
        emitted = {name: r for name, r in emitter(b, step, rel_outs).items() if name in step.live_inputs}
        for name, relevance in emitted.items():
            arriving[name].append(relevance)
        taps.tap(b, step, rel_outs, emitted)
    for name in plan.explained_inputs:
        out = f"relevance_{name}"
        if arriving.get(name):
            total = b.sum(arriving[name], name, "relevance_sum")
            if gradient and name not in plan.token_inputs:  # input x gradient (token ids: summed by Embedding)
                total = b.op("Mul", [name, total], name, "input_times_gradient")
            b.nodes.append(helper.make_node("Identity", [total], [out], name=b.fresh(name, "output")))
        else:  # the input reaches the output only through paths that carry no relevance
            b.nodes.append(helper.make_node("ConstantOfShape", [b.op("Shape", [name], name, "shape")], [out],
                                            name=b.fresh(name, "output")))
    batch_dim = _batch_dim(graph, plan)
    graph.node.extend(b.nodes)

    if plan.model_output not in {o.name for o in graph.output}:  # an inner tensor explained: it becomes an output
        graph.output.append(next((vi for vi in graph.value_info if vi.name == plan.model_output),
                                 helper.make_tensor_value_info(plan.model_output, TensorProto.FLOAT, None)))
    if output_relevance:  # the shape of the model output asked for (the logits may be a reshape of it)
        dims = next((vi.type.tensor_type.shape.dim for vi in graph.output if vi.name == plan.model_output), None)
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in dims] if dims else None
        if shape:
            shape[0] = batch_dim
        graph.input.append(helper.make_tensor_value_info(OUTPUT_RELEVANCE, TensorProto.FLOAT, shape))
    else:
        graph.input.append(helper.make_tensor_value_info(TARGET, TensorProto.INT64, [batch_dim]))
    inputs = {i.name: i for i in graph.input}
    for name in plan.explained_inputs:
        dims = inputs[name].type.tensor_type.shape.dim
        shape = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in dims]
        graph.output.append(helper.make_tensor_value_info(f"relevance_{name}", TensorProto.FLOAT, shape))
    emitted = len(b.nodes)
    taps.finish(b, graph, batch_dim)  # extra outputs after the relevance of the inputs
    graph.node.extend(b.nodes[emitted:])
    graph.initializer.extend(b.initializers)


def _output_relevance(b, plan, scope):
    """The output_relevance input, on the logits: where a final Softmax was cut behind reshapes that keep each score
    apart (a recognizer's [N*T, C] logits reshaped to [N, T, C]), the same elements in the logits' shape."""
    if plan.logits == plan.model_output:
        return OUTPUT_RELEVANCE
    return b.op("Reshape", [OUTPUT_RELEVANCE, b.op("Shape", [plan.logits], scope, "logits_shape")], scope,
                "output_relevance_on_logits")


def _one_hot_target(b, plan, scope):
    """one_hot(target) [N, classes]; a negative target picks the top class."""
    top = b.op("ArgMax", [plan.logits], scope, "top_class", axis=1, keepdims=0)
    wants_top = b.op("Less", [TARGET, b.scalar(0, dtype=np.int64)], scope, "wants_top_class")
    chosen = b.op("Where", [wants_top, top, TARGET], scope, "class")
    # one_hot(chosen) as (chosen == 0..classes-1): OneHot's depth is read differently across runtimes
    column = b.op("Unsqueeze", [chosen, b.const(np.array([1], np.int64), scope, "class_axis", np.int64)], scope,
                  "class_column")
    classes = b.const(np.arange(plan.classes, dtype=np.int64)[None, :], scope, "class_ids", np.int64)
    return b.op("Cast", [b.op("Equal", [column, classes], scope, "is_target")], scope, "one_hot", to=1)


def _batch_dim(graph, plan):
    """The batch of the explained score (its dim 0), as the model names it: `target` and the taps have it."""
    for vi in (*graph.value_info, *graph.output):
        dims = vi.type.tensor_type.shape.dim if vi.name == plan.logits else ()
        if len(dims) and (dims[0].dim_param or dims[0].HasField("dim_value")):
            return dims[0].dim_param or dims[0].dim_value
    axes = batch_axes(graph)
    first = next(i for i in graph.input if i.name == plan.explained_inputs[0])
    batch = first.type.tensor_type.shape.dim[axes.get(first.name, 0)]
    return batch.dim_param or (batch.dim_value if batch.HasField("dim_value") else "N")


def _record(model, plan, composite, params, seed, taps, output_relevance=False):
    meta = {
        "onnx_lrp.version": __version__,
        "onnx_lrp.composite": composite,
        "onnx_lrp.params": json.dumps({k: np.asarray(v).tolist() for k, v in params.items() if v is not None}),
        "onnx_lrp.seed": seed,
        "onnx_lrp.seed_input": OUTPUT_RELEVANCE if output_relevance else TARGET,
        "onnx_lrp.explained_output": plan.model_output,
        "onnx_lrp.logits": plan.logits,
        "onnx_lrp.plan": json.dumps(plan.describe()),
    }
    if taps.summed:
        meta["onnx_lrp.layer_sums"] = json.dumps(taps.summed)
    kept = [p for p in model.metadata_props if not p.key.startswith("onnx_lrp.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in meta.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


@lru_cache(maxsize=1)
def max_runtime_ir_version():
    """The highest IR version the installed onnxruntime loads (onnx may write newer ones than it accepts)."""
    import onnxruntime as ort
    for ir in range(onnx.IR_VERSION, 6, -1):
        g = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = ir
        try:
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
            return ir
        except Exception:
            continue
    return 8


def _finish_versions(model, source_ir):
    needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    model.ir_version = min(max(source_ir, needed), max(max_runtime_ir_version(), needed))



def _verify(model, path):
    """onnx.checker (full) and an onnxruntime session, on a copy without the weights (load.without_weights): the
    graph is what the compiler wrote; the weights are the model's own, and serializing them would cost seconds and a
    copy of them (and over 2 GB need external data)."""
    import onnxruntime as ort
    light = without_weights(model)
    try:
        onnx.checker.check_model(light, full_check=True)
    except Exception as exc:
        raise OnnxLrpError(f"internal error: the compiled graph fails onnx.checker "
                           f"({str(exc).splitlines()[0]}). Please report this with the model.", path=path) from None
    try:
        options = ort.SessionOptions()  # loading is the check; graph optimizations would only cost time
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3  # (its warnings about unused initializers are no news to the user)
        ort.InferenceSession(light.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxLrpError(f"internal error: onnxruntime cannot load the compiled graph ({exc}). "
                           "Please report this with the model.", path=path) from None
