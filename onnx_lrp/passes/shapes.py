"""Fold the Shape subgraphs exporters write for Reshape targets and chunk sizes (`x.view(n, g, c // g, h, w)`,
`x.chunk(2, 1)`): a Shape of static dims becomes a constant, and so does a Gather of static dims out of a Shape
whose batch dim is symbolic, and a Size of a Shape (the rank: Silero VAD branches on it). FoldConstants then folds what follows (Unsqueeze, Concat, Div, ...). Each round can
make more shapes static (a folded Reshape target fixes its output's shape), so rounds repeat, with fresh shape
inference, until nothing more folds."""
import numpy as np
from onnx import numpy_helper, shape_inference

from ..load import tensor_shapes, without_weights
from .base import Pass, consumers, graph_output_names, remove_nodes
from .constants import FoldConstants

MAX_ROUNDS = 32


class FoldShapes(Pass):
    name = "fold-shapes"

    def run(self, model, notes):
        for _ in range(MAX_ROUNDS):
            if not any(n.op_type == "Shape" for n in model.graph.node) or not self._fold_once(model):
                return
            FoldConstants().run(model, notes)

    def _fold_once(self, model):
        graph = model.graph
        shapes, users, outputs = _inferred_shapes(model), consumers(graph), graph_output_names(graph)
        constants = {i.name: i for i in graph.initializer}
        doomed = []
        for node in graph.node:
            if node.op_type != "Shape" or node.domain not in ("", "ai.onnx") or node.input[0] not in shapes:
                continue
            if node.output[0] in outputs:
                continue
            dims = _shape_slice(node, shapes[node.input[0]])
            if all(d is not None for d in dims):
                graph.initializer.append(numpy_helper.from_array(np.array(dims, np.int64), node.output[0]))
                doomed.append(node)
                continue
            for user in users.get(node.output[0], []):
                if user.op_type == "Size" and user.output[0] not in outputs:  # the rank, known though a dim is not
                    graph.initializer.append(numpy_helper.from_array(np.array(len(dims), np.int64), user.output[0]))
                    doomed.append(user)
                    continue
                picked = _picked_dims(user, dims, constants)
                if picked is None or user.output[0] in outputs:
                    continue
                if all(d is not None for d in picked.reshape(-1)):
                    graph.initializer.append(numpy_helper.from_array(picked.astype(np.int64), user.output[0]))
                    doomed.append(user)
        remove_nodes(graph, doomed)
        return bool(doomed)


def _picked_dims(user, dims, constants):
    """The dims a Gather (constant indices) or Slice (constant bounds) takes out of a Shape; None otherwise."""
    args = [numpy_helper.to_array(constants[n]).astype(np.int64) if n in constants else None for n in user.input[1:]]
    if not args or any(a is None for a in args):
        return None
    dims = np.array(dims, dtype=object)
    if user.op_type == "Gather":
        return np.asarray(np.take(dims, args[0]), dtype=object)
    if user.op_type == "Slice" and all(a.size == 1 for a in args):
        start, end = int(args[0][0]), int(args[1][0])
        step = int(args[3][0]) if len(args) > 3 else 1
        if len(args) > 2 and int(args[2][0]) not in (0, -1):
            return None
        return np.asarray(dims[start:end:step], dtype=object)
    return None


def _inferred_shapes(model):
    """Shapes from a fresh inference on a copy without the weights (their values are not needed)."""
    try:
        light = shape_inference.infer_shapes(without_weights(model), data_prop=True)
    except Exception:  # noqa: BLE001 - fall back to what the model already says
        return tensor_shapes(model.graph)
    return tensor_shapes(light.graph)


def _shape_slice(node, dims):
    attrs = {a.name: a.i for a in node.attribute}
    rank = len(dims)
    start, end = attrs.get("start", 0), attrs.get("end", rank)
    start, end = (start + rank if start < 0 else start), (end + rank if end < 0 else end)
    return list(dims[max(start, 0):min(end, rank)])
