"""Fold an inference BatchNormalization into the Conv / Gemm / MatMul(+Add) that directly precedes it.

s = gamma / sqrt(var + eps);  W' = W * s (per output channel);  b' = (b - mean) * s + beta.
Afterwards the linear node writes the BN's output tensor, as Zennit's MergeBatchNorm canonizers leave it.
A BN with no linear producer stays and gets the Pass rule.
"""
import numpy as np
from onnx import helper

from .base import Pass, consumers, constant_arrays, graph_output_names, remove_nodes, replace_initializer


class FoldBatchNorm(Pass):
    name = "fold-batchnorm"

    def run(self, model, notes):
        graph = model.graph
        doomed = []
        for bn in list(graph.node):
            if bn.op_type != "BatchNormalization" or len([o for o in bn.output if o]) != 1:
                continue
            producer = _producer(graph, bn.input[0])
            users = consumers(graph)
            if (producer is None or len(users[bn.input[0]]) != 1
                    or bn.input[0] in graph_output_names(graph)):
                continue
            consts = constant_arrays(graph)
            if not all(n in consts for n in bn.input[1:5]):
                continue
            gamma, beta, mean, var = (consts[n].astype(np.float64) for n in bn.input[1:5])
            eps = next((a.f for a in bn.attribute if a.name == "epsilon"), 1e-5)
            scale = gamma / np.sqrt(var + eps)
            shift = beta - mean * scale
            if self._fold_into(graph, producer, consts, scale, shift):
                producer.output[0] = bn.output[0]
                doomed.append(bn)
                notes.append(f"folded BatchNormalization '{bn.name}' into {producer.op_type} '{producer.name}'")
        remove_nodes(graph, doomed)

    def _fold_into(self, graph, node, consts, scale, shift):
        if node.op_type == "Conv" and node.input[1] in consts:
            w = consts[node.input[1]]
            if w.shape[0] != scale.shape[0]:
                return False
            b = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[0], w.dtype)
            new_w = (w * scale.reshape((-1,) + (1,) * (w.ndim - 1))).astype(w.dtype)
            _set_param(graph, node, 1, new_w)
            _set_param(graph, node, 2, (b * scale + shift).astype(w.dtype))
            return True
        if node.op_type == "Gemm" and node.input[1] in consts:
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            if attrs.get("transA", 0):
                return False
            w = consts[node.input[1]].astype(np.float64) * attrs.get("alpha", 1.0)
            w = w.T if attrs.get("transB", 0) else w  # [in, out]
            if w.shape[1] != scale.shape[0]:
                return False
            c = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else np.zeros(w.shape[1])
            b = np.broadcast_to(c.astype(np.float64) * attrs.get("beta", 1.0), (w.shape[1],))
            dtype = consts[node.input[1]].dtype
            _set_param(graph, node, 1, (w * scale).T.astype(dtype))
            _set_param(graph, node, 2, (b * scale + shift).astype(dtype))
            del node.attribute[:]
            node.attribute.extend([helper.make_attribute("transB", 1)])
            return True
        if node.op_type == "Add":  # MatMul followed by Add of a constant bias
            matmul = _producer(graph, node.input[0])
            bias_name = node.input[1]
            if matmul is None or matmul.op_type != "MatMul" or bias_name not in consts or matmul.input[1] not in consts:
                return False
            if len(consumers(graph)[matmul.output[0]]) != 1:
                return False
            w = consts[matmul.input[1]]
            if w.ndim != 2 or w.shape[1] != scale.shape[0] or consts[bias_name].size not in (1, w.shape[1]):
                return False
            b = np.broadcast_to(consts[bias_name].reshape(-1), (w.shape[1],))
            _set_param(graph, matmul, 1, (w * scale).astype(w.dtype))
            _set_param(graph, node, 1, (b * scale + shift).astype(w.dtype))
            return True
        return False


def _producer(graph, tensor):
    return next((n for n in graph.node if tensor in n.output), None)


def _set_param(graph, node, index, array):
    """Write a folded parameter into a fresh initializer (the original may be shared with other nodes)."""
    name = f"{node.name}/folded_{'weight' if index == 1 else 'bias'}"
    replace_initializer(graph, name, array)
    while len(node.input) <= index:
        node.input.append("")
    node.input[index] = name
