"""Parity with Zennit 0.5.1 on common architectures, every composite; reference data made by
tools/make_reference_archs.py (models/parity/*.onnx, tests/data/parity/*.npz; PyTorch is not needed here).

The models are torchvision's classes with seeded random weights, non-zero biases and BatchNorm statistics away from
the identity (measured on random inputs, then moved per channel, so that the output depends on the input), scaled
down so that each .onnx stays under 3 MB (full-size ResNet-18 is 45 MB, VGG-16 500 MB):
- resnet18_quarter: ResNet-18 topology (torchvision BasicBlock, layers [2, 2, 2, 2]) at 1/4 width (planes
  16/32/64/128 instead of 64/128/256/512), 64x64 input, 10 classes; Zennit's ResNetCanonizer (each residual add
  becomes its Sum module: Norm rule).
- vgg16_bn_eighth: VGG-16-BN (torchvision cfg 'D', batch_norm=True) at 1/8 width (8 ... 64 channels), classifier of
  the same Linear-ReLU-Dropout structure at 4096 / 8 = 512, AdaptiveAvgPool2d((2, 2)) instead of (7, 7) for the
  64x64 input, 10 classes; Zennit's VGGCanonizer.
- mobilenet_v2_quarter: torchvision MobileNetV2 with width_mult=0.25 (depthwise convs, ReLU6, residual adds), 64x64
  input, 10 classes. Its head pools with an nn.AdaptiveAvgPool2d module instead of torchvision's functional
  adaptive_avg_pool2d (which Zennit would differentiate rather than give the Norm rule that onnx-lrp uses for
  GlobalAveragePool); Zennit gets a canonizer that turns each residual add into its Sum module, as ResNetCanonizer
  does for BasicBlock.
- text_embedding_mlp: nn.Embedding(500, 16) on int64 token ids [N, 16] -> Flatten -> Linear -> ReLU -> Linear. The
  compiled graph explains the ids input with `relevance_ids` [N, 16]: the relevance at the embedding output summed
  over the embedding dimension, compared with Zennit's relevance at the embedding output summed the same way.
All BN merges are exact (eps set to 0 after folding, as Zennit 1.0.0; 0.5.1 leaves a 1/sqrt(1+eps) factor).
VGG is exported with its BatchNormalization nodes (onnx-lrp folds them), the others with BN folded by the exporter.

The deep nets are ill-conditioned in float32 where Zennit's own float32 result is off by ~1e-4 (ResNet: every
composite, residual Sums whose inputs nearly cancel, |x1| + |x2| up to 4e5 x |x1 + x2|; MobileNetV2: Epsilon and
Alpha2Beta1): there a relative perturbation of 2^-24 of every weight and of the input moves Zennit's float64 result
by up to 4.6e-5 (ResNet, EpsilonPlus), 2.2e-4 (MobileNetV2, Epsilon) and 1.4e-3 (MobileNetV2, Epsilon-Alpha2-Beta1),
so two float32 implementations agree only to about that.

As in tests/test_parity_zennit.py, every case is compared with Zennit in float64 with the tolerance
max(1e-4, 10 x Zennit's own float32 error), and where that is 1e-4 also with Zennit's float32 numbers.
"""
import numpy as np
import pytest
from onnx import TensorProto

import onnx_lrp
from conftest import ROOT, compiled_once, relative_error, run

MODELS = f"{ROOT}/models/parity"
DATA = f"{ROOT}/tests/data/parity"
INPUTS = {"resnet18_quarter": "input", "vgg16_bn_eighth": "input", "mobilenet_v2_quarter": "input",
          "text_embedding_mlp": "ids"}
BOUNDS = dict(low=-3.0, high=3.0)  # the z-box bounds tools/make_reference_archs.py gave Zennit


def compiled(name, composite, seed="one-hot"):
    return compiled_once(f"{MODELS}/{name}.onnx", composite, seed, **BOUNDS)


def feeds(name, data):
    x = data["x"]
    return {INPUTS[name]: x.astype(np.int64) if x.dtype.kind == "i" else x, "target": data["target"].astype(np.int64)}


@pytest.mark.parametrize("composite", onnx_lrp.ZENNIT_COMPOSITES)
@pytest.mark.parametrize("name", list(INPUTS))
def test_relevance_equals_zennit(name, composite):
    data = np.load(f"{DATA}/{name}.npz")
    out = run(compiled(name, composite), feeds(name, data))
    ours, ref64, ref32 = out[f"relevance_{INPUTS[name]}"], data[f"{composite}/f64"], data[f"{composite}/f32"]
    assert ours.shape == ref64.shape == data["x"].shape and ours.dtype == np.float32
    zennit_f32_error = relative_error(ref32, ref64)
    tolerance = max(1e-4, 10 * zennit_f32_error)
    error = relative_error(ours, ref64)
    print(f"{name}/{composite}: ours vs Zennit f64 {error:.2e}, Zennit f32 vs f64 {zennit_f32_error:.2e}")
    if tolerance > 1e-4:
        print(f"{name}/{composite}: float32 is ill-conditioned here (Zennit f32 error {zennit_f32_error:.1e}); "
              f"float64 reference with tolerance {tolerance:.1e}")
    assert error <= tolerance, f"{name}/{composite}: max|ours - zennit| / max|zennit| = {error:.2e}"
    if tolerance == 1e-4:  # well-conditioned: we also agree with Zennit's own float32 numbers
        assert relative_error(ours, ref32) <= 1e-4


@pytest.mark.parametrize("name", list(INPUTS))
def test_outputs_unchanged_and_batch_of_1(name):
    """The compiled file keeps the logits, explains a batch of 1 like the full batch, and its logit seed is the
    one-hot result times the explained logit. Scaling the seed changes only float32 rounding, which these deep nets
    amplify as much as Zennit's own float32 error shows (ResNet: 1.4e-4), hence the same max(., 10 x that) bound."""
    data = np.load(f"{DATA}/{name}.npz")
    model = compiled(name, "epsilon-plus-flat")
    relevance = f"relevance_{INPUTS[name]}"
    full = run(model, feeds(name, data))
    np.testing.assert_allclose(full["logits"], data["logits"], rtol=1e-4, atol=1e-5)
    single = run(model, {k: v[:1] for k, v in feeds(name, data).items()})
    np.testing.assert_allclose(single[relevance], full[relevance][:1], rtol=1e-5,
                               atol=1e-6 * np.abs(full[relevance]).max())
    logit = run(compiled(name, "epsilon-plus-flat", "logit"), feeds(name, data))[relevance]
    chosen = data["logits"][np.arange(len(data["x"])), data["target"]].astype(np.float32)
    expected = full[relevance] * chosen.reshape((-1,) + (1,) * (logit.ndim - 1))
    zennit_f32_error = relative_error(data["epsilon-plus-flat/f32"], data["epsilon-plus-flat/f64"])
    assert relative_error(logit, expected) <= max(1e-5, 10 * zennit_f32_error)


def test_token_relevance_interface():
    """The text model's ids stay an int64 graph input; the relevance output is float32 [N, T]."""
    model = compiled("text_embedding_mlp", "epsilon")
    inputs = {i.name: i.type.tensor_type.elem_type for i in model.graph.input}
    outputs = {o.name: o.type.tensor_type for o in model.graph.output}
    assert inputs["ids"] == TensorProto.INT64 and inputs["target"] == TensorProto.INT64
    assert outputs["relevance_ids"].elem_type == TensorProto.FLOAT
    dims = outputs["relevance_ids"].shape.dim
    assert len(dims) == 2 and dims[1].dim_value == 16

