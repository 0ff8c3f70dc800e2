"""Half-precision models: the relevance pass runs in float32 inside, behind the model's own float16 interface.

LRP divides by pre-activations that float16 rounds to zero or overflows (z = 65504 at most, epsilon 1e-6 is below
its resolution), so a float16 model is compiled as its float32 twin: weights, constants and casts are widened before
compiling (`widen_to_float32`), and afterwards the original inputs and outputs get their float16 type back through
one Cast each (`restore_interface`). The relevance outputs stay float32.
"""
import numpy as np
from onnx import TensorProto, helper, numpy_helper

HALF_TYPES = (TensorProto.FLOAT16, TensorProto.BFLOAT16)


def _widened(tensor):
    array = numpy_helper.to_array(tensor).astype(np.float32)
    wide = numpy_helper.from_array(array, tensor.name)
    wide.doc_string = tensor.doc_string
    return wide


def widen_to_float32(model):
    """In place: every float16/bfloat16 initializer, constant, cast target and typed tensor becomes float32.
    Returns {name: original elem_type} of the graph inputs and outputs that were half precision."""
    graph = model.graph
    interface = {vi.name: vi.type.tensor_type.elem_type for vi in (*graph.input, *graph.output)
                 if vi.type.tensor_type.elem_type in HALF_TYPES}
    for k, init in enumerate(graph.initializer):
        if init.data_type in HALF_TYPES:
            graph.initializer[k].CopyFrom(_widened(init))
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == attr.TENSOR and attr.t.data_type in HALF_TYPES:
                attr.t.CopyFrom(_widened(attr.t))
            elif node.op_type in ("Cast", "EyeLike", "RandomNormalLike", "RandomUniformLike") \
                    and attr.name in ("to", "dtype") and attr.i in HALF_TYPES:
                attr.i = TensorProto.FLOAT
    for vi in (*graph.input, *graph.output, *graph.value_info):
        if vi.type.tensor_type.elem_type in HALF_TYPES:
            vi.type.tensor_type.elem_type = TensorProto.FLOAT
    return interface


def restore_interface(model, interface):
    """In place: inputs and outputs listed by widen_to_float32 get their half type back; inside, the compiled graph
    reads a float32 Cast of each such input and writes each such output through a Cast from float32."""
    if not interface:
        return
    graph = model.graph
    inner = {name: f"{name}/lrp/float32" for name in interface}
    for node in graph.node:
        node.input[:] = [inner.get(n, n) for n in node.input]
        node.output[:] = [inner.get(n, n) for n in node.output]
    for vi in graph.value_info:
        if vi.name in inner:
            vi.name = inner[vi.name]
    casts = []
    for vi in graph.input:
        if vi.name in interface:
            casts.append(helper.make_node("Cast", [vi.name], [inner[vi.name]], name=f"{vi.name}/lrp/to_float32",
                                          to=TensorProto.FLOAT))
            vi.type.tensor_type.elem_type = interface[vi.name]
    outputs = []
    for vi in graph.output:
        if vi.name in interface:
            outputs.append(helper.make_node("Cast", [inner[vi.name]], [vi.name], name=f"{vi.name}/lrp/to_half",
                                            to=interface[vi.name]))
            vi.type.tensor_type.elem_type = interface[vi.name]
    nodes = casts + list(graph.node) + outputs
    del graph.node[:]
    graph.node.extend(nodes)
