"""Export timm transformers and a LayerNorm CNN as weight-free skeletons.

Writes models/transformers/timm/timm_{vit,deit,mobilevit,convnext}_*.onnx.

Needs PyTorch and timm (the venv of tools/export_timm.py); tests/test_timm_transformers.py needs neither:
    /work/venv-torch/bin/python tools/export_timm_transformers.py [STEM ...]

Done as tools/export_timm.py does it, with its functions: timm.create_model(..., pretrained=False, num_classes=10)
after torch.manual_seed(0), eval mode, export_torchvision.make_bias_free (every Conv/Linear bias zero, which timm's
init already makes them; BatchNorm mean 0, beta 0, gamma 1, calibrated running_var), exported by the TorchScript
exporter (dynamo=False) at opset 17 with a dynamic batch axis, checked against PyTorch in onnxruntime on a batch of
3, skeletonized and calibrated (tools/skeleton.py), and the materialized model (tests/zoo.py, seed 0) checked for
finite, non-degenerate logits. Input [N, 3, 64, 64]. LayerNorm weights (1) and biases (0), ViT's class token and
position embedding stay as timm initializes them (their recipes are "fill const 1.0", "fill zeros", "fill normal").

Spellings on purpose: the ViT's attention is torch's scaled_dot_product_attention (timm's fused path; TorchScript
writes it as MatMul and Softmax with sqrt(scale) on q and on k), the DeiT's is timm's explicit
softmax(q * scale @ k^T) @ v (fused_attn=False on every Attention). ConvNeXt-atto: LayerNorm2d (permute,
LayerNormalization, permute), 1x1-conv MLP, layer scale gamma (1e-6 at init, spread per channel by
spread_layer_scale; calibration rescales each to a unit mean-square branch). MobileViT-xxs: unfold/fold as
Reshape/Transpose chains, SiLU, BatchNorm folded into the convs.
"""
import argparse
import os

import timm
import torch

import export_timm  # tools/, beside this file: its write_skeleton()
import export_torchvision
from export_torchvision import make_bias_free
from zoo import SIZE

OUT = os.path.join(export_torchvision.ROOT, "models", "transformers", "timm")


def attention(fused):
    def tweak(model):
        for m in model.modules():
            if hasattr(m, "fused_attn"):
                m.fused_attn = fused
    tweak.__name__ = f"fused_attn={fused}"
    return tweak


@torch.no_grad()
def spread_layer_scale(model):
    """Every layer scale gamma times U(0.5, 1.5) per channel: timm initializes all of them to the same 1e-6, which the
    exporter then stores once per width (the other blocks read it through Identity nodes), and a constant recipe
    would make each layer scale one number; trained ones differ per channel and per block."""
    generator = torch.Generator().manual_seed(3)
    for name, p in model.named_parameters():
        if name.endswith("gamma"):
            p.mul_(torch.empty(p.shape).uniform_(0.5, 1.5, generator=generator))


# file stem: (model name, family, create_model kwargs, tweak after building)
MODELS = {
    "timm_vit_tiny_p8_d2": ("vit_tiny_patch16_224", "ViT", dict(img_size=SIZE, patch_size=8, depth=2),
                            attention(True)),
    "timm_deit_tiny_p16_d2": ("deit_tiny_patch16_224", "DeiT", dict(img_size=SIZE, patch_size=16, depth=2),
                              attention(False)),
    "timm_mobilevit_xxs": ("mobilevit_xxs", "MobileViT", {}, None),
    "timm_convnext_atto": ("convnext_atto", "ConvNeXt", {}, spread_layer_scale),
}


def build(stem):
    name, _, kwargs, tweak = MODELS[stem]
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    how = f"timm.create_model({name!r}, pretrained=False, num_classes=10{args})"
    if tweak is not None:
        tweak(model)
        how += f", {tweak.__name__}"
    return model.eval(), how + ", torch.manual_seed(0), eval, biases zero (tools/export_timm_transformers.py)"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to export (default: all of {', '.join(MODELS)})")
    args = parser.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    for stem in args.names or MODELS:
        model, how = build(stem)
        model = make_bias_free(model, torch.Generator().manual_seed(1))
        export_timm.write_skeleton(model, stem, how, OUT, "timm", MODELS[stem][1], export_torchvision.OPSET)


if __name__ == "__main__":
    main()
