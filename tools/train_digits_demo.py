"""Digits demo: a small CNN on scikit-learn's 8x8 handwritten digits, for the explain workflow.

    /work/venv-torch/bin/python tools/train_digits_demo.py      # torch, scikit-learn (bundled data, no download)

Writes models/demo/digits_cnn.onnx and models/demo/digits_test.npz, then compiles the ONNX file with onnx-lrp
(imported from this checkout) and checks that the relevance of the shipped test digits is finite and non-zero.

Data: sklearn.datasets.load_digits (1797 images, 8x8, values 0..16). Input scaling: x = pixel / 16, so the input is
float32 [N, 1, 8, 8] in [0, 1] and background pixels are exactly 0 ("ink" = x > 0). Split: train_test_split with
test_size=0.25, stratified, random_state=0 (1347 train, 450 test).

Model (torch.manual_seed(0)): Conv2d(1, 16, 3, pad 1) - ReLU - Conv2d(16, 32, 3, pad 1) - ReLU - MaxPool 2 -
Flatten - Linear(512, 64) - ReLU - Linear(64, 10); Adam (lr 3e-3), batch 64, EPOCHS epochs, cross-entropy.
Export: torch.onnx.export(dynamo=False, opset_version=17), input `input` [N, 1, 8, 8], output `logits` [N, 10]
(no Softmax), dynamic batch N. Training runs on one thread with deterministic algorithms: a rerun gives the same
weights.

digits_test.npz: `x` float32 [50, 1, 8, 8] (scaled as trained) and `y` int64 [50]: the first 5 test-split digits of
each class in split order (chosen before looking at the predictions), plus `index`, their row in load_digits.
"""
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_PATH = os.path.join(ROOT, "models", "demo", "digits_cnn.onnx")
SAMPLES_PATH = os.path.join(ROOT, "models", "demo", "digits_test.npz")
SEED, EPOCHS, PER_CLASS = 0, 20, 5


def load():
    """(x_train, y_train, x_test, y_test, test_index): x float32 [N, 1, 8, 8] = pixel / 16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    index = np.arange(len(x))
    x_tr, x_te, y_tr, y_te, _, i_te = train_test_split(x, digits.target, index, test_size=0.25,
                                                      stratify=digits.target, random_state=SEED)
    return x_tr, y_tr.astype(np.int64), x_te, y_te.astype(np.int64), i_te


def main():
    import torch
    from torch import nn

    from demo_training import check_compiles, check_export, export_onnx, fit_classifier

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_tr, y_tr, x_te, y_te, i_te = load()
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
    fit_classifier(model, x_tr, y_tr, epochs=EPOCHS, batch=64, lr=3e-3, seed=SEED)
    with torch.no_grad():
        train_acc = float((model(torch.from_numpy(x_tr)).argmax(1).numpy() == y_tr).mean())
        logits = model(torch.from_numpy(x_te)).numpy()
    test_acc = float((logits.argmax(1) == y_te).mean())
    print(f"digits CNN: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} ({len(y_te)} held-out digits)")

    export_onnx(model, x_te[:2], MODEL_PATH, "input", ["logits"], {
        "demo.tool": "tools/train_digits_demo.py", "demo.seed": str(SEED), "demo.test_accuracy": f"{test_acc:.4f}",
        "demo.input": "float32 [N, 1, 8, 8]: load_digits pixel / 16 (background exactly 0)",
        "demo.classes": "digits 0-9", "demo.samples": "models/demo/digits_test.npz"})

    pick = np.concatenate([np.flatnonzero(y_te == d)[:PER_CLASS] for d in range(10)])
    np.savez_compressed(SAMPLES_PATH, x=x_te[pick], y=y_te[pick], index=i_te[pick].astype(np.int64))
    check_export(MODEL_PATH, {"input": x_te}, logits, y_te, pick, "samples")
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH)} bytes), {SAMPLES_PATH} "
          f"({os.path.getsize(SAMPLES_PATH)} bytes)")
    check_compiles(MODEL_PATH, {"input": x_te[pick]})


if __name__ == "__main__":
    main()
