"""Nodes whose inputs are all constant are evaluated at compile time (Constant nodes are initializers by now:
structure.py)."""
import numpy as np
from onnx import helper, numpy_helper
from onnx.reference import ReferenceEvaluator

from .base import ConstantArrays, Pass, remove_nodes

# ops that must not be folded even with constant inputs
_NEVER_FOLD = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


class FoldConstants(Pass):
    """Evaluate nodes that read only initializers (weight transposes, reshape targets) with onnx.reference."""
    name = "fold-constants"

    def run(self, model, notes):
        graph = model.graph
        known = ConstantArrays(graph)
        graph_inputs = {i.name for i in graph.input}
        opsets = list(model.opset_import)
        doomed = []
        for node in graph.node:
            if (node.op_type in _NEVER_FOLD or node.domain not in ("", "ai.onnx") or not node.input
                    or any(n and (n not in known or n in graph_inputs) for n in node.input)):
                continue
            try:
                values = _evaluate(node, known, opsets)
            except Exception:  # leave it to the runtime
                continue
            for name, value in zip(node.output, values):
                if name:
                    known[name] = value
                    graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
            doomed.append(node)
        remove_nodes(graph, doomed)


def _evaluate(node, known, opsets):
    inputs = [n for n in node.input if n]
    g = helper.make_graph([node], "fold", [helper.make_tensor_value_info(n, 1, None) for n in []],
                          [helper.make_tensor_value_info(n, 1, None) for n in node.output if n],
                          initializer=[numpy_helper.from_array(known[n], n) for n in inputs])
    m = helper.make_model(g, opset_imports=opsets)
    return ReferenceEvaluator(m).run(None, {})
