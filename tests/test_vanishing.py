"""The one-Add stabilizers (z-plus denominators, which are >= 0 by construction, and a layer output read only by a
ReLU whose relevance vanishes where it is 0: vanishing.py) give the relevance of Zennit's sign-aware stabilizer,
and are used only where that holds."""
import os

import numpy as np
import onnx
import pytest

import onnx_lrp
from builders import cnn
from conftest import MODELS, run
from onnx_lrp.compiler import make_params, prepare
from onnx_lrp.graph import GraphBuilder
from onnx_lrp.ops import linear
from onnx_lrp.vanishing import positive_parts

SIGN_AWARE = GraphBuilder.divide_stabilized


def sign_aware_everywhere(self, r, z, eps, scope, non_negative=False):
    """divide_stabilized without the shortcuts: z + eps * sign0(z) for every denominator."""
    saved = self.positive_part, self.products
    self.positive_part, self.products = {}, {}
    try:
        return SIGN_AWARE(self, r, z, eps, scope)
    finally:
        self.positive_part, self.products = saved


def no_folding(rule, terms, layer):
    """_stabilizer_folded_groups folding nothing: every stabilizer a separate Add."""
    return set()


def without_products(self, r, z, eps, scope, non_negative=False):
    """divide_stabilized without the product form (r = z * q divided as q * |z| / (|z| + eps))."""
    saved, self.products = self.products, {}
    try:
        return SIGN_AWARE(self, r, z, eps, scope, non_negative)
    finally:
        self.products = saved


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-plus-flat", "epsilon-alpha2-beta1", "epsilon-gamma-box"])
@pytest.mark.parametrize("name", ["minivgg_cifar10.onnx", "parity/resnet18_quarter.onnx", "bn_avgpool_cnn.onnx"])
def test_shortcuts_give_the_sign_aware_relevance(name, composite, monkeypatch, rng):
    monkeypatch.setattr(linear, "_stabilizer_folded_groups", no_folding)  # the folded form: test_folded_stabilizer
    path = os.path.join(MODELS, name)
    with monkeypatch.context() as m:  # the product form: test_product_form below
        m.setattr(GraphBuilder, "divide_stabilized", without_products)
        fast = onnx_lrp.compile(path, composite, low=-3, high=3)
    with monkeypatch.context() as m:
        m.setattr(GraphBuilder, "divide_stabilized", sign_aware_everywhere)
        slow = onnx_lrp.compile(path, composite, low=-3, high=3)
    assert len(fast.graph.node) < len(slow.graph.node)  # the shortcuts were taken
    x_info = fast.graph.input[0]
    x = rng.normal(size=[2] + [d.dim_value for d in x_info.type.tensor_type.shape.dim[1:]]).astype(np.float32)
    x[0, :, :4] = 0.0  # exact zeros: pre-activations of exactly 0 downstream
    feeds = {x_info.name: x, "target": np.array([-1, 3], np.int64)}
    ours, reference = run(fast, feeds), run(slow, feeds)
    for key in ours:
        np.testing.assert_array_equal(ours[key], reference[key], err_msg=key)


def test_shortcut_only_where_relevance_vanishes_with_the_relu(rng):
    """Flat (and z-box, w-square) hand relevance to zero inputs: the output before such a layer's ReLU may not use
    relu(z) + eps; in gradient form nothing may."""
    model = cnn(rng)
    plain = prepare(model, "epsilon", make_params())
    assert set(positive_parts(plain.plan, "logit")) == {"c1", "c2", "c3", "d1"}
    flat_second = prepare(model, "epsilon", make_params(), rules=["conv2=flat"])
    assert "c1" not in positive_parts(flat_second.plan, "logit")  # conv2's flat rule gives relevance where r1 == 0
    assert "c2" in positive_parts(flat_second.plan, "logit")
    gradient = prepare(model, "attnlrp", make_params())
    assert positive_parts(gradient.plan, "logit") == {}  # gradients are no relevance


def test_shortcut_needs_the_relu_to_be_the_only_reader(rng):
    model = cnn(rng)
    gap = next(n for n in model.graph.node if n.name == "gap")
    model.graph.node.remove(gap)  # GAP(relu3 + c3): c3 is read by relu3 and by the sum
    after = [n.name for n in model.graph.node].index("relu3") + 1
    model.graph.node.insert(after, onnx.helper.make_node("Add", ["r3", "c3"], ["mixed"], name="mix"))
    model.graph.node.insert(after + 1, onnx.helper.make_node("GlobalAveragePool", ["mixed"], ["g"], name="gap"))
    plan = prepare(model, "epsilon", make_params()).plan
    parts = positive_parts(plan, "logit")
    assert "c3" not in parts and "c2" in parts


@pytest.mark.parametrize("composite", ["epsilon-plus-flat", "epsilon-alpha2-beta1"])
@pytest.mark.parametrize("name", ["minivgg_cifar10.onnx", "parity/resnet18_quarter.onnx"])
def test_folded_stabilizer(name, composite, monkeypatch, rng):
    """A denominator that is one modified forward >= 0 (z-plus, flat, alpha's share) gets its stabilizer as that
    forward's bias: one Add fewer per layer, the same relevance up to float rounding."""
    path = os.path.join(MODELS, name)
    folded = onnx_lrp.compile(path, composite, low=-3, high=3)
    monkeypatch.setattr(linear, "_stabilizer_folded_groups", no_folding)
    separate = onnx_lrp.compile(path, composite, low=-3, high=3)
    adds = [sum(n.op_type == "Add" for n in m.graph.node) for m in (folded, separate)]
    assert adds[0] < adds[1]
    x_info = folded.graph.input[0]
    x = rng.normal(size=[2] + [d.dim_value for d in x_info.type.tensor_type.shape.dim[1:]]).astype(np.float32)
    feeds = {x_info.name: x, "target": np.array([-1, 3], np.int64)}
    ours, reference = run(folded, feeds), run(separate, feeds)
    for key in ours:
        scale = np.abs(reference[key]).max()
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-4, atol=1e-6 * scale, err_msg=key)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-gamma-box"])
def test_product_form(composite, monkeypatch, rng):
    """A relevance r = z * q (a residual sum's share, a contribution) divided by s(z) = z + eps sign0(z) is
    q * |z| / (|z| + eps): the same value, and no sign is computed (Less and Cast leave the graph of a ResNet)."""
    path = os.path.join(MODELS, "parity/resnet18_quarter.onnx")
    product = onnx_lrp.compile(path, composite, low=-3, high=3)
    monkeypatch.setattr(GraphBuilder, "divide_stabilized", without_products)
    signed = onnx_lrp.compile(path, composite, low=-3, high=3)
    less = [sum(n.op_type == "Less" for n in m.graph.node) for m in (product, signed)]
    if composite == "epsilon":  # (gamma's denominators are no layer output)
        assert less[0] < less[1]
    x_info = product.graph.input[0]
    x = rng.normal(size=[2] + [d.dim_value for d in x_info.type.tensor_type.shape.dim[1:]]).astype(np.float32)
    x[0, :, :4] = 0.0
    feeds = {x_info.name: x, "target": np.array([-1, 3], np.int64)}
    ours, reference = run(product, feeds), run(signed, feeds)
    for key in ours:
        scale = np.abs(reference[key]).max()
        np.testing.assert_allclose(ours[key], reference[key], rtol=1e-4, atol=1e-6 * scale, err_msg=key)
