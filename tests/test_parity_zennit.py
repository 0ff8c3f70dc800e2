"""Parity with Zennit: every shipped model x every composite, reference data made by tools/make_reference.py.

Zennit's float32 result itself carries rounding error; where that error is large (Epsilon with eps=1e-6 on deep
nets: 1.4e-5 for MiniVGG), comparing two float32 implementations with each other is ill-conditioned. So every case
is compared against Zennit in float64 with the tolerance max(1e-4, 10 x Zennit's own float32 error); the test
names the cases where the float64 fallback decides.
"""
import numpy as np
import pytest

import onnx_lrp
from conftest import DATA, MODELS, compiled_once, relative_error, run

PARITY_MODELS = ["mlp_tabular", "minivgg_cifar10", "bn_avgpool_cnn", "conv1d_sequence"]
BOUNDS = dict(low=-3.0, high=3.0)  # the z-box bounds tools/make_reference.py gave Zennit


def compiled(name, composite, seed):
    return compiled_once(f"{MODELS}/{name}.onnx", composite, seed, **BOUNDS)


@pytest.mark.parametrize("composite", onnx_lrp.ZENNIT_COMPOSITES)
@pytest.mark.parametrize("name", PARITY_MODELS)
def test_relevance_equals_zennit(name, composite):
    data = np.load(f"{DATA}/{name}.npz")
    out = run(compiled(name, composite, "one-hot"), {"input": data["x"], "target": data["target"].astype(np.int64)})
    ours, ref64, ref32 = out["relevance_input"], data[f"{composite}/f64"], data[f"{composite}/f32"]
    assert ours.shape == data["x"].shape and ours.dtype == np.float32
    zennit_f32_error = relative_error(ref32, ref64)
    tolerance = max(1e-4, 10 * zennit_f32_error)
    error = relative_error(ours, ref64)
    if tolerance > 1e-4:
        print(f"{name}/{composite}: float32 is ill-conditioned here (Zennit f32 error {zennit_f32_error:.1e}); "
              f"float64 reference with tolerance {tolerance:.1e}")
    assert error <= tolerance, f"{name}/{composite}: max|ours - zennit| / max|zennit| = {error:.2e}"
    if tolerance == 1e-4:  # well-conditioned: we also agree with Zennit's own float32 numbers
        assert relative_error(ours, ref32) <= 1e-4


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_logit_seed_is_one_hot_times_logit(name):
    data = np.load(f"{DATA}/{name}.npz")
    feeds = {"input": data["x"], "target": data["target"].astype(np.int64)}
    one_hot = run(compiled(name, "epsilon-plus-flat", "one-hot"), feeds)["relevance_input"]
    logit = run(compiled(name, "epsilon-plus-flat", "logit"), feeds)["relevance_input"]
    chosen = data["logits"][np.arange(len(data["x"])), data["target"]].astype(np.float32)
    expected = one_hot * chosen.reshape((-1,) + (1,) * (one_hot.ndim - 1))
    assert relative_error(logit, expected) <= 1e-5


@pytest.mark.parametrize("name", PARITY_MODELS)
def test_outputs_unchanged_and_batches_of_1_and_64(name):
    """The compiled file keeps the model's outputs and explains a batch of 1 and of 64 alike."""
    data = np.load(f"{DATA}/{name}.npz")
    model = compiled(name, "epsilon-gamma-box", "one-hot")
    x, target = data["x"], data["target"].astype(np.int64)
    first_output = model.graph.output[0].name
    full = run(model, {"input": x, "target": target})
    logits = data["logits"]
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True) if first_output == "probabilities" else logits
    np.testing.assert_allclose(full[first_output], expected, rtol=1e-4, atol=1e-5)
    single = run(model, {"input": x[:1], "target": target[:1]})
    np.testing.assert_allclose(single["relevance_input"], full["relevance_input"][:1], rtol=1e-5, atol=1e-7)
    reps = -(-64 // len(x))
    big_x = np.concatenate([x] * reps)[:64]
    big = run(model, {"input": big_x, "target": np.concatenate([target] * reps)[:64]})
    assert big["relevance_input"].shape == big_x.shape
    np.testing.assert_allclose(big["relevance_input"], np.concatenate([full["relevance_input"]] * reps)[:64],
                               rtol=1e-5, atol=1e-7)
