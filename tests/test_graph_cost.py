"""What the compiled graph costs, asserted structurally (speed itself is claimed only in tools/bench.py): rule terms
whose input is provably zero are not emitted."""
import os

import numpy as np

import onnx_lrp
from builders import cnn
from conftest import run


def test_relu_network_carries_no_negative_input_terms(rng):
    """z-plus, gamma and alpha-beta add a term for the negative part a- of a layer's input; behind a ReLU (or a
    MaxPool or average of one) a- is exactly zero, so only the first conv, which reads the raw input, keeps it."""
    model = cnn(rng)
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    for composite in ("epsilon-plus", "epsilon-gamma-box", "epsilon-alpha2-beta1"):
        compiled = onnx_lrp.compile(model, composite, low=-3, high=3)
        negative_parts = [n.name for n in compiled.graph.node if n.name.endswith("/lrp/input_neg_node")]
        first = {"epsilon-gamma-box": []}.get(composite, ["conv1/lrp/input_neg_node"])  # z-box has no a- term
        assert negative_parts == first, composite
        out = run(compiled, {"x": x, "target": np.full(2, -1, np.int64)})
        assert np.all(np.isfinite(out["relevance_x"]))


def test_resnet50_graph_stays_small_and_uses_convs_for_stride_one_adjoints():
    """A regression in the emitted graph shows here first: the compiled torchvision ResNet-50 skeleton (169 nodes)
    runs at most 450 nodes per inference with epsilon-plus-flat (the weight modifications folded at load left out).
    439 now: one modified forward per conv behind a ReLU and no a- terms; the stabilizer of a denominator >= 0
    (z-plus, flat) folded into its forward's bias, one Add where relevance vanishes with the ReLU (vanishing.py),
    |z| / (|z| + eps) for a relevance z * q, the sign (Less, Cast, Mul, Add) only on the logits and the pooled
    features; a ReLU output's two relevance shares summed before the one Mul by it; 11 nodes for the MaxPool's
    winner-takes-all, written without its Indices output. Only the 7 strided convs and the MaxPool go back through a ConvTranspose; every stride-1
    adjoint is a Conv with the flipped kernel."""
    from zoo import SKELETONS, WEIGHT_SEED, materialize
    model = materialize(f"{SKELETONS}/resnet50.onnx", WEIGHT_SEED)
    strided = [n for n in model.graph.node if n.op_type == "Conv"
               and any(a.name == "strides" and any(s != 1 for s in a.ints) for a in n.attribute)]
    compiled = onnx_lrp.compile(model, "epsilon-plus-flat")
    ops = [n.op_type for n in runtime_nodes(compiled.graph)]
    assert len(ops) <= 450
    assert ops.count("Less") <= 3  # sign-aware stabilizers only where neither shortcut applies
    assert len(strided) == 7
    assert ops.count("ConvTranspose") == len(strided) + ops.count("MaxPool") == 8


def runtime_nodes(graph):
    """The nodes that run per inference: not those computed from initializers alone (modified weights, flipped
    kernels), which runtimes fold once at load."""
    constant = {t.name for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.input and all(n in constant for n in node.input if n):
            constant.update(node.output)
        else:
            nodes.append(node)
    return nodes


def test_compiled_file_holds_no_modified_weight_copies():
    """W+, W-, W + gamma W+, W^2 and ones are nodes on the model's own weight initializers, folded by runtimes at
    load: the compiled ResNet-50 is within 10 % of the original's size for every Zennit composite (2.85 times
    before)."""
    from zoo import SKELETONS, WEIGHT_SEED, materialize
    model = materialize(f"{SKELETONS}/resnet50.onnx", WEIGHT_SEED)
    size = len(model.SerializeToString())
    for composite in onnx_lrp.ZENNIT_COMPOSITES:
        compiled = onnx_lrp.compile(model, composite, low=-3, high=3, verify=False)
        assert len(compiled.SerializeToString()) <= 1.1 * size, composite


def test_bench_profile_sums_kernel_time_by_op():
    """tools/bench_profile.py (where a compiled graph spends its time) runs and its shares add up."""
    import re
    import subprocess
    import sys
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, os.path.join(root, "tools", "bench_profile.py"),
                          os.path.join(root, "models", "minivgg_cifar10.onnx"), "--composite", "epsilon", "--runs", "2"],
                         capture_output=True, text=True, check=True).stdout
    shares = [float(m) for m in re.findall(r"^\s+\w+\s+([\d.]+) %", out, flags=re.MULTILINE)]
    assert "Conv" in out and "slowest 10 nodes:" in out
    assert abs(sum(shares) - 100) < 1.0
