"""Export torchvision classifiers, bias-free, to ONNX and store them as weight-free skeletons.

Writes models/torchvision/<name>.onnx for tests/test_torchvision_zoo.py. Needs PyTorch and torchvision (and
onnxscript for the dynamo export); the tests themselves need none of them:
    python tools/export_torchvision.py [NAME ...]

Every model is built with weights=None after torch.manual_seed(0), in eval mode, and made bias-free: every Conv and
Linear bias is zero, every BatchNorm has running_mean 0, beta 0, gamma 1 and a running_var that is one positive
number per BatchNorm, the mean square of its input on a random batch, so that its output has unit mean square
(without it torchvision's init makes activations vanish or explode with depth). One number per BatchNorm keeps a
folded conv weight one i.i.d. distribution. Then torch.onnx.export at opset 17 with a dynamic batch axis: the
TorchScript exporter (dynamo=False) for seven models, the dynamo exporter (dynamo=True) for ResNet-18; the export
is checked against PyTorch in onnxruntime on a batch of 3.

The skeleton: every float initializer with more than 16 elements loses its data (dims and data_type are kept) and
gets a fill recipe in its doc_string, from the exported tensor's own statistics: "fill zeros", "fill const V" or
"fill normal mean=M std=S". tests/zoo.py's materialize() draws the weights back from a seeded numpy generator; zeros
stay exactly zero, so the materialized model is bias-free too. Redrawn weights lose the calibration the BatchNorm
statistics gave the exported ones (a depthwise kernel has only 9 or 25 weights), so the recipes are then rescaled,
node by node, until the materialized model (seed 0, the test's) has unit mean-square outputs at every Conv, Gemm and
BatchNormalization. The graph itself is saved as the exporter wrote it, with how it was made in metadata_props
(zoo.*). The full exports (ResNet-50: 102 MB) are never committed; the skeletons are 19 to 170 kB.

Notes: GoogLeNet is built as torchvision builds it with weights=None (aux_logits=True, transform_input=False); in
eval mode its forward returns only the main logits, so the aux heads are not in the graph. The dynamo exporter has
no opset-17 implementations: it writes opset 18, tries to convert to 17 and fails (onnx's version converter:
"axes_input_to_attribute.h:55: adapt: Assertion `node->hasAttribute(kaxes)` failed"), and keeps opset 18; its
optimizer also drops the all-zero biases and writes the global average pool as ReduceMean.
"""
import argparse
import io
import logging
import os
import sys
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torchvision
from torch import nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "models", "torchvision")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from zoo import SIZE, WEIGHT_SEED, materialize  # noqa: E402
from skeleton import calibrate, skeletonize  # noqa: E402

OPSET = 17
# name: (builder, exporter). The input is [N, 3, SIZE, SIZE] with a dynamic N; SIZE (64) is the smallest size at
# which every one of these nets, all with an overall stride of 32, still ends in a 2x2 (SqueezeNet: 3x3) map before
# its global pooling, so that pooling really averages.
MODELS = {
    "resnet50": (torchvision.models.resnet50, "torchscript"),
    "densenet121": (torchvision.models.densenet121, "torchscript"),
    "mobilenet_v3_small": (torchvision.models.mobilenet_v3_small, "torchscript"),
    "efficientnet_b0": (torchvision.models.efficientnet_b0, "torchscript"),
    "squeezenet1_1": (torchvision.models.squeezenet1_1, "torchscript"),
    "shufflenet_v2_x1_0": (torchvision.models.shufflenet_v2_x1_0, "torchscript"),
    "googlenet": (torchvision.models.googlenet, "torchscript"),
    "resnet18_dynamo": (torchvision.models.resnet18, "dynamo"),
}
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


def build(name):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # GoogLeNet warns that weights=None will stop meaning init_weights=True
        model = MODELS[name][0](weights=None)
    return model.eval()


@torch.no_grad()
def make_bias_free(model, generator):
    """Zero biases; BatchNorm: mean 0, beta 0, gamma 1, running_var one calibrated number per layer."""
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.zero_()
        if isinstance(m, BATCHNORMS):
            m.running_mean.zero_()
            m.bias.zero_()
            m.weight.fill_(1.0)
            m.running_var.fill_(1.0)

    def calibrate(module, inputs):  # runs just before the BatchNorm, in forward order, so later layers see the result
        module.running_var.fill_(float(inputs[0].double().pow(2).mean()))

    hooks = [m.register_forward_pre_hook(calibrate) for m in model.modules() if isinstance(m, BATCHNORMS)]
    model(torch.randn(8, 3, SIZE, SIZE, generator=generator))
    for h in hooks:
        h.remove()
    return model


def export(model, name, exporter):
    x = torch.randn(2, 3, SIZE, SIZE)
    buffer = io.BytesIO()
    logged = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda r: logged.append(f"{r.name}: {r.getMessage().splitlines()[0][:300]}"
                                           + (f" ({r.exc_info[1]})" if r.exc_info else ""))
    logging.getLogger().addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if exporter == "torchscript":
                torch.onnx.export(model, (x,), buffer, opset_version=OPSET, dynamo=False, input_names=["input"],
                                  output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
                proto = onnx.load_from_string(buffer.getvalue())
            else:
                batch = torch.export.Dim("N", min=1, max=1024)
                program = torch.onnx.export(model, (x,), dynamo=True, opset_version=OPSET, input_names=["input"],
                                            output_names=["logits"], dynamic_shapes=({0: batch},),
                                            external_data=False)
                proto = program.model_proto
    finally:
        logging.getLogger().removeHandler(handler)
    notes = sorted({f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}" for w in caught}) + logged
    return proto, notes


def record(model, exporter, name, notes):
    """How the skeleton was made, in metadata_props (the graph itself is left as the exporter wrote it)."""
    try:
        import onnxscript
        onnxscript_version = onnxscript.__version__
    except ImportError:
        onnxscript_version = "not installed"
    entries = {"zoo.model": f"torchvision.models.{MODELS[name][0].__name__}(weights=None), torch.manual_seed(0), "
                            "eval, bias-free (tools/export_torchvision.py)",
               "zoo.exporter": exporter, "zoo.opset_requested": str(OPSET), "zoo.input_size": str(SIZE),
               "zoo.torch": torch.__version__, "zoo.torchvision": torchvision.__version__,
               "zoo.onnxscript": onnxscript_version, "zoo.export_notes": "\n".join(notes)}
    for key, value in entries.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def run(model, x):
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {s.get_inputs()[0].name: x})[0]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"models to export (default: all of {', '.join(MODELS)})")
    args = parser.parse_args(argv)
    os.makedirs(OUT, exist_ok=True)
    for name in args.names or MODELS:
        exporter = MODELS[name][1]
        model = make_bias_free(build(name), torch.Generator().manual_seed(1))
        try:
            proto, notes = export(model, name, exporter)
        except Exception as exc:  # the dynamo exporter: record what happened, the test documents it
            print(f"{name}: {exporter} export FAILED: {type(exc).__name__}: {str(exc)[:2000]}")
            continue
        x = np.random.default_rng(2).normal(size=(3, 3, SIZE, SIZE)).astype(np.float32)  # batch 3: N is dynamic
        with torch.no_grad():
            expected = model(torch.from_numpy(x)).numpy()
        got = run(proto, x)
        err = np.abs(got - expected).max() / np.abs(expected).max()
        full = len(proto.SerializeToString())
        ops = sorted({n.op_type for n in proto.graph.node})
        stripped = skeletonize(proto)
        factors = calibrate(proto)
        notes.append(f"recipes rescaled for unit mean-square outputs at {len(factors)} nodes: factors "
                     f"{min(factors):.3g} .. {max(factors):.3g}")
        opset = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
        if opset != OPSET:
            notes.insert(0, f"opset {OPSET} was asked for; the {exporter} exporter wrote opset {opset}")
        record(proto, exporter, name, notes)
        path = os.path.join(OUT, f"{name}.onnx")
        onnx.save(proto, path)
        size = os.path.getsize(path)
        assert size < 1 << 20, f"{name}: skeleton of {size} bytes"
        logits = run(materialize(path, WEIGHT_SEED), x)
        print(f"{name}: {exporter}, opset {[o.version for o in proto.opset_import if o.domain in ('', 'ai.onnx')]}, "
              f"input {[d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]}, "
              f"ORT vs torch {err:.1e} relative, torch logits std {expected.std():.3g}; full {full / 1e6:.1f} MB, "
              f"skeleton {size / 1e3:.0f} kB ({stripped} initializers stripped); materialized logits std "
              f"{logits.std():.3g}, |max| {np.abs(logits).max():.3g}\n  ops: {' '.join(ops)}")
        for note in notes:
            print(f"  export warning: {note}")


if __name__ == "__main__":
    main()
