"""Plan: which nodes lie between the explained input(s) and the explained output, and what each one gets.

Linear nodes get their rule from the composite and the user's overrides; every other node gets its registered
emitter. Every node the compiler cannot handle is collected, so they are all reported at once.
"""
import fnmatch
from dataclasses import dataclass, field

from onnx import TensorProto

from .composites import COMPOSITES
from .errors import OnnxLrpError, UnsupportedNodesError
from .load import tensor_shapes, tensor_types
from .ops import REGISTRY
from .ops.linear import read_conv, read_gemm, read_matmul
from .passes.base import consumers, constant_arrays
from .rules import Rule, parse_rule_spec

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16}
CONTROL_FLOW = {"If", "Loop", "Scan"}
FINAL_SOFTMAX = {"Softmax", "LogSoftmax"}
LINEAR_KIND = {"Conv": "conv", "Gemm": "dense", "MatMul": "dense"}


@dataclass
class Step:
    name: str
    kind: str  # registry key: the op type, or 'Linear'
    node: object
    outputs: list
    live_inputs: list
    layer: object = None
    rule: Rule = None


@dataclass
class PlanContext:
    constants: dict
    shapes: dict
    types: dict
    live: set
    users: dict


@dataclass
class Plan:
    steps: list
    explained_inputs: list
    model_output: str  # the model output the user asked to explain
    logits: str  # the tensor the seed is put on (the model output, or the input of a final Softmax)
    classes: int
    notes: list = field(default_factory=list)

    def describe(self):
        return [{"node": s.name, "op": "+".join(n.op_type for n in s.layer.nodes) if s.layer else s.node.op_type,
                 "rule": s.rule.describe() if s.rule else _DEFAULT_RELEVANCE.get(s.kind, "pass")}
                for s in self.steps]


_DEFAULT_RELEVANCE = {"MaxPool": "winner-takes-all", "AveragePool": "norm", "GlobalAveragePool": "norm",
                      "Flatten": "reshape", "Reshape": "reshape", "Squeeze": "reshape", "Unsqueeze": "reshape",
                      "Transpose": "transpose"}


def _pick_output(graph, types, output, path):
    names = [o.name for o in graph.output]
    if output is not None:
        if output not in names:
            raise OnnxLrpError(f"--output '{output}' matches no model output; the outputs are: {', '.join(names)}",
                               path=path)
        if types.get(output) not in FLOAT_TYPES:
            raise OnnxLrpError(f"output '{output}' is not a float tensor (type "
                               f"{TensorProto.DataType.Name(types.get(output, 0))}); relevance explains a float "
                               "score. Pick a float output with --output.", path=path)
        return output
    floats = [n for n in names if types.get(n) in FLOAT_TYPES]
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


def make_plan(model, composite="epsilon-plus-flat", params=None, rules=(), output=None, path=None):
    graph = model.graph
    shapes, types = tensor_shapes(graph), tensor_types(graph)
    constants = constant_arrays(graph)
    notes = []
    model_output = _pick_output(graph, types, output, path)

    producer = {o: n for n in graph.node for o in n.output if o}
    logits = model_output
    while logits in producer and producer[logits].op_type == "Identity":
        logits = producer[logits].input[0]
    if logits in producer and producer[logits].op_type in FINAL_SOFTMAX:
        node = producer[logits]
        logits = node.input[0]
        notes.append(f"note: the final {node.op_type} '{node.name}' is left out of the explanation; the logits "
                     f"'{logits}' before it are explained")
    dims = shapes.get(logits)
    if dims is None or len(dims) != 2 or dims[1] is None:
        raise OnnxLrpError(f"the explained output '{logits}' has shape {dims}; onnx-lrp explains a "
                           "[batch, classes] score with a known number of classes.", path=path)

    init_names = {i.name for i in graph.initializer}
    candidates = [i.name for i in graph.input if i.name not in init_names and types.get(i.name) in FLOAT_TYPES]
    live = set(candidates)
    for node in graph.node:
        if any(n in live for n in reads(node)):
            live.update(o for o in node.output if o and types.get(o, TensorProto.FLOAT) in FLOAT_TYPES)
    needed = {logits}
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            needed.update(reads(node))
    explained = [n for n in candidates if n in needed]
    if logits not in live or not explained:
        raise OnnxLrpError(f"the output '{logits}' does not depend on any float model input; nothing to explain.",
                           path=path)

    ctx = PlanContext(constants, shapes, types, live, consumers(graph))
    steps, problems, fused = [], [], set()
    for node in graph.node:
        if id(node) in fused or not any(n in live for n in reads(node)) or not any(o in needed for o in node.output):
            continue
        live_inputs = [n for n in node.input if n in live]
        step = Step(node.name, node.op_type, node, [o for o in node.output if o], live_inputs)
        if node.domain not in ("", "ai.onnx"):
            problems.append((node, f"op domain '{node.domain}' is not supported (only standard ai.onnx ops)"))
            continue
        if node.op_type in CONTROL_FLOW:
            problems.append((node, "control flow (If/Loop/Scan) is not supported; export a graph without it"))
            continue
        if node.op_type in LINEAR_KIND:
            add = _bias_add(node, ctx, graph) if node.op_type == "MatMul" else None
            reader = {"Conv": read_conv, "Gemm": read_gemm}.get(node.op_type)
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
            step.kind, step.layer = "Linear", layer
        elif node.op_type not in REGISTRY:
            problems.append((node, "no relevance rule for this op"))
            continue
        steps.append(step)

    linear_steps = [s for s in steps if s.kind == "Linear"]
    _assign_rules(linear_steps, composite, params, rules, path)
    for step in steps:
        check = REGISTRY[step.kind].check
        why = check(step, ctx) if check else None
        if why:
            problems.append((step.node, why))
    if problems:
        raise UnsupportedNodesError(problems, path=path)
    return Plan(steps, explained, model_output, logits, dims[1], notes)


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


def _assign_rules(linear_steps, composite, params, rules, path):
    if composite not in COMPOSITES:
        raise OnnxLrpError(f"unknown composite '{composite}'; choose one of: {', '.join(COMPOSITES)}", path=path)
    kinds = [LINEAR_KIND[s.node.op_type] for s in linear_steps]
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
