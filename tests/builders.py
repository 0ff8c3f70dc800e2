"""Small ONNX classifiers built with onnx.helper and seeded numpy weights (no PyTorch needed)."""
import numpy as np
from onnx import TensorProto, helper, numpy_helper


def make_model(nodes, inputs, outputs, weights, opset=17, ir_version=8):
    graph = helper.make_graph(nodes, "test", inputs, outputs,
                              initializer=[numpy_helper.from_array(np.asarray(v), k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = ir_version
    return model


def he(rng, shape, fan_in):
    return (rng.normal(size=shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def cnn(rng, bias=True, classes=10):
    """Conv-ReLU-MaxPool(overlapping)-Conv-ReLU-AveragePool-Conv-ReLU-GlobalAveragePool-Flatten-Gemm-ReLU-Gemm."""
    w = {"w1": he(rng, (8, 3, 3, 3), 27), "w2": he(rng, (16, 8, 3, 3), 72), "w3": he(rng, (16, 16, 3, 3), 144),
         "w4": he(rng, (16, 16), 16), "w5": he(rng, (classes, 16), 16)}
    if bias:
        w.update({f"b{i}": (0.1 * rng.normal(size=n)).astype(np.float32)
                  for i, n in ((1, 8), (2, 16), (3, 16), (4, 16), (5, classes))})
    b = (lambda i: [f"b{i}"]) if bias else (lambda i: [])
    nodes = [
        helper.make_node("Conv", ["x", "w1", *b(1)], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["p1", "w2", *b(2)], ["c2"], name="conv2", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("AveragePool", ["r2"], ["p2"], name="pool2", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p2", "w3", *b(3)], ["c3"], name="conv3", pads=[1, 1, 1, 1], strides=[1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"], name="relu3"),
        helper.make_node("GlobalAveragePool", ["r3"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "w4", *b(4)], ["d1"], name="dense1", transB=1),
        helper.make_node("Relu", ["d1"], ["r4"], name="relu4"),
        helper.make_node("Gemm", ["r4", "w5", *b(5)], ["logits"], name="dense2", transB=1),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], w)


def mlp(rng, bias=True, features=12, classes=4):
    """MatMul(+Add)-ReLU-Gemm-Tanh-Gemm: both dense forms and a non-ReLU activation."""
    w = {"w1": he(rng, (features, 24), features), "w2": he(rng, (24, 16), 24), "w3": he(rng, (classes, 16), 16)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["m1"], name="dense1")]
    if bias:
        w.update({"b1": (0.1 * rng.normal(size=24)).astype(np.float32),
                  "b2": (0.1 * rng.normal(size=16)).astype(np.float32),
                  "b3": (0.1 * rng.normal(size=classes)).astype(np.float32)})
        nodes.append(helper.make_node("Add", ["m1", "b1"], ["h1"], name="dense1_bias"))
    else:
        nodes.append(helper.make_node("Identity", ["m1"], ["h1"], name="noop"))
    nodes += [
        helper.make_node("Relu", ["h1"], ["r1"], name="relu1"),
        helper.make_node("Gemm", ["r1", "w2"] + (["b2"] if bias else []), ["h2"], name="dense2"),
        helper.make_node("Tanh", ["h2"], ["t2"], name="tanh2"),
        helper.make_node("Gemm", ["t2", "w3"] + (["b3"] if bias else []), ["logits"], name="dense3", transB=1),
    ]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", features])],
                      [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", classes])], w)
