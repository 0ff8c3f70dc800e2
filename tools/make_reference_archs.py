"""Parity models for common architectures (ResNet-18, VGG-16-BN, MobileNetV2, a token-embedding text classifier):
seeded weights, ONNX export, and Zennit 0.5.1's relevance for every composite.

Writes models/parity/<name>.onnx and tests/data/parity/<name>.npz (used by tests/test_parity_archs.py). Each .npz
holds the inputs `x`, the `target` classes, the float32 `logits`, and for every composite Zennit's relevance with the
one-hot seed in float32 (`<composite>/f32`) and float64 (`<composite>/f64`, the same model and input cast to double).

Needs PyTorch, torchvision and zennit 0.5.1 (CI does not: the tests read only the committed files):
    python tools/make_reference_archs.py [name ...]

The models are torchvision's own classes, scaled down in width (the full ResNet-18 is 45 MB, VGG-16 500 MB), so the
Zennit canonizers that recognise torchvision's blocks apply unchanged:
- resnet18_quarter: torchvision ResNet with BasicBlock, layers [2, 2, 2, 2], planes 16/32/64/128 (1/4 of
  64/128/256/512), 10 classes, 64x64 input. Zennit: ResNetCanonizer (BN merge + `Sum` module per BasicBlock).
- vgg16_bn_eighth: torchvision VGG built by `make_layers(cfgs['D'], batch_norm=True)` with every width / 8 (8 ... 64),
  the classifier Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear at 4096 / 8 = 512, AdaptiveAvgPool2d((2, 2)) instead
  of (7, 7) for the 64x64 input (the features end at 2x2, so the pool is a kernel-1 AveragePool with the Norm rule,
  as torchvision's (7, 7) pool is on 224x224 inputs), 10 classes. Zennit: VGGCanonizer (BN merge). Exported without
  constant folding, so the BatchNormalization nodes stay in the graph and onnx-lrp folds them (the other models are
  exported with constant folding, which folds BN into the convs).
- mobilenet_v2_quarter: torchvision MobileNetV2(width_mult=0.25) (depthwise convs, ReLU6, residual adds), 10 classes,
  64x64 input. Its forward pools with `nn.functional.adaptive_avg_pool2d`, which Zennit would differentiate (plain
  gradient) while an ONNX GlobalAveragePool is the Norm rule of Zennit's AvgPool modules; the subclass pools with an
  `nn.AdaptiveAvgPool2d` module instead (the exported graph is the same GlobalAveragePool). Zennit gets a canonizer
  that turns each residual `x + conv(x)` of an InvertedResidual into Zennit's `Sum` module, as ResNetCanonizer does
  for BasicBlock, plus the BN merge.
- text_embedding_mlp: nn.Embedding(500, 16) on int64 token ids [N, 16] -> Flatten -> Linear(256, 32) -> ReLU ->
  Linear(32, 4); the ids are the graph input. Zennit cannot differentiate with respect to integer ids; its reference
  is the relevance at the embedding output (the composite applied to the model after the embedding, with the
  embedded tensor as input; checked against a gradient hook on the full model), summed over the embedding dimension:
  the [N, T] per-token relevance. Embedding has no rule in Zennit, so the first Linear is the first layer: Flat in the
  *-flat composites; EpsilonGammaBox's first_map is Convolution only, so the MLP gets no ZBox (Epsilon everywhere).

Weights are seeded: torchvision's initialisation, non-zero biases, and for the conv nets BatchNorm statistics measured
on random inputs and then moved per channel (calibrate()), so that the logits depend on the input.
Zennit 0.5.1's MergeBatchNorm leaves BN's `eps` in place after folding (a factor 1/sqrt(1+eps) per BN); the
canonizers below set it to 0 after the merge, as Zennit 1.0.0 does. Every model is copied before Zennit touches it,
and the ONNX export (opset 17, TorchScript exporter, dynamic batch) is made from a copy Zennit never saw.
"""
import copy
import os
import sys

import numpy as np
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual, MobileNetV2
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.vgg import VGG, cfgs, make_layers
from zennit.attribution import Gradient
from zennit.canonizers import AttributeCanonizer, CompositeCanonizer
from zennit.layer import Sum
from zennit.torchvision import ResNetBasicBlockCanonizer, ResNetBottleneckCanonizer

from make_reference import (HIGH, LOW, ExactMergeBatchNorm, composites, out_classes,  # tools/: shared with it
                            randomize, reference_data)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_DIR = os.path.join(ROOT, "models", "parity")
DATA_DIR = os.path.join(ROOT, "tests", "data", "parity")
N_SAMPLES = 4


# ---------------------------------------------------------------------------------------------------- canonizers
class ExactResNetCanonizer(CompositeCanonizer):
    """Zennit's ResNetCanonizer with the exact BN merge."""

    def __init__(self):
        super().__init__((ExactMergeBatchNorm(), ResNetBottleneckCanonizer(), ResNetBasicBlockCanonizer()))


class ExactVGGCanonizer(ExactMergeBatchNorm):
    """Zennit's VGGCanonizer (= SequentialMergeBatchNorm) with the exact BN merge."""


class InvertedResidualCanonizer(AttributeCanonizer):
    """torchvision InvertedResidual with a residual connection: `x + conv(x)` becomes Zennit's `Sum` module over the
    stacked pair, exactly as ResNetBasicBlockCanonizer rewrites BasicBlock (so the Sum gets the Norm rule)."""

    def __init__(self):
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name, module):
        if isinstance(module, InvertedResidual) and module.use_res_connect:
            return {"forward": cls.forward.__get__(module), "canonizer_sum": Sum()}
        return None

    @staticmethod
    def forward(self, x):
        out = torch.stack([x, self.conv(x)], dim=-1)
        return self.canonizer_sum(out)


class MobileNetV2Canonizer(CompositeCanonizer):
    """Exact BN merge plus the residual Sum of InvertedResidual blocks."""

    def __init__(self):
        super().__init__((ExactMergeBatchNorm(), InvertedResidualCanonizer()))


def calibrate(model, generator, x):
    """For deep nets: BatchNorm statistics measured on a batch of inputs like `x` (a train-mode forward), then moved
    away from them per channel (mean + 0.2 std N(0, 1), variance x U(0.5, 1.5)), with randomize()'s affine
    parameters. With randomize()'s statistics alone the activations of a deep random net drift so far that the
    output hardly depends on the input (MobileNetV2: the same logits to 4 digits for every input)."""
    batch_norms = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for m in batch_norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: the statistics of this one batch
    model.train()
    with torch.no_grad():
        model(torch.randn((16,) + tuple(x.shape[1:]), generator=generator).clamp(LOW, HIGH))
        for m in batch_norms:
            m.momentum = 0.1
            c, std = m.num_features, m.running_var.sqrt()
            m.running_mean.add_(0.2 * std * torch.randn(c, generator=generator))
            m.running_var.mul_(0.5 + torch.rand(c, generator=generator))
    return model.eval()


# -------------------------------------------------------------------------------------------------------- models
class ScaledResNet18(ResNet):
    """torchvision's ResNet (BasicBlock, layers [2, 2, 2, 2]) with planes width, 2w, 4w, 8w instead of 64 ... 512.
    Same modules in the same registration order as torchvision's __init__; forward is torchvision's."""

    def __init__(self, width=16, num_classes=10):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes, self.dilation, self.groups, self.base_width = width, 1, 1, 64
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, width, 2)
        self.layer2 = self._make_layer(BasicBlock, 2 * width, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 4 * width, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 8 * width, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8 * width * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ScaledVGG16BN(VGG):
    """torchvision's VGG with make_layers(cfgs['D'], batch_norm=True), every width divided by `scale`; the classifier
    keeps torchvision's Linear-ReLU-Dropout-Linear-ReLU-Dropout-Linear structure at 4096 / scale, after an
    AdaptiveAvgPool2d to `pool` x `pool` (torchvision: 7 x 7 for 224 x 224 inputs)."""

    def __init__(self, scale=8, pool=2, num_classes=10):
        cfg = [v if v == "M" else v // scale for v in cfgs["D"]]
        super().__init__(make_layers(cfg, batch_norm=True), num_classes=num_classes, init_weights=True)
        hidden, channels = 4096 // scale, cfg[-2]
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool * pool, hidden), nn.ReLU(True), nn.Dropout(p=0.5),
            nn.Linear(hidden, hidden), nn.ReLU(True), nn.Dropout(p=0.5), nn.Linear(hidden, num_classes))


class PooledMobileNetV2(MobileNetV2):
    """torchvision's MobileNetV2 whose head pools with an nn.AdaptiveAvgPool2d module (Zennit: Norm rule) instead of
    the functional adaptive_avg_pool2d (Zennit: plain gradient); the exported graph is the same."""

    def __init__(self, width_mult=0.25, num_classes=10):
        super().__init__(num_classes=num_classes, width_mult=width_mult)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x):
        x = self.features(x)
        x = self.pool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def resnet18_quarter(g):
    model = randomize(ScaledResNet18(width=16, num_classes=10), g)
    x = torch.randn(N_SAMPLES, 3, 64, 64, generator=g).clamp(LOW, HIGH)
    calibrate(model, g, x)
    return model, x, [ExactResNetCanonizer()]


def vgg16_bn_eighth(g):
    model = randomize(ScaledVGG16BN(scale=8, pool=2, num_classes=10), g)
    x = torch.randn(N_SAMPLES, 3, 64, 64, generator=g).clamp(LOW, HIGH)
    calibrate(model, g, x)
    return model, x, [ExactVGGCanonizer()]


def mobilenet_v2_quarter(g):
    model = randomize(PooledMobileNetV2(width_mult=0.25, num_classes=10), g)
    x = torch.randn(N_SAMPLES, 3, 64, 64, generator=g).clamp(LOW, HIGH)
    calibrate(model, g, x)
    return model, x, [MobileNetV2Canonizer()]


VOCAB, TOKENS, DIM = 500, 16, 16


def text_embedding_mlp(g):
    model = nn.Sequential(nn.Embedding(VOCAB, DIM), nn.Flatten(), nn.Linear(TOKENS * DIM, 32), nn.ReLU(),
                          nn.Linear(32, 4))
    x = torch.randint(0, VOCAB, (N_SAMPLES, TOKENS), generator=g)
    return randomize(model, g), x, []


# name: (builder, graph input name, constant folding at export: True folds BN into the convs, False keeps the
# BatchNormalization nodes for onnx-lrp to fold)
MODELS = {"resnet18_quarter": (resnet18_quarter, "input", True), "vgg16_bn_eighth": (vgg16_bn_eighth, "input", False),
          "mobilenet_v2_quarter": (mobilenet_v2_quarter, "input", True),
          "text_embedding_mlp": (text_embedding_mlp, "ids", True)}


# ----------------------------------------------------------------------------------------------------- reference
def zennit_relevance(model, canonizers, composite_name, x, target, dtype):
    model = copy.deepcopy(model).to(dtype)
    composite = composites(canonizers)[composite_name]
    if isinstance(model[0] if isinstance(model, nn.Sequential) else None, nn.Embedding):
        return embedding_relevance(model, composite, x, target, dtype)
    x = x.to(dtype).clone().requires_grad_(True)
    seed = torch.eye(out_classes(model, x), dtype=dtype)[target]
    with Gradient(model=model, composite=composite) as attributor:
        out, relevance = attributor(x, seed)
    return relevance.detach().numpy()


def embedding_relevance(model, composite, ids, target, dtype):
    """Per-token relevance [N, T]: Zennit's relevance at the embedding output, summed over the embedding dim."""
    embedding, head = model[0], model[1:]
    seed = torch.eye(out_classes(model, ids), dtype=dtype)[target]
    with torch.no_grad():
        embedded = embedding(ids)
    embedded = embedded.clone().requires_grad_(True)
    with Gradient(model=head, composite=composite) as attributor:
        out, relevance = attributor(embedded, seed)
    relevance = relevance.detach()

    # cross-check: the composite on the whole model, gradient taken at the embedding output by a forward hook
    captured = {}
    handle = embedding.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    with composite.context(model) as modified:
        out = modified(ids)
        hooked, = torch.autograd.grad(out, captured["out"], grad_outputs=seed)
    handle.remove()
    tolerance = (1e-12 if dtype == torch.float64 else 1e-6) * relevance.abs().max()
    assert (hooked - relevance).abs().max() <= tolerance, \
        "relevance at the embedding output differs between the sub-model and the hooked full model"
    return relevance.sum(-1).numpy()


def export(model, x, path, input_name, constant_folding):
    model = copy.deepcopy(model)
    torch.onnx.export(model, (x[:2],), path, input_names=[input_name], output_names=["logits"],
                      dynamic_axes={input_name: {0: "N"}, "logits": {0: "N"}}, opset_version=17,
                      do_constant_folding=constant_folding, dynamo=False)


def main(names):
    os.makedirs(MODEL_DIR, exist_ok=True)
    os.makedirs(DATA_DIR, exist_ok=True)
    for name in names or MODELS:
        build, input_name, constant_folding = MODELS[name]
        torch.manual_seed(0)
        g = torch.Generator().manual_seed(1234)
        model, x, canonizers = build(g)
        pristine = copy.deepcopy(model)
        onnx_path = os.path.join(MODEL_DIR, f"{name}.onnx")
        export(pristine, x, onnx_path, input_name, constant_folding)
        data = reference_data(name, model, canonizers, x, relevance=zennit_relevance)
        np.savez_compressed(os.path.join(DATA_DIR, f"{name}.npz"), **data)
        size = os.path.getsize(onnx_path) / 2 ** 20
        params = sum(p.numel() for p in model.parameters())
        print(f"wrote models/parity/{name}.onnx ({size:.2f} MiB, {params} parameters) and "
              f"tests/data/parity/{name}.npz", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
