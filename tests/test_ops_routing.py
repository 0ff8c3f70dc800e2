"""Ops that route relevance without a rule of their own: each case puts one op between the input and a dense
layer (epsilon rule) and checks the compiled relevance against a numpy reference.

Copying ops (Slice, Gather, Pad, Expand, Tile, Resize, DepthToSpace, Concat, Split, channel shuffle) are linear
maps with 0/1 entries: their reference relevance is J^T R, with J built column by column from a numpy forward
(np.pad, slicing, np.take, ...) that has nothing to do with the compiler's onnx.reference probe.
"""
import numpy as np
import pytest
from onnx import TensorProto, helper

import onnx_lrp
from builders import make_model
from conftest import run

C, H, W = 3, 6, 6
CLASSES = 5
EPS = 1e-6


def const(name, values, dtype=np.int64):
    return name, np.array(values, dtype)


# name: (nodes from "x" to "y", constants, numpy forward of one sample [C, H, W] -> any shape, input shape)
CASES = {
    "slice_steps": ([helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="op")],
                    dict([const("s", [1, 0]), const("e", [4, 6]), const("a", [2, 3]), const("st", [1, 2])]),
                    lambda x: x[:, 1:4, 0:6:2]),
    "slice_negative": ([helper.make_node("Slice", ["x", "s", "e", "a", "st"], ["y"], name="op")],
                       dict([const("s", [-1, -5]), const("e", [-100, 100]), const("a", [1, -1]),
                             const("st", [-1, 1])]),
                       lambda x: x[::-1, :, -5:]),
    "gather_repeats": ([helper.make_node("Gather", ["x", "i"], ["y"], name="op", axis=1)],
                       dict([const("i", [2, 0, 2])]), lambda x: np.take(x, [2, 0, 2], axis=0)),
    "gather_scalar": ([helper.make_node("Gather", ["x", "i"], ["y"], name="op", axis=2)],
                      dict([const("i", 1)]), lambda x: x[:, 1]),
    "pad_constant": ([helper.make_node("Pad", ["x", "p", "v"], ["y"], name="op", mode="constant")],
                     dict([const("p", [0, 0, 1, 2, 0, 0, 2, 1]), const("v", 0.5, np.float32)]),
                     lambda x, k=1: np.pad(x, [(0, 0), (1, 2), (2, 1)], constant_values=0.5 * k)),
    "pad_reflect": ([helper.make_node("Pad", ["x", "p"], ["y"], name="op", mode="reflect")],
                    dict([const("p", [0, 0, 2, 1, 0, 0, 1, 2])]),
                    lambda x: np.pad(x, [(0, 0), (2, 1), (1, 2)], mode="reflect")),
    "expand": ([helper.make_node("Gather", ["x", "i"], ["g"], name="pick", axis=1),
                helper.make_node("Expand", ["g", "shape"], ["y"], name="op")],
               dict([const("i", [1]), const("shape", [1, 4, 1, 1])]),
               lambda x: np.broadcast_to(x[1:2], (4, H, W))),
    "tile": ([helper.make_node("Tile", ["x", "r"], ["y"], name="op")], dict([const("r", [1, 2, 1, 3])]),
             lambda x: np.tile(x, (2, 1, 3))),
    "resize_nearest": ([helper.make_node("Resize", ["x", "", "sc"], ["y"], name="op", mode="nearest")],
                       dict([const("sc", [1, 1, 2, 2], np.float32)]),
                       lambda x: x.repeat(2, axis=1).repeat(2, axis=2)),
    "depth_to_space": ([helper.make_node("Gather", ["x", "i"], ["g"], name="pick", axis=1),
                        helper.make_node("DepthToSpace", ["g"], ["y"], name="op", blocksize=2)],
                       dict([const("i", [0, 1, 2, 1])]),
                       lambda x: x[[0, 1, 2, 1]].reshape(2, 2, 1, H, W).transpose(2, 3, 0, 4, 1)
                       .reshape(1, 2 * H, 2 * W)),
    "concat_constant": ([helper.make_node("Concat", ["x", "k", "x"], ["y"], name="op", axis=1)],
                        {"k": np.full((1, 2, H, W), 0.7, np.float32)},
                        lambda x, k=1: np.concatenate([x, np.full((2, H, W), 0.7 * k), x], axis=0)),
    "split_one_used": ([helper.make_node("Split", ["x", "sz"], ["y", "rest"], name="op", axis=2)],
                       dict([const("sz", [2, 4])]), lambda x: x[:, :2]),
    "split_rejoined": ([helper.make_node("Split", ["x", "sz"], ["a", "b"], name="op", axis=1),
                        helper.make_node("Concat", ["b", "a"], ["y"], name="join", axis=1)],
                       dict([const("sz", [1, 2])]), lambda x: np.concatenate([x[1:], x[:1]])),
    "channel_shuffle": ([helper.make_node("Concat", ["x", "x"], ["x6"], name="six", axis=1),
                         helper.make_node("Reshape", ["x6", "s1"], ["r"], name="split_groups"),
                         helper.make_node("Transpose", ["r"], ["t"], name="shuffle", perm=[0, 2, 1, 3, 4]),
                         helper.make_node("Reshape", ["t", "s2"], ["y"], name="op")],
                        dict([const("s1", [-1, 2, 3, H, W]), const("s2", [-1, 6, H, W])]),
                        lambda x: np.concatenate([x, x]).reshape(2, 3, H, W).transpose(1, 0, 2, 3)
                        .reshape(6, H, W)),
}


def build(case, rng, batch="N"):
    nodes, consts, forward = CASES[case]
    out = forward(np.zeros((C, H, W)))
    features = int(np.prod(out.shape))
    weights = dict(consts, w=rng.normal(size=(CLASSES, features)).astype(np.float32))
    nodes = nodes + [helper.make_node("Flatten", ["y"], ["f"], name="flatten"),
                     helper.make_node("Gemm", ["f", "w"], ["logits"], name="dense", transB=1)]
    model = make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, C, H, W])],
                       [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, CLASSES])], weights)
    return model, forward, weights["w"]


def jacobian(forward):
    linear = (lambda x: forward(x, 0)) if forward.__defaults__ else forward  # constants (padding) left out
    columns = [np.ravel(linear(np.eye(C * H * W)[k].reshape(C, H, W))) for k in range(C * H * W)]
    return np.stack(columns, axis=1)  # [out, in]


def epsilon_dense(a, w, target):
    z = a @ w.T
    seed = np.eye(CLASSES)[target]
    s = z + EPS * np.where(z >= 0, 1.0, -1.0)
    return a * ((seed / s) @ w)


@pytest.mark.parametrize("case", [c for c in CASES if c != "concat_constant"])  # a [1, ...] constant: batch 1
def test_copying_op_routes_relevance_like_its_transpose(case, rng):
    model, forward, w = build(case, rng)
    x = rng.normal(size=(3, C, H, W)).astype(np.float32)
    target = np.array([0, 3, 4], np.int64)
    out = run(onnx_lrp.compile(model, "epsilon", seed="one-hot"), {"x": x, "target": target})
    a = np.stack([np.ravel(forward(s.astype(np.float64))) for s in x])
    np.testing.assert_allclose(out["logits"], a @ w.T, rtol=1e-5, atol=1e-5)
    jac = jacobian(forward)
    expected = (epsilon_dense(a, w, target) @ jac).reshape(x.shape)
    scale = np.abs(expected).max()
    assert np.abs(out["relevance_x"] - expected).max() <= 1e-5 * scale, case


@pytest.mark.parametrize("case", ["gather_repeats", "pad_constant", "resize_nearest", "concat_constant"])
def test_fixed_batch_of_one_keeps_its_batch(case, rng):
    model, forward, w = build(case, rng, batch=1)
    compiled = onnx_lrp.compile(model, "epsilon", seed="one-hot")
    dims = [d.dim_value for d in compiled.graph.output[-1].type.tensor_type.shape.dim]
    assert dims == [1, C, H, W]
    x = rng.normal(size=(1, C, H, W)).astype(np.float32)
    out = run(compiled, {"x": x, "target": np.array([2], np.int64)})
    a = np.ravel(forward(x[0].astype(np.float64)))[None]
    expected = (epsilon_dense(a, w, [2]) @ jacobian(forward)).reshape(x.shape)
    assert np.abs(out["relevance_x"] - expected).max() <= 1e-5 * np.abs(expected).max()


def test_op_that_moves_the_batch_is_refused(rng):
    model, _, _ = build("gather_repeats", rng)
    model.graph.node[0].attribute[0].i = 0  # Gather along the batch axis
    with pytest.raises(onnx_lrp.OnnxLrpError, match="batch"):
        onnx_lrp.compile(model)


def gather_forward(ids):
    return lambda sample: np.take(sample, ids, axis=0)


def test_runtime_indices_route_relevance_to_the_gathered_elements(rng):
    """Indices computed at run time (the last-token pooling of decoder classifiers): relevance goes back to the
    elements gathered this time."""
    model, _, w = build("gather_repeats", rng)
    model.graph.input.append(helper.make_tensor_value_info("ids", TensorProto.INT64, [3]))
    model.graph.node[0].input[1] = "ids"
    x = rng.normal(size=(2, C, H, W)).astype(np.float32)
    target = np.array([0, 3], np.int64)
    for ids in ([2, 0, 2], [1, 1, 0]):
        out = run(onnx_lrp.compile(model, "epsilon", seed="one-hot"),
                  {"x": x, "ids": np.array(ids, np.int64), "target": target})
        forward = gather_forward(ids)
        expected = np.stack([(epsilon_dense(np.ravel(forward(s.astype(np.float64)))[None], w, [t])
                              @ jacobian(forward)).reshape(x.shape[1:]) for s, t in zip(x, target)])
        assert np.abs(out["relevance_x"] - expected).max() <= 1e-5 * np.abs(expected).max()


def test_crop_and_resize_is_refused(rng):
    """Linear and cubic Resize compile (tests/test_resize.py); a crop-and-resize is refused, naming the mode."""
    model, _, _ = build("resize_nearest", rng)
    model.graph.node[0].attribute[0].s = b"linear"
    model.graph.node[0].attribute.append(helper.make_attribute("coordinate_transformation_mode",
                                                               "tf_crop_and_resize"))
    with pytest.raises(onnx_lrp.OnnxLrpError, match="tf_crop_and_resize"):
        onnx_lrp.compile(model)
