"""A canonicalization pass is a small class with one job: `run(model, notes)` rewrites the graph in place."""
import sys
from collections import defaultdict

import numpy as np
from onnx import TensorProto, numpy_helper


class Pass:
    name = "pass"

    def run(self, model, notes):  # pragma: no cover - interface
        raise NotImplementedError


def consumers(graph):
    """tensor name -> list of nodes that read it."""
    users = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            if name:
                users[name].append(node)
    return users


def constant_arrays(graph):
    """name -> numpy array of every initializer; raw little-endian data is viewed in place (read-only), not copied."""
    return {init.name: _array(init) for init in graph.initializer}


_RAW = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.INT64: np.int64,
        TensorProto.INT32: np.int32}


def _array(init):
    dtype = _RAW.get(init.data_type)
    if dtype is not None and init.raw_data and sys.byteorder == "little" and \
            len(init.raw_data) == int(np.prod(init.dims)) * np.dtype(dtype).itemsize:
        return np.frombuffer(init.raw_data, dtype=dtype).reshape(tuple(init.dims))
    return numpy_helper.to_array(init)


def graph_output_names(graph):
    return {o.name for o in graph.output}


def replace_initializer(graph, name, array):
    for i, init in enumerate(graph.initializer):
        if init.name == name:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(array.astype(array.dtype), name))
            return
    graph.initializer.append(numpy_helper.from_array(array, name))


def rename_input(graph, old, new):
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def remove_nodes(graph, doomed):
    keep = [n for n in graph.node if id(n) not in {id(d) for d in doomed}]
    del graph.node[:]
    graph.node.extend(keep)
