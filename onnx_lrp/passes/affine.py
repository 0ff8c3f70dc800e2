"""Fold a per-channel affine that directly follows a linear layer into the layer's weight and bias.

BatchNormalization, and BatchNorm as exporters also write it (tf2onnx: a Mul and an Add by per-channel constants;
layer scale: a Mul; Sub and Div by constants), all compute y = s * z + t per output channel of the Conv / Gemm /
MatMul(+bias Add) z before it. Folded, W' = W * s and b' = b * s + t, and the linear node writes y, as Zennit's
MergeBatchNorm canonizers leave it: the rule then sees the layer the model really computes. An affine with no linear
layer right before it stays; the plan gives it its own rule (ops/elementwise.py).
"""
import numpy as np
from onnx import helper

from .base import Pass, consumers, constant_arrays, graph_output_names, remove_nodes, replace_initializer

AFFINE_OPS = ("BatchNormalization", "Mul", "Add", "Sub", "Div")


class FoldAffine(Pass):
    name = "fold-affine"

    def run(self, model, notes):
        graph = model.graph
        consts = constant_arrays(graph)
        users, outputs = consumers(graph), graph_output_names(graph)
        producer = {o: n for n in graph.node for o in n.output if o}
        chains = {}  # id(linear node) -> [linear, scale, shift, affine nodes]: composed in float64, folded once
        for node in list(graph.node):
            if node.op_type not in AFFINE_OPS or node.domain not in ("", "ai.onnx"):
                continue
            data = _data_input(node, consts)
            linear = _linear_producer(producer.get(data), producer, consts, users)
            if linear is None or len(users[data]) != 1 or data in outputs:
                continue
            affine = _per_channel(node, data, consts, _layout(linear, producer, consts))
            if affine is None or (node.op_type in ("Add", "Sub") and linear.op_type == "MatMul"):
                continue  # (an Add after a bare MatMul is that MatMul's bias: the plan reads it so)
            chain = chains.setdefault(id(linear), [linear, 1.0, 0.0, []])
            chain[1], chain[2] = chain[1] * affine[0], chain[2] * affine[0] + affine[1]
            chain[3].append(node)
            producer[node.output[0]] = linear
        doomed = []
        for linear, scale, shift, nodes in chains.values():
            writer = _fold(graph, linear, producer, consts, scale, shift, nodes[-1])
            writer.output[0] = nodes[-1].output[0]
            doomed += [n for n in nodes if n is not writer]
            notes += [f"folded {n.op_type} '{n.name}' into {linear.op_type} '{linear.name}'" for n in nodes]
        remove_nodes(graph, doomed)


def _data_input(node, consts):
    """The one non-constant input an affine node scales and shifts; None where it is no affine of one tensor."""
    if node.op_type == "BatchNormalization":
        ok = len([o for o in node.output if o]) == 1 and all(n in consts for n in node.input[1:5])
        return node.input[0] if ok and node.input[0] not in consts else None
    data = [n for n in node.input if n and n not in consts]
    if len(data) != 1 or len(node.input) != 2 or (node.op_type in ("Sub", "Div") and node.input[0] != data[0]):
        return None
    return data[0]


def _linear_producer(node, producer, consts, users):
    """The Conv / Gemm / MatMul (or the bias Add of a MatMul) with constant parameters that writes a tensor."""
    if node is None:
        return None
    if node.op_type == "Conv" and node.input[1] in consts and (len(node.input) < 3 or not node.input[2]
                                                              or node.input[2] in consts):
        return node
    if node.op_type == "Gemm" and node.input[1] in consts and not _attrs(node).get("transA", 0) and (
            len(node.input) < 3 or not node.input[2] or node.input[2] in consts):
        return node
    if node.op_type == "MatMul" and node.input[1] in consts and consts[node.input[1]].ndim == 2:
        return node
    if node.op_type == "Add":
        matmul = producer.get(node.input[0])
        if (matmul is not None and matmul.op_type == "MatMul" and node.input[1] in consts
                and _linear_producer(matmul, producer, consts, users) is matmul
                and len(users[matmul.output[0]]) == 1
                and consts[node.input[1]].size in (1, consts[matmul.input[1]].shape[1])):
            return node
    return None


def batchnorm_affine(node, consts):
    """An inference BatchNormalization as y = scale * x + shift per channel, in float64."""
    gamma, beta, mean, var = (np.asarray(consts[n], np.float64) for n in node.input[1:5])
    scale = gamma / np.sqrt(var + _attrs(node).get("epsilon", 1e-5))
    return scale, beta - mean * scale


def _layout(linear, producer, consts):
    """(channels, trailing): the linear layer's output channels, and how many axes of its output follow them."""
    if linear.op_type == "Conv":
        w = consts[linear.input[1]]
        return w.shape[0], w.ndim - 2
    if linear.op_type == "Gemm":
        w = consts[linear.input[1]]
        return (w.shape[0] if _attrs(linear).get("transB", 0) else w.shape[1]), 0
    matmul = producer[linear.input[0]] if linear.op_type == "Add" else linear
    return consts[matmul.input[1]].shape[1], 0


def _per_channel(node, data, consts, layout):
    """(scale, shift) vectors over the output channels, or None where the constant varies along another axis."""
    channels, trailing = layout
    if node.op_type == "BatchNormalization":
        scale, shift = batchnorm_affine(node, consts)
        return (scale, shift) if scale.shape == (channels,) else None
    other = next(n for n in node.input if n != data)
    vector = _channel_vector(consts[other].astype(np.float64), channels, trailing)
    if vector is None:
        return None
    ones, zeros = np.ones(channels), np.zeros(channels)
    if node.op_type == "Mul":
        return vector, zeros
    if node.op_type == "Div":
        return (1.0 / vector, zeros) if np.all(vector != 0) else None
    return ones, (vector if node.op_type == "Add" else -vector)


def _channel_vector(c, channels, trailing):
    """c as one value per output channel, if it broadcasts as [1, .., C, 1 x trailing] onto the layer output."""
    if c.size == 1:
        return np.full(channels, float(c.reshape(-1)[0]))
    dims = list(c.shape)
    if len(dims) < trailing + 1 or any(d != 1 for d in dims[len(dims) - trailing:]):
        return None
    head = dims[:len(dims) - trailing]
    if head[-1] != channels or any(d != 1 for d in head[:-1]):
        return None
    return c.reshape(-1)


def _fold(graph, linear, producer, consts, scale, shift, node):
    """Fold y = scale * z + shift into `linear`; returns the node that now writes y (`node`, the chain's last
    affine node, where it becomes a bare MatMul's bias Add)."""
    if linear.op_type == "Conv":
        w = consts[linear.input[1]]
        b = consts[linear.input[2]] if len(linear.input) > 2 and linear.input[2] else np.zeros(w.shape[0])
        _set(graph, consts, linear, 1, w.astype(np.float64) * scale.reshape((-1,) + (1,) * (w.ndim - 1)), w.dtype)
        _set(graph, consts, linear, 2, b.astype(np.float64) * scale + shift, w.dtype)
        return linear
    if linear.op_type == "Gemm":
        attrs = _attrs(linear)
        w = consts[linear.input[1]]
        w_in_out = w.astype(np.float64) * attrs.get("alpha", 1.0)
        w_in_out = w_in_out.T if attrs.get("transB", 0) else w_in_out
        c = consts[linear.input[2]] if len(linear.input) > 2 and linear.input[2] else np.zeros(w_in_out.shape[1])
        b = np.broadcast_to(c.astype(np.float64).reshape(-1) * attrs.get("beta", 1.0), (w_in_out.shape[1],))
        _set(graph, consts, linear, 1, (w_in_out * scale).T, w.dtype)
        _set(graph, consts, linear, 2, b * scale + shift, w.dtype)
        del linear.attribute[:]
        linear.attribute.extend([helper.make_attribute("transB", 1)])
        return linear
    if linear.op_type == "Add":  # MatMul + bias Add
        matmul = producer[linear.input[0]]
        w = consts[matmul.input[1]]
        b = np.broadcast_to(consts[linear.input[1]].astype(np.float64).reshape(-1), (w.shape[1],))
        _set(graph, consts, matmul, 1, w.astype(np.float64) * scale, w.dtype)
        _set(graph, consts, linear, 1, b * scale + shift, w.dtype)
        return linear
    w = consts[linear.input[1]]  # a bare MatMul: scale the weight; a shift turns the last affine node into its bias
    _set(graph, consts, linear, 1, w.astype(np.float64) * scale, w.dtype)
    if not np.any(shift):
        return linear
    node.op_type = "Add"
    del node.input[:]
    del node.attribute[:]
    node.input.extend([linear.output[0], ""])
    _set(graph, consts, node, 1, shift, w.dtype)
    return node


def _set(graph, consts, node, index, array, dtype):
    """Write a folded parameter into a fresh initializer (the original may be shared with other nodes)."""
    name = f"{node.name}/folded_{'weight' if index == 1 and node.op_type != 'Add' else 'bias'}"
    value = np.asarray(array).astype(dtype)
    replace_initializer(graph, name, value)
    consts[name] = value
    while len(node.input) <= index:
        node.input.append("")
    node.input[index] = name


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}
