"""What the demo training scripts (tools/train_*_demo.py) share: a seeded minibatch training loop for a
classifier, and the check that onnx-lrp (from this checkout) compiles the exported model."""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fit_classifier(model, x, y, *, epochs, batch, lr, seed, weight_decay=0.0):
    """Adam on cross-entropy over shuffled minibatches, the shuffles drawn from torch.Generator(seed): the same
    seed gives the same model, byte for byte. Leaves the model in eval mode."""
    import torch
    from torch import nn

    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(xt), generator=g)
        for i in range(0, len(perm), batch):
            b = perm[i:i + batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[b]), yt[b]).backward()
            opt.step()
    model.eval()
    return model


def export_onnx(model, example, path, input_name, output_names, props):
    """torch.onnx.export (TorchScript exporter, opset 17, batch axis N on the input and every output), then the
    `demo.*` metadata `props` written into the file."""
    import onnx
    import torch

    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.onnx.export(model, (torch.from_numpy(example),), path, input_names=[input_name],
                      output_names=list(output_names), dynamic_axes={n: {0: "N"} for n in [input_name, *output_names]},
                      opset_version=17, dynamo=False)
    proto = onnx.load(path)
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, path)


def check_export(path, feeds, logits, labels, pick, what):
    """Run the exported model in onnxruntime on all of `feeds`; print its max |diff| against torch's `logits` and its
    accuracy on the shipped samples `pick`."""
    import onnxruntime as ort
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    print(f"ONNX vs torch max|diff| {np.abs(got - logits).max():.1e}; shipped {what}: {len(pick)}, accuracy "
          f"{(got[pick].argmax(1) == labels[pick]).mean():.4f}")


def check_compiles(path, feeds, outputs=(None,), composite=None):
    """Compile with onnx-lrp from this checkout and print the relevance's sum |R| per sample (must be finite, > 0)."""
    sys.path.insert(0, ROOT)
    import onnxruntime as ort

    import onnx_lrp

    n = len(next(iter(feeds.values())))
    for output in outputs:
        compiled = onnx_lrp.compile(path, composite, output=output)
        session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        result = dict(zip(names, session.run(None, {**feeds, "target": np.full(n, -1, np.int64)})))
        for name in names:
            if name.startswith("relevance_"):
                r = result[name].reshape(n, -1)
                mass = np.abs(r).sum(1)
                assert np.isfinite(r).all() and (mass > 0).all(), (output, name, mass)
                print(f"compiled ({composite or 'default composite'}, output {output or 'default'}): {name} "
                      f"{list(result[name].shape)} finite, sum|R| per sample {mass.min():.3g}..{mass.max():.3g}")
