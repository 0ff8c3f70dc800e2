"""Inline an If whose condition is a constant: the branch it takes becomes part of the main graph.

Why: models that take a setting as an input (a VAD's sample rate of 8000 or 16000) branch on it with If, and the
relevance pass has no rule for control flow. Pinned with --input-value, the condition folds to a constant, and the
If is then only the branch it always takes. Names defined inside the branch are prefixed with the If's name, so
they cannot collide with the main graph's; the branch's Constant nodes become initializers. Repeats, with
constant folding in between, until no If with a constant condition is left (nested Ifs, conditions computed from
the pinned input).
"""
import numpy as np
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .base import Pass, constant_arrays
from .constants import FoldConstants

MAX_ROUNDS = 16


class ShapesAndBranches(Pass):
    """Shapes probed and folded, constants folded, constant Ifs inlined, again while Ifs were inlined: a branch
    taken brings tensors with no shapes, and Ifs whose conditions come from shapes (Silero VAD's `Shape(state)`)."""
    name = "shapes-and-branches"

    def __init__(self, *passes):
        self.passes = passes

    def run(self, model, notes):
        for _ in range(MAX_ROUNDS):
            for p in self.passes:
                p.run(model, notes)
            if not InlineConstantIf().run(model, notes):
                return


class InlineConstantIf(Pass):
    name = "inline-constant-if"

    def run(self, model, notes):
        """Returns how many Ifs were inlined."""
        total = 0
        for _ in range(MAX_ROUNDS):
            if not any(n.op_type == "If" for n in model.graph.node):
                return total
            FoldConstants().run(model, notes)
            inlined = self._inline_once(model, notes)
            if not inlined:
                return total
            total += inlined
        return total

    def _inline_once(self, model, notes):
        graph = model.graph
        constants = constant_arrays(graph)
        rewritten, inlined = [], 0
        for node in graph.node:
            if node.op_type != "If" or node.domain not in ("", "ai.onnx") or node.input[0] not in constants:
                rewritten.append(node)
                continue
            taken = bool(np.asarray(constants[node.input[0]]).reshape(-1)[0])
            branch = next(a.g for a in node.attribute if a.name == ("then_branch" if taken else "else_branch"))
            nodes, initializers = _inlined(node, branch, model.opset_import)
            rewritten.extend(nodes)
            graph.initializer.extend(initializers)
            inlined += 1
            notes.append(f"note: If '{node.name}' always takes its {'then' if taken else 'else'} branch (its "
                         "condition is constant): inlined")
        if inlined:
            del graph.node[:]
            graph.node.extend(rewritten)
        return inlined


def _inlined(node, branch, opsets):
    """The branch's nodes and initializers, renamed apart, writing the If's outputs."""
    prefix = node.name or node.output[0]
    defined = {i.name for i in branch.initializer} | {o for n in branch.node for o in n.output if o}
    rename = {name: f"{prefix}/{name}" for name in defined}
    produced = {o for n in branch.node if n.op_type != "Constant" for o in n.output if o}
    direct = set()
    for out, branch_out in zip(node.output, branch.output):
        if out and branch_out.name in produced and branch_out.name not in direct:
            rename[branch_out.name] = out  # its producer writes the If's output itself
            direct.add(branch_out.name)
    nodes, initializers = [], []
    for init in branch.initializer:
        copy = type(init)()
        copy.CopyFrom(init)
        copy.name = rename[init.name]
        initializers.append(copy)
    for inner in branch.node:
        if inner.op_type == "Constant" and not inner.input:
            initializers.append(numpy_helper.from_array(_constant_value(inner, opsets), rename[inner.output[0]]))
            continue
        copy = type(inner)()
        copy.CopyFrom(inner)
        copy.name = f"{prefix}/{inner.name or inner.op_type}"
        for k, name in enumerate(copy.input):
            copy.input[k] = rename.get(name, name)
        for k, name in enumerate(copy.output):
            copy.output[k] = rename.get(name, name)
        for attr in copy.attribute:  # nested subgraphs read the renamed tensors of this branch
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_reads(sub, rename)
        nodes.append(copy)
    for out, branch_out in zip(node.output, branch.output):
        if out and rename.get(branch_out.name) != out:
            nodes.append(helper.make_node("Identity", [rename.get(branch_out.name, branch_out.name)], [out],
                                          name=f"{prefix}/output_{out}"))
    return nodes, initializers


def _rename_reads(graph, rename):
    local = {i.name for i in graph.input} | {i.name for i in graph.initializer} | \
        {o for n in graph.node for o in n.output}
    for inner in graph.node:
        for k, name in enumerate(inner.input):
            if name not in local and name in rename:
                inner.input[k] = rename[name]
        for attr in inner.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                _rename_reads(sub, {k: v for k, v in rename.items() if k not in local})


def _constant_value(node, opsets):
    attr = node.attribute[0]
    if attr.name == "value":
        return numpy_helper.to_array(attr.t)
    model = helper.make_model(helper.make_graph([node], "constant", [], [helper.make_tensor_value_info(
        node.output[0], 0, None)]), opset_imports=opsets)
    return np.asarray(ReferenceEvaluator(model).run(None, {})[0])
