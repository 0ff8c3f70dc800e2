"""inspect(): what compile would do, node by node: the rule each node on the explained path gets, its tensor
shapes, and every node that stops compiling, without writing a relevance graph."""
from typing import NamedTuple

from .compiler import make_params, prepare
from .load import tensor_shapes


class Row(NamedTuple):
    name: str
    op: str
    rule: str
    inputs: list  # shapes of the inputs relevance flows to
    outputs: list


class Inspection(NamedTuple):
    composite: str
    explained_output: str
    rows: list
    unsupported: list  # (node name, op, why)
    notes: list


def _shape_text(dims):
    if dims is None:
        return "?"
    return "[" + ", ".join("N" if k == 0 else ("?" if d is None else str(d)) for k, d in enumerate(dims)) + "]"


def inspect(model, composite=None, *, rules=(), output=None, input_shapes=None, opset=None, input_values=None,
            output_relevance=False, **params):
    """The plan of `model` for `composite` (None: the default compile picks). params: epsilon, gamma, alpha,
    beta, low, high, stabilizer; input_values and output_relevance as compile takes them."""
    notes = []
    prepared = prepare(model, composite, make_params(None if not isinstance(model, str) else model, **params),
                       rules=rules, output=output, input_shapes=input_shapes, opset=opset, notes=notes, strict=False,
                       input_values=input_values, output_relevance=output_relevance)
    plan, shapes = prepared.plan, tensor_shapes(prepared.model.graph)
    described = plan.describe()
    rows = [Row(d["node"], d["op"], d["rule"], [_shape_text(shapes.get(n)) for n in s.live_inputs],
                [_shape_text(shapes.get(n)) for n in s.outputs]) for d, s in zip(described, plan.steps)]
    unsupported = [(node.name, f"{node.domain or 'ai.onnx'}::{node.op_type}", why) for node, why in plan.unsupported]
    return Inspection(prepared.composite, plan.model_output, rows, unsupported, notes)


def format_inspection(inspection):
    """The table `onnx-lrp inspect` prints."""
    head = ("node", "op", "rule", "input shape", "output shape")
    table = [head] + [(r.name, r.op, r.rule, " ".join(r.inputs), " ".join(r.outputs)) for r in inspection.rows]
    widths = [min(max(len(row[k]) for row in table), 60) for k in range(len(head) - 1)]
    lines = [f"composite {inspection.composite}; explained output '{inspection.explained_output}'; "
             f"{len(inspection.rows)} nodes on the explained path (input to output)"]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1] for row in table]
    if inspection.unsupported:
        lines.append(f"{len(inspection.unsupported)} node(s) cannot be compiled:")
        lines += [f"  - node '{name}' (op {op}){': ' + why if why else ''}" for name, op, why in inspection.unsupported]
    else:
        lines.append("every node is supported")
    return "\n".join(lines)
