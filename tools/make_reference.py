"""Build the parity models with seeded weights, export them to ONNX, and store Zennit's relevance for them.

Writes models/<name>.onnx and tests/data/<name>.npz. Each .npz holds the inputs `x`, the `target` classes, the
float32 `logits`, and for every composite Zennit's input relevance with the one-hot seed, in float32
(`<composite>/f32`) and float64 (`<composite>/f64`, the same model and input cast to double).

Needs the `reference` extra (PyTorch, zennit 0.5.1): pip install torch==2.13.0 zennit
    python tools/make_reference.py
Zennit 0.5.1's MergeBatchNorm leaves BN's `eps` in place after folding (a factor 1/sqrt(1+eps) per BN); the
canonizer below also sets eps to 0, which is what Zennit 1.0.0 does. Every model is copied before Zennit touches
it, and the ONNX export is made from a copy Zennit never saw.
"""
import copy
import os
import sys

import numpy as np
import torch
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import (EpsilonAlpha2Beta1, EpsilonAlpha2Beta1Flat, EpsilonGammaBox, EpsilonPlus,
                               EpsilonPlusFlat, LayerMapComposite, layer_map_base)
from zennit.rules import Epsilon
from zennit.types import Linear as AnyLinear

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOW, HIGH = -3.0, 3.0  # input bounds for z-box (inputs are clipped to them)
N_SAMPLES = 6


class ExactMergeBatchNorm(SequentialMergeBatchNorm):
    """Zennit 0.5.1's sequential BN merge, made exact as in Zennit 1.0.0 (the merged BN computes the identity)."""

    @staticmethod
    def merge_batch_norm(modules, batch_norm):
        SequentialMergeBatchNorm.merge_batch_norm(modules, batch_norm)
        batch_norm.eps = 0.0


def composites(canonizers):
    c = lambda: [type(k)() for k in canonizers]  # noqa: E731  fresh canonizer instances per composite
    return {
        "epsilon": LayerMapComposite(layer_map=layer_map_base() + [(AnyLinear, Epsilon())], canonizers=c()),
        "epsilon-plus": EpsilonPlus(canonizers=c()),
        "epsilon-plus-flat": EpsilonPlusFlat(canonizers=c()),
        "epsilon-gamma-box": EpsilonGammaBox(low=LOW, high=HIGH, canonizers=c()),
        "epsilon-alpha2-beta1": EpsilonAlpha2Beta1(canonizers=c()),
        "epsilon-alpha2-beta1-flat": EpsilonAlpha2Beta1Flat(canonizers=c()),
    }


def randomize(model, generator):
    """Non-zero biases everywhere; BatchNorm statistics and affine parameters far from the identity."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=generator))
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=generator))
                m.running_var.copy_(0.5 + torch.rand(c, generator=generator))
                m.weight.copy_(0.8 + 0.4 * torch.rand(c, generator=generator))
                m.bias.copy_(0.1 * torch.randn(c, generator=generator))
    return model.eval()


def mlp_tabular(g):
    """3-layer MLP on the 13 standardised features of scikit-learn's wine data, briefly trained."""
    from sklearn.datasets import load_wine
    data = load_wine()
    x = (data.data - data.data.mean(0)) / data.data.std(0)
    x, y = torch.tensor(x, dtype=torch.float32), torch.tensor(data.target)
    model = nn.Sequential(nn.Linear(13, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval(), x[::30][:N_SAMPLES].clone(), []


def minivgg_cifar10(g):
    """CIFAR-10 MiniVGG: 4 convs, 2 max-pools, dropout, 2 dense layers; exported with a final Softmax."""
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.5), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Dropout(0.5), nn.Linear(128, 10))
    x = torch.randn(N_SAMPLES, 3, 32, 32, generator=g).clamp(LOW, HIGH)
    return randomize(model, g), x, []


def bn_avgpool_cnn(g):
    """CNN with BatchNorm (kept as ONNX nodes), AveragePool (padded, ceil_mode, count_include_pad=False, and a
    plain one), global average pooling, and a dense BatchNorm1d."""
    model = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AvgPool2d(3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
        nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))
    x = torch.randn(N_SAMPLES, 3, 20, 20, generator=g).clamp(LOW, HIGH)
    return randomize(model, g), x, [ExactMergeBatchNorm()]


def conv1d_sequence(g):
    """Conv1d sequence net: overlapping max-pool, dilated grouped conv, strided depthwise conv, global pooling."""
    model = nn.Sequential(
        nn.Conv1d(4, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(3, stride=2, padding=1),
        nn.Conv1d(16, 32, 3, padding=2, dilation=2, groups=2), nn.ReLU(),
        nn.Conv1d(32, 32, 3, stride=2, groups=32), nn.ReLU(),
        nn.AdaptiveAvgPool1d(1), nn.Flatten(), nn.Linear(32, 5))
    x = torch.randn(N_SAMPLES, 4, 64, generator=g).clamp(LOW, HIGH)
    return randomize(model, g), x, []


MODELS = {"mlp_tabular": (mlp_tabular, True, False), "minivgg_cifar10": (minivgg_cifar10, True, True),
          "bn_avgpool_cnn": (bn_avgpool_cnn, False, False), "conv1d_sequence": (conv1d_sequence, True, False)}


def zennit_relevance(model, canonizers, composite_name, x, target, dtype):
    model = copy.deepcopy(model).to(dtype)
    x = x.to(dtype).clone().requires_grad_(True)
    composite = composites(canonizers)[composite_name]
    seed = torch.eye(out_classes(model, x), dtype=dtype)[target]
    with Gradient(model=model, composite=composite) as attributor:
        out, relevance = attributor(x, seed)
    return relevance.detach().numpy()


def reference_data(name, model, canonizers, x, relevance=zennit_relevance):
    """The .npz content: inputs, targets (cycling over the classes), logits, and for every composite Zennit's
    relevance in float32 and float64; prints Zennit's own float32 error per composite."""
    with torch.no_grad():
        logits = model(x)
    target = np.arange(len(x)) % logits.shape[1]
    data = {"x": x.numpy(), "target": target, "logits": logits.numpy()}
    for comp in composites(canonizers):
        f32 = data[f"{comp}/f32"] = relevance(model, canonizers, comp, x, target, torch.float32)
        f64 = data[f"{comp}/f64"] = relevance(model, canonizers, comp, x, target, torch.float64)
        err = np.abs(f32 - f64).max() / np.abs(f64).max()
        print(f"{name:22s} {comp:26s} zennit f32 vs f64: {err:.2e}  "
              f"sum R (f64) {f64.sum(axis=tuple(range(1, f64.ndim)))[:3]}", flush=True)
    return data


def out_classes(model, x):
    with torch.no_grad():
        return model(x[:1]).shape[1]


def export(model, x, path, constant_folding, softmax):
    model = copy.deepcopy(model)
    if softmax:
        model = nn.Sequential(model, nn.Softmax(dim=1)).eval()
    torch.onnx.export(model, (x[:2],), path, input_names=["input"],
                      output_names=["probabilities" if softmax else "logits"],
                      dynamic_axes={"input": {0: "N"}, ("probabilities" if softmax else "logits"): {0: "N"}},
                      opset_version=17, do_constant_folding=constant_folding, dynamo=False)


def main(names):
    os.makedirs(os.path.join(ROOT, "tests", "data"), exist_ok=True)
    for name in names or MODELS:
        build, folding, softmax = MODELS[name]
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1234)
        model, x, canonizers = build(g)
        pristine = copy.deepcopy(model)
        onnx_path = os.path.join(ROOT, "models", f"{name}.onnx")
        export(pristine, x, onnx_path, folding, softmax)
        data = reference_data(name, model, canonizers, x)
        np.savez_compressed(os.path.join(ROOT, "tests", "data", f"{name}.npz"), **data)
        print(f"wrote models/{name}.onnx and tests/data/{name}.npz", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
