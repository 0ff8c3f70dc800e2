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


class ConstantArrays(dict):
    """name -> numpy array of an initializer, converted on first access: protobuf hands out a copy of a tensor's
    bytes, so converting every weight up front would hold a second copy of the model."""

    def __init__(self, graph):
        super().__init__()
        self._initializers = {init.name: init for init in graph.initializer}

    def __contains__(self, name):
        return dict.__contains__(self, name) or name in self._initializers

    def __missing__(self, name):
        value = self[name] = _array(self._initializers[name])
        return value

    def shape(self, name):
        """The dims of a constant, without converting it."""
        if dict.__contains__(self, name):
            return tuple(dict.__getitem__(self, name).shape)
        return tuple(self._initializers[name].dims)

    def get(self, name, default=None):
        return self[name] if name in self else default

    def keys(self):
        return self._initializers.keys() | dict.keys(self)

    def __iter__(self):
        return iter(self.keys())

    def __len__(self):
        return len(self.keys())


def constant_arrays(graph):
    """name -> numpy array of every initializer (converted lazily, see ConstantArrays)."""
    return ConstantArrays(graph)


_RAW = {TensorProto.FLOAT: np.float32, TensorProto.DOUBLE: np.float64, TensorProto.INT64: np.int64,
        TensorProto.INT32: np.int32}


def _array(init):
    dtype = _RAW.get(init.data_type)
    raw = init.raw_data if dtype is not None and sys.byteorder == "little" else b""  # (a copy, made once)
    if raw and len(raw) == int(np.prod(init.dims)) * np.dtype(dtype).itemsize:
        return np.frombuffer(raw, dtype=dtype).reshape(tuple(init.dims))
    return numpy_helper.to_array(init)


def graph_output_names(graph):
    return {o.name for o in graph.output}


def replace_initializer(graph, name, array):
    for i, init in enumerate(graph.initializer):
        if init.name == name:
            graph.initializer[i].CopyFrom(numpy_helper.from_array(array.astype(array.dtype), name))
            return
    graph.initializer.append(numpy_helper.from_array(array, name))


def remove_nodes(graph, doomed):
    keep = [n for n in graph.node if id(n) not in {id(d) for d in doomed}]
    del graph.node[:]
    graph.node.extend(keep)
