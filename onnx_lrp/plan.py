"""Plan: which nodes lie between the explained input(s) and the explained output, and what each one gets.

Linear nodes get their rule from the composite and the user's overrides; every other node gets its registered
emitter. Every node the compiler cannot handle is collected, so they are all reported at once.
"""
import fnmatch
from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto

from .composites import COMPOSITES, MixedComposite, composite_for
from .dataflow import Dataflow
from .errors import OnnxLrpError, UnsupportedNodesError
from .load import tensor_shapes, tensor_types
from .ops import REGISTRY
from .ops.embedding import embedding_source
from .ops.movement import MOVEMENT_OPS
from .ops.linear import read_conv, read_conv_transpose, read_gemm, read_matmul
from .passes.base import consumers, constant_arrays
from .passes.recurrent import UNROLL_REFUSALS
from .rules import Rule, parse_rule_spec

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
CONTROL_FLOW = {"If", "Loop", "Scan"}
FINAL_SOFTMAX = {"Softmax", "LogSoftmax"}
_CLASS_KEEPING = {"Identity", "Dropout", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"}
LINEAR_KIND = {"Conv": "conv", "ConvTranspose": "conv", "Gemm": "dense", "MatMul": "dense"}


@dataclass
class Step:
    name: str
    kind: str  # registry key: the op type, or 'Linear'
    node: object
    outputs: list
    live_inputs: list
    layer: object = None
    rule: Rule = None
    extra: object = None  # what the op's check worked out at plan time for its emitter (a source map, axes, ...)


@dataclass
class PlanContext:
    constants: dict
    shapes: dict
    types: dict
    live: set
    users: dict
    producers: dict
    opsets: list
    params: dict = None
    composite: object = None
    flow: Dataflow = None


@dataclass
class Plan:
    steps: list
    explained_inputs: list
    model_output: str  # the model output the user asked to explain
    logits: str  # the tensor the seed is put on (the model output, or the input of a final Softmax)
    classes: int
    notes: list = field(default_factory=list)
    form: str = "relevance"  # or "gradient" (transformer composites): see ops/registry.py
    token_inputs: tuple = ()  # explained integer inputs (token ids looked up in an embedding table)
    unsupported: list = field(default_factory=list)  # (node, why) when planned with strict=False

    def describe(self):
        return [{"node": s.name, "op": "+".join(n.op_type for n in s.layer.nodes) if s.layer else s.node.op_type,
                 "rule": s.rule.describe() if s.rule else _describe_default(s)}
                for s in self.steps]


_DEFAULT_RELEVANCE = {"MaxPool": "winner-takes-all", "AveragePool": "norm", "GlobalAveragePool": "norm",
                      "ReduceMean": "norm", "ReduceSum": "norm", "Add": "norm", "Sum": "norm",
                      "Flatten": "reshape", "Reshape": "reshape", "Squeeze": "reshape", "Unsqueeze": "reshape",
                      "Transpose": "transpose", "Concat": "split back", "Split": "concat back",
                      "Embedding": "sum over the embedding", **{op: "route copies" for op in MOVEMENT_OPS}}
_INT_TYPES = {TensorProto.INT64, TensorProto.INT32}


def _describe_default(step):
    if hasattr(step.extra, "describe"):
        return step.extra.describe()
    return _DEFAULT_RELEVANCE.get(step.kind, "pass")


def _explained_tensor(name, producer):
    """A ZipMap (scikit-learn converters) turns the probabilities into a list of maps: explain its input."""
    node = producer.get(name)
    return node.input[0] if node is not None and node.op_type == "ZipMap" else name


def _pick_output(graph, types, producer, output, path):
    names = [o.name for o in graph.output]
    is_float = lambda name: types.get(_explained_tensor(name, producer)) in FLOAT_TYPES  # noqa: E731
    if output is not None:
        if output not in names and output not in producer:
            raise OnnxLrpError(f"--output '{output}' matches no model output and no tensor a node computes; the "
                               f"outputs are: {', '.join(names)}", path=path)
        if not is_float(output):
            raise OnnxLrpError(f"output '{output}' is not a float tensor (type "
                               f"{TensorProto.DataType.Name(types.get(output, 0))}); relevance explains a float "
                               "score. Pick a float output with --output.", path=path)
        return output
    floats = [n for n in names if is_float(n)]
    if not floats:
        raise OnnxLrpError(f"the model has no float output to explain (outputs: {', '.join(names)}).", path=path)
    return floats[0]


def reads(node):
    """Every tensor a node reads: its inputs and the outer-scope names its subgraphs (If/Loop/Scan) capture."""
    names = [n for n in node.input if n]
    for attr in node.attribute:
        for graph in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
            for inner in graph.node:
                names += [n for n in reads(inner) if n not in defined]
                defined.update(inner.output)
    return names


def _dims(dims):
    return None if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def make_plan(model, composite="epsilon-plus-flat", params=None, rules=(), output=None, path=None, strict=True,
              output_relevance=False):
    graph = model.graph
    shapes, types = tensor_shapes(graph), tensor_types(graph)
    constants = constant_arrays(graph)
    notes = []
    producer = {o: n for n in graph.node for o in n.output if o}
    model_output = _pick_output(graph, types, producer, output, path)
    if model_output not in {o.name for o in graph.output}:
        notes.append(f"note: the tensor '{model_output}' is explained (it is no model output: the compiled model "
                     "outputs it after the model's own outputs); branches that only other outputs read are left out")
    logits = _explained_tensor(model_output, producer)
    softmax = _final_softmax(logits, producer, constants, types)
    if softmax is not None:
        logits = softmax.input[0]
        notes.append(f"note: the final {softmax.op_type} '{softmax.name}' is left out of the explanation; the logits "
                     f"'{logits}' before it are explained")
    dims = shapes.get(logits)
    if output_relevance:
        if not dims:
            raise OnnxLrpError(f"the explained output '{logits}' has no known rank; output_relevance takes a "
                               "tensor of its shape", path=path)
    elif dims is None or len(dims) != 2 or dims[1] is None:
        raise OnnxLrpError(f"the explained output '{logits}' has shape {_dims(dims)}; `target` picks a class of a "
                           "[batch, classes] score. To explain one step, box, pixel region or any mix of its scores, "
                           "compile with --output-relevance (Python: output_relevance=True): the compiled model then "
                           "takes the relevance of that output as the input `output_relevance`.", path=path)

    init_names = {i.name for i in graph.initializer}
    model_inputs = [i.name for i in graph.input if i.name not in init_names]
    float_inputs = {n for n in model_inputs if types.get(n) in FLOAT_TYPES}
    int_inputs = {n for n in model_inputs if types.get(n) in _INT_TYPES}
    embeddings = {id(node): source for node in graph.node
                  if (source := embedding_source(node, constants, producer, int_inputs))}
    is_float = lambda name: types.get(name, TensorProto.FLOAT) in FLOAT_TYPES  # noqa: E731
    live = set(float_inputs)
    for node in graph.node:
        if id(node) in embeddings or any(n in live for n in reads(node)):
            live.update(o for o in node.output if o and is_float(o))
    needed = {logits}
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            needed.update(reads(node))
    looked_up = {embeddings[id(node)] for node in graph.node if id(node) in embeddings and node.output[0] in needed}
    explained = [n for n in model_inputs if (n in float_inputs and n in needed) or n in looked_up]
    if logits not in live or not explained:
        raise OnnxLrpError(f"the output '{logits}' depends on no float model input and on no token ids that feed "
                           "an embedding table; nothing to explain.", path=path)

    if composite not in COMPOSITES:
        raise OnnxLrpError(f"unknown composite '{composite}'; choose one of: {', '.join(COMPOSITES)}", path=path)
    ctx = PlanContext(constants, shapes, types, live, consumers(graph), producer, list(model.opset_import), params,
                      composite=composite_for(composite, model))
    if isinstance(ctx.composite, MixedComposite):
        notes.append(f"note: '{composite}' on a model with attention or LayerNorm/RMSNorm: its rules go to the linear "
                     "layers and convs, attnlrp's to normalization, attention and activations")
    bias_adds = {id(n): add for n in graph.node if n.op_type == "MatMul" and (add := _bias_add(n, ctx, graph))}
    ctx.flow = Dataflow(graph, constants, shapes, live, layer_outputs={a.output[0] for a in bias_adds.values()})
    steps, problems, fused = [], [], set()
    form = ctx.composite.form
    for node in graph.node:
        if id(node) in fused or not any(o in needed for o in node.output):
            continue
        if id(node) in embeddings:
            steps.append(Step(node.name, "Embedding", node, [node.output[0]], [embeddings[id(node)]]))
            continue
        if not any(n in live for n in reads(node)) or not any(o in live for o in node.output):
            continue  # reads no explained tensor, or yields only integers (Shape, ArgMax): carries no relevance
        live_inputs = [n for n in node.input if n in live]
        step = Step(node.name, node.op_type, node, [o for o in node.output if o], live_inputs)
        if node.domain not in ("", "ai.onnx"):
            problems.append((node, f"op domain '{node.domain}' is not supported (only standard ai.onnx ops)"))
            continue
        if node.op_type in CONTROL_FLOW:
            problems.append((node, "control flow (If/Loop/Scan) is not supported; export a graph without it"
                                   + (", or pin the input its condition comes from (a setting such as a sample rate) "
                                      "with --input-value NAME=VALUE, which inlines the branch it takes"
                                      if node.op_type == "If" else "")))
            continue
        if node.op_type == "MatMul" and len([n for n in node.input if n in live]) == 2:
            step.kind = "MatMulOfActivations"  # attention's Q.K^T and A.V (ops/attention.py)
        elif node.op_type in LINEAR_KIND:
            add = bias_adds.get(id(node))
            reader = {"Conv": read_conv, "ConvTranspose": read_conv_transpose, "Gemm": read_gemm}.get(node.op_type)
            layer, why = reader(node, ctx) if reader else read_matmul(node, ctx, add)
            if layer is None:
                problems.append((node, why))
                continue
            if add is not None:
                fused.add(id(add))
                step.outputs = [add.output[0]]
            if node.input[0] not in live or any(n in live for n in node.input[1:]):
                problems.append((node, "the explained input must reach only the data input of a linear layer"))
                continue
            layer.input_non_negative = ctx.flow.bounds(layer.x).non_negative
            step.kind, step.layer = "Linear", layer
        elif node.op_type not in REGISTRY:
            problems.append((node, UNROLL_REFUSALS.get(node.name, "no relevance rule for this op")))
            continue
        if form == "gradient" and REGISTRY[step.kind].gradient is None:
            problems.append((node, f"no rule for this op in the transformer composite '{composite}' yet"))
            continue
        steps.append(step)

    linear_steps = [s for s in steps if s.kind == "Linear"]
    _assign_rules(linear_steps, composite, params, rules, path)
    for step in steps:
        check = REGISTRY[step.kind].check
        why = check(step, ctx) if check else None
        if why:
            problems.append((step.node, why))
    problems = _receiving_relevance(problems, steps, graph, live, logits)
    if problems and strict:
        raise UnsupportedNodesError(problems, path=path)
    failed = {id(node) for node, _ in problems}  # (strict=False: the steps that could be planned, all of them)
    kept = [s for s in steps if id(s.node) not in failed] if problems else _reached(steps, logits)
    return Plan(kept, explained, model_output, logits, None if output_relevance else dims[1], notes, form,
                tuple(n for n in explained if n in looked_up), problems)


def _receiving_relevance(problems, steps, graph, live, logits):
    """The problems of nodes that relevance can reach: a node that gets none (inside a gate's branch, which takes no
    relevance, or feeding only such nodes) is left as it is and blocks nothing. A node that cannot be planned is
    taken to pass relevance to every explained tensor it reads."""
    if not problems:
        return problems
    failed = {id(node) for node, _ in problems}
    planned = {id(s.node): s for s in steps}
    position = {o: k for k, n in enumerate(graph.node) for o in n.output if o}
    nodes = {id(n): n for n in [s.node for s in steps] + [n for n, _ in problems]}  # (the objects the ids are of)
    receiving, reached = {logits}, set()
    for node in sorted(nodes.values(), key=lambda n: position.get(n.output[0], -1), reverse=True):
        writes = node.output if id(node) in failed else planned[id(node)].outputs  # (a fused bias Add's output)
        if not any(o in receiving for o in writes if o):
            continue
        reached.add(id(node))
        receiving.update(n for n in reads(node) if n in live) if id(node) in failed else \
            receiving.update(planned[id(node)].live_inputs)
    return [(node, why) for node, why in problems if id(node) in reached]


def _reached(steps, logits):
    """The steps relevance reaches from the logits. An element-wise region sends its relevance straight to its
    root, so the ops inside an activation (the `x + 3` of a hard swish) receive none and are left out."""
    receiving, kept = {logits}, []
    for step in reversed(steps):
        if any(o in receiving for o in step.outputs):
            kept.append(step)
            receiving.update(step.live_inputs)
    return kept[::-1]


def _final_softmax(name, producer, constants, types):
    """The Softmax/LogSoftmax that the explained output comes from through ops that keep each class's score apart
    and in order (reshapes, float casts, a positive scale), or None."""
    while name in producer:
        node = producer[name]
        if node.op_type in FINAL_SOFTMAX:
            return node
        name = _class_keeping_input(node, constants, types)
    return None


def _class_keeping_input(node, constants, types):
    """The data input of a node that keeps the classes apart and in order, or None."""
    if node.op_type in _CLASS_KEEPING:
        return node.input[0] if node.op_type != "Cast" or types.get(node.output[0]) in FLOAT_TYPES else None
    data = [n for n in node.input if n not in constants]
    scale = [n for n in node.input if n in constants]
    if node.op_type in ("Mul", "Div") and len(data) == 1 and len(scale) == 1 and \
            (node.op_type == "Mul" or node.input[0] == data[0]) and bool(np.all(np.asarray(constants[scale[0]]) > 0)):
        return data[0]
    return None


def _bias_add(matmul, ctx, graph):
    """The Add of a constant per-output bias that directly follows a MatMul, if any."""
    users = ctx.users.get(matmul.output[0], [])
    if len(users) != 1 or users[0].op_type != "Add" or matmul.output[0] in {o.name for o in graph.output}:
        return None
    add = users[0]
    other = add.input[1] if add.input[0] == matmul.output[0] else add.input[0]
    weight = ctx.constants.get(matmul.input[1])
    if other not in ctx.constants or weight is None or weight.ndim != 2:
        return None
    bias = ctx.constants[other]
    if bias.size not in (1, weight.shape[1]) or (bias.ndim and bias.shape[-1] not in (1, weight.shape[1])):
        return None
    return add


def _linear_kinds(linear_steps):
    """'conv' or 'dense' per layer; 'recurrent' for a dense layer whose weight other layers read too (one map
    applied at every time step of an unrolled or hand-written recurrent cell): it takes the dense rule and is
    never the composite's special first layer."""
    weight = [s.node.input[1] if len(s.node.input) > 1 else None for s in linear_steps]
    readers = {w: weight.count(w) for w in weight}
    return ["recurrent" if LINEAR_KIND[s.node.op_type] == "dense" and w is not None and readers[w] > 1
            else LINEAR_KIND[s.node.op_type] for s, w in zip(linear_steps, weight)]


def _assign_rules(linear_steps, composite, params, rules, path):
    kinds = _linear_kinds(linear_steps)
    if rules and COMPOSITES[composite].form == "gradient":  # (a mixed composite takes --rule for its layers)
        raise OnnxLrpError(f"--rule is not supported with the transformer composite '{composite}' (its rules are "
                           "fixed, as LXT's)", path=path)
    overrides = []
    for spec in rules:
        pattern, eq, rule_spec = spec.partition("=")
        if not eq or not pattern or not rule_spec:
            raise OnnxLrpError(f"--rule '{spec}' is not of the form PATTERN=RULE[:key=value,...]", path=path)
        try:
            overrides.append((pattern, parse_rule_spec(rule_spec, params), spec))
        except ValueError as exc:
            raise OnnxLrpError(f"--rule '{spec}': {exc}", path=path) from None
    for pattern, _, spec in overrides:
        if not any(_matches(pattern, s) for s in linear_steps):
            names = ", ".join(s.name for s in linear_steps) or "none"
            raise OnnxLrpError(f"--rule '{spec}' matches no linear node (Conv, Gemm, MatMul) of the model; "
                               f"linear nodes: {names}", path=path)
    try:
        chosen = COMPOSITES[composite].assign(kinds, params)
    except ValueError as exc:
        raise OnnxLrpError(f"composite '{composite}': {exc}", path=path) from None
    for step, rule in zip(linear_steps, chosen):
        step.rule = next((r for pattern, r, _ in overrides if _matches(pattern, step)), rule)


def _matches(pattern, step):
    return pattern in {n.op_type for n in step.layer.nodes} or fnmatch.fnmatchcase(step.name, pattern)
