"""Export more real classifiers (timm, and torchvision beyond models/torchvision/), bias-free, as weight-free skeletons.

Writes models/real/timm_<name>.onnx and models/real/tv_<name>.onnx. Needs PyTorch, timm and torchvision; the tests
need none of them. In a venv made with
    python -m venv /work/venv-torch && /work/venv-torch/bin/pip install torch==2.14.1 torchvision==0.29.1 timm onnx onnxruntime numpy
(timm 1.0.31 then), run:
    /work/venv-torch/bin/python tools/export_timm.py [NAME ...]

Done as tools/export_torchvision.py does it, with its make_bias_free, export and run, and tools/skeleton.py: built
with pretrained=False / weights=None and num_classes=10 after torch.manual_seed(0), eval mode, bias-free (every
Conv/Linear bias zero, BatchNorm mean 0, beta 0, gamma 1, calibrated running_var; checked: every parameter named
*bias is exactly zero, and there are no parameters outside Conv, Linear and BatchNorm), exported by the TorchScript
exporter (dynamo=False) at opset 17 with a dynamic batch axis, checked against PyTorch in onnxruntime on a batch of
3, skeletonized, recipes calibrated, and the materialized model (tests/zoo.py, seed 0) checked for finite,
non-degenerate logits. The input is [N, 3, 64, 64] for every model (overall stride 32: a 2x2 map before pooling).

Spellings on purpose: mobilenetv3_small_050 is exported at opset 13, which has no HardSwish op, so hard-swish is
written as x * HardSigmoid(x). timm builds GhostNet's SE gate as torch's nn.Hardsigmoid (a HardSigmoid op) whenever
torch has it; ghostnet_100_relu6gate swaps every gate for timm's own pure-Python HardSigmoid (relu6(x + 3) / 6, what
timm uses without native hardsigmoid), exported as Add, Clip, Div.
"""
import argparse
import collections
import os
from unittest import mock

import numpy as np
import onnx
import timm
import torch
import torchvision
from torch import nn

import export_torchvision  # tools/, beside this file
from export_torchvision import make_bias_free, run
from skeleton import calibrate, skeletonize
from zoo import SIZE, WEIGHT_SEED, materialize

OUT = os.path.join(export_torchvision.ROOT, "models", "real")


def swap_hardsigmoid(model):
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Hardsigmoid):
                setattr(parent, child_name, timm.layers.activations.HardSigmoid())


# file stem: (source, model name, family, opset, tweak after building)
MODELS = {
    "timm_regnety_002": ("timm", "regnety_002", "RegNetY", 17, None),
    "timm_ghostnet_050": ("timm", "ghostnet_050", "GhostNet", 17, None),
    "timm_ghostnet_100_relu6gate": ("timm", "ghostnet_100", "GhostNet", 17, swap_hardsigmoid),
    "timm_efficientnet_b0": ("timm", "efficientnet_b0", "EfficientNet", 17, None),
    "timm_resnet50d": ("timm", "resnet50d", "ResNet-D", 17, None),
    "timm_mobilenetv3_small_050": ("timm", "mobilenetv3_small_050", "MobileNetV3", 13, None),
    "timm_mixnet_s": ("timm", "mixnet_s", "MixNet", 17, None),
    "timm_rexnet_100": ("timm", "rexnet_100", "ReXNet", 17, None),
    "tv_mnasnet0_5": ("torchvision", "mnasnet0_5", "MNASNet", 17, None),
    "tv_regnet_y_400mf": ("torchvision", "regnet_y_400mf", "RegNetY", 17, None),
    "tv_mobilenet_v3_large": ("torchvision", "mobilenet_v3_large", "MobileNetV3", 17, None),
    "tv_resnext50_32x4d": ("torchvision", "resnext50_32x4d", "ResNeXt", 17, None),
}


def build(stem):
    source, name, _, _, tweak = MODELS[stem]
    torch.manual_seed(0)
    if source == "timm":
        how = f"timm.create_model({name!r}, pretrained=False, num_classes=10)"
        model = timm.create_model(name, pretrained=False, num_classes=10)
    else:
        how = f"torchvision.models.{name}(weights=None, num_classes=10)"
        model = getattr(torchvision.models, name)(weights=None, num_classes=10)
    if tweak is not None:
        tweak(model)
        how += f", {tweak.__name__}"
    return model.eval(), how + ", torch.manual_seed(0), eval, bias-free (tools/export_timm.py)"


def check_bias_free(model, stem):
    kinds = (nn.Conv2d, nn.Linear) + export_torchvision.BATCHNORMS
    others = {type(m).__name__ for m in model.modules()
              if not isinstance(m, kinds) and any(True for _ in m.parameters(recurse=False))}
    assert not others, f"{stem}: parameters in {others}"
    nonzero = [n for n, p in model.named_parameters() if n.endswith("bias") and p.any()]
    assert not nonzero, f"{stem}: nonzero biases {nonzero[:5]}"


def record(proto, how, notes, source, family):
    opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    entries = {"zoo.source": source, "zoo.family": family, "zoo.exporter": "torchscript", "zoo.opset": str(opset),
               "zoo.model": how, "zoo.input": f"input=[N,3,{SIZE},{SIZE}]", "zoo.torch": torch.__version__,
               "zoo.timm": timm.__version__, "zoo.torchvision": torchvision.__version__,
               "zoo.export_notes": "\n".join(notes)}
    for key, value in entries.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def write_skeleton(model, stem, how, out, source, family, opset):
    """Export at `opset`, check against torch, skeletonize and calibrate, record how it was made, save as
    out/<stem>.onnx and check that the materialized model's logits are finite and not degenerate."""
    with mock.patch.object(export_torchvision, "OPSET", opset):
        proto, notes = export_torchvision.export(model, stem, "torchscript")
    x = np.random.default_rng(2).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)  # batch 3: N is dynamic
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    err = np.abs(run(proto, x) - expected).max() / np.abs(expected).max()
    assert err < 1e-4, f"{stem}: ORT vs torch {err:.2g}"
    full = len(proto.SerializeToString())
    stripped = skeletonize(proto)
    factors = calibrate(proto)
    notes.append(f"ORT vs torch on a batch of 3: {err:.1e} max relative error")
    notes.append(f"recipes rescaled for unit mean-square outputs at {len(factors)} nodes: factors "
                 f"{min(factors):.3g} .. {max(factors):.3g}")
    record(proto, how, notes, source, family)
    path = os.path.join(out, f"{stem}.onnx")
    onnx.save(proto, path)
    size = os.path.getsize(path)
    assert size < 1 << 20, f"{stem}: skeleton of {size} bytes"
    logits = run(materialize(path, WEIGHT_SEED), x).astype(np.float64)
    assert np.all(np.isfinite(logits)) and 1e-3 < np.abs(logits).max() < 1e3, f"{stem}: logits {logits}"
    assert logits.std(axis=1).min() > 1e-3 * logits.std() and logits.std(axis=0).min() > 1e-3 * logits.std(), \
        f"{stem}: degenerate logits {logits}"
    ops = collections.Counter(n.op_type for n in proto.graph.node)
    print(f"{stem}: opset {opset}, ORT vs torch {err:.1e} relative, torch logits std {expected.std():.3g}; "
          f"full {full / 1e6:.1f} MB, skeleton {size / 1e3:.0f} kB ({stripped} initializers stripped); "
          f"materialized logits std {logits.std():.3g}, |max| {np.abs(logits).max():.3g}, "
          f"|min| {np.abs(logits).min():.3g}, class argmax {logits.argmax(axis=1).tolist()}\n"
          f"  ops: {' '.join(f'{k}:{v}' for k, v in sorted(ops.items()))}")
    for note in notes[:-2]:
        print(f"  export warning: {note}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to export (default: all of {', '.join(MODELS)})")
    args = parser.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    for stem in args.names or MODELS:
        source, _, family, opset, _ = MODELS[stem]
        model, how = build(stem)
        model = make_bias_free(model, torch.Generator().manual_seed(1))
        check_bias_free(model, stem)
        write_skeleton(model, stem, how, OUT, source, family, opset)


if __name__ == "__main__":
    main()
