"""Fold the Shape subgraphs exporters write for Reshape targets: Shape of a tensor whose dims are static becomes a
constant, and so does a Gather of static dims out of a Shape whose batch dim is symbolic. FoldConstants then
folds what follows (Unsqueeze, Concat, ...)."""
import numpy as np
from onnx import numpy_helper

from ..load import tensor_shapes
from .base import Pass, consumers, graph_output_names, remove_nodes


class FoldShapes(Pass):
    name = "fold-shapes"

    def run(self, model, notes):
        graph = model.graph
        shapes, users, outputs = tensor_shapes(graph), consumers(graph), graph_output_names(graph)
        constants = {i.name: i for i in graph.initializer}
        doomed = []
        for node in graph.node:
            if node.op_type != "Shape" or node.domain not in ("", "ai.onnx") or node.input[0] not in shapes:
                continue
            dims = _shape_slice(node, shapes[node.input[0]])
            if all(d is not None for d in dims):
                graph.initializer.append(numpy_helper.from_array(np.array(dims, np.int64), node.output[0]))
                doomed.append(node)
                continue
            for gather in users.get(node.output[0], []):
                index = constants.get(gather.input[1]) if gather.op_type == "Gather" else None
                if index is None or gather.output[0] in outputs:
                    continue
                picked = np.take(np.array(dims, dtype=object), numpy_helper.to_array(index).astype(np.int64))
                if all(d is not None for d in np.ravel(picked)):
                    graph.initializer.append(numpy_helper.from_array(picked.astype(np.int64), gather.output[0]))
                    doomed.append(gather)
        remove_nodes(graph, doomed)


def _shape_slice(node, dims):
    attrs = {a.name: a.i for a in node.attribute}
    rank = len(dims)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    return list(dims[max(start, 0):min(end, rank)])
