"""Conservation: without biases, relevance is neither created nor lost (up to the stabilizer), so the input
relevance sums to the seed. Checked per sample, with the one-hot seed (sum 1) and the logit seed (sum = logit)."""
import numpy as np
import pytest

import onnx_lrp
from builders import cnn, mlp
from conftest import run

CONSERVATIVE = ["epsilon", "z-plus", "gamma", "flat", "w-square"]
ACTIVATION_BLIND = {"flat", "w-square"}


def overrides(builder, rule):
    """The rule on every linear layer. Flat and w-square ignore activations: on every layer of the CNN they would
    send relevance to all-zero pooling windows, where the Norm rule (like Zennit's) drops it, so in the CNN they
    take their intended place, the first layer, and z-plus the rest. The MLP has them on every layer."""
    if builder is cnn and rule in ACTIVATION_BLIND:
        return [f"conv1={rule}", "*=z-plus"]
    return [f"*={rule}"]


@pytest.mark.parametrize("rule", CONSERVATIVE)
@pytest.mark.parametrize("builder", [cnn, mlp], ids=["cnn", "mlp"])
def test_relevance_sums_to_seed_without_bias(builder, rule, rng):
    model = builder(rng, bias=False)
    compiled = onnx_lrp.compile(model, seed="one-hot", rules=overrides(builder, rule))
    x = rng.normal(size=[8] + [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[1:]])
    x = x.astype(np.float32)
    out = run(compiled, {"x": x, "target": np.full(8, -1, np.int64)})
    sums = out["relevance_x"].reshape(8, -1).sum(1)
    np.testing.assert_allclose(sums, 1.0, atol=1e-3)


@pytest.mark.parametrize("composite", ["epsilon", "epsilon-plus", "epsilon-plus-flat"])
def test_composites_conserve_the_logit_without_bias(composite, rng):
    model = cnn(rng, bias=False)
    compiled = onnx_lrp.compile(model, composite, seed="logit")
    x = rng.normal(size=(8, 3, 16, 16)).astype(np.float32)
    out = run(compiled, {"x": x, "target": np.arange(8, dtype=np.int64)})
    chosen = out["logits"][np.arange(8), np.arange(8)]
    sums = out["relevance_x"].reshape(8, -1).sum(1)
    np.testing.assert_allclose(sums, chosen, atol=1e-3 * np.abs(chosen).max())


def test_bias_absorbs_relevance(rng):
    """The converse, so the test above can fail: with biases the sum moves away from the seed."""
    compiled = onnx_lrp.compile(cnn(rng, bias=True), "epsilon", seed="one-hot")
    x = rng.normal(size=(8, 3, 16, 16)).astype(np.float32)
    sums = run(compiled, {"x": x, "target": np.zeros(8, np.int64)})["relevance_x"].reshape(8, -1).sum(1)
    assert np.abs(sums - 1.0).max() > 1e-2
