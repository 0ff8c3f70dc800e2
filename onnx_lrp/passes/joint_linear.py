"""Join a sum of dense maps of different tensors, `x W1 + b1 + h W2 + b2`, into one dense map of their concatenation,
`[x, h] [W1; W2] + (b1 + b2)`.

Why: a recurrent cell written by hand computes its gates as `x2h(x) + h2h(h)` (two Linear layers and an Add), where
the ONNX LSTM op and Arras et al.'s rule take one linear map over [x_t, h_{t-1}]. Left apart, the Add splits the
relevance by contribution and each map applies its own epsilon: the same up to the stabilizers, but not the same
numbers. Joined, both spellings get the Epsilon rule of the one map they compute. Only rank-2 dense maps (Gemm with
alpha = beta = 1 and no transA, or MatMul + bias Add) whose outputs nothing else reads; a side that no input value
reaches (a zero state built at run time) joins as well and takes no relevance (a constant slab of the Concat).
"""
import numpy as np
from onnx import helper, numpy_helper

from ..load import tensor_shapes
from ..ops.registry import attrs_of
from .base import Pass, constant_arrays, consumers, graph_output_names, remove_nodes


class JoinLinearSums(Pass):
    name = "join-linear-sums"

    def run(self, model, notes):
        graph = model.graph
        consts, users, outputs = constant_arrays(graph), consumers(graph), graph_output_names(graph)
        producer = {o: n for n in graph.node for o in n.output if o}
        shapes = tensor_shapes(graph)
        replaced, doomed, joined, weights = {}, [], 0, {}
        for node in graph.node:
            if node.op_type != "Add" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
                continue
            maps = [_dense_map(producer.get(name), producer, consts, users, outputs, shapes) for name in node.input]
            if any(m is None for m in maps) or maps[0].x == maps[1].x:
                continue
            if maps[0].weight.shape[1] != maps[1].weight.shape[1]:
                continue
            prefix = node.name or node.output[0]
            names = [f"{prefix}/joined/{k}" for k in ("input", "weight", "bias", "shape")]
            key = tuple(n for m in maps for part in m.nodes for n in part.input if n in consts)
            shared = key in weights  # every time step joins the same maps: one weight, read by every step
            names[1:3] = weights.setdefault(key, names[1:3])
            width = np.array([0, -1], np.int64)
            rows = [f"{prefix}/joined/rows_{k}" for k in range(2)]
            new = [helper.make_node("Reshape", [m.x, names[3]], [rows[k]], name=f"{prefix}/joined/rows_{k}_node")
                   for k, m in enumerate(maps)]
            new.append(helper.make_node("Concat", rows, [names[0]], axis=1, name=f"{prefix}/joined/input_node"))
            new.append(helper.make_node("Gemm", [names[0], names[1], names[2]], [node.output[0]],
                                        name=f"{prefix}/joined"))
            graph.initializer.append(numpy_helper.from_array(width, names[3]))
            if not shared:
                weight = np.concatenate([m.weight for m in maps], axis=0).astype(np.float32)
                bias = (maps[0].bias + maps[1].bias).astype(np.float32)
                graph.initializer.extend([numpy_helper.from_array(weight, names[1]),
                                          numpy_helper.from_array(bias, names[2])])
            replaced[id(node)] = new
            doomed += [n for m in maps for n in m.nodes]
            joined += 1
        if not joined:
            return
        rewritten = []
        for node in graph.node:
            rewritten.extend(replaced.get(id(node), [node]))
        del graph.node[:]
        graph.node.extend(rewritten)
        remove_nodes(graph, doomed)
        notes.append(f"note: {joined} sum(s) of two dense maps (x W1 + h W2, a recurrent cell's gates) joined into "
                     "one map of [x, h], as the LSTM op computes them")


class _Map:
    def __init__(self, x, weight, bias, nodes):
        self.x, self.weight, self.bias, self.nodes = x, weight, bias, nodes  # weight: [in, out]


def _dense_map(node, producer, consts, users, outputs, shapes):
    """The rank-2 dense map (Gemm, or MatMul + bias Add) that writes `node`'s output, read only by one node."""
    if node is None or any(o in outputs or len(users.get(o, [])) != 1 for o in node.output):
        return None
    if node.op_type == "Add":
        data = [n for n in node.input if n not in consts]
        bias = [n for n in node.input if n in consts]
        matmul = producer.get(data[0]) if len(data) == 1 and len(bias) == 1 else None
        if matmul is None or matmul.op_type != "MatMul" or len(users.get(matmul.output[0], [])) != 1:
            return None
        inner = _dense_map(matmul, producer, consts, users, outputs, shapes)
        b = np.asarray(consts[bias[0]], np.float64)
        if inner is None or b.size != inner.weight.shape[1] and b.size != 1:
            return None
        return _Map(inner.x, inner.weight, inner.bias + np.broadcast_to(b.reshape(-1), inner.bias.shape),
                    inner.nodes + [node])
    if node.op_type == "MatMul":
        if node.input[1] not in consts or node.input[0] in consts or len(shapes.get(node.input[0]) or []) != 2:
            return None
        w = np.asarray(consts[node.input[1]], np.float64)
        return _Map(node.input[0], w, np.zeros(w.shape[1]), [node]) if w.ndim == 2 else None
    if node.op_type == "Gemm":
        a = attrs_of(node)
        if a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0 or a.get("transA", 0) or \
                any(n not in consts for n in node.input[1:] if n) or node.input[0] in consts:
            return None
        w = np.asarray(consts[node.input[1]], np.float64)
        w = w.T if a.get("transB", 0) else w
        bias = np.zeros(w.shape[1])
        if len(node.input) > 2 and node.input[2]:
            b = np.asarray(consts[node.input[2]], np.float64).reshape(-1)
            if b.size not in (1, w.shape[1]):
                return None
            bias = bias + b
        return _Map(node.input[0], w, bias, [node])
    return None
