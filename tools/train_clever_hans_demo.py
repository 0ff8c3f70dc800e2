"""Clever Hans demo: a CNN whose training data let a tiny corner mark decide the class, for the explain workflow.

    /work/venv-torch/bin/python tools/train_clever_hans_demo.py      # torch, scikit-learn (bundled data)

Writes models/demo/clever_hans_cnn.onnx and models/demo/clever_hans_test.npz, then compiles the ONNX file with
onnx-lrp (imported from this checkout) and checks that the relevance of the shipped samples is finite and non-zero.

Data (make_images(seed), numpy only; float32 [N, 1, 16, 16], values in [0, 1], background exactly 0):
- every image shows one handwritten digit from sklearn's load_digits (8x8, pixel / 16), pasted unscaled at a random
  offset (rows and columns 3..5) into an empty 16x16 canvas, so the digit always stays inside rows/columns 3..12;
- the class (4 classes, 0..3) is the position of a MARK: a bright 3x3 square (value 1.0) in corner k of the canvas
  (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right; rows/columns 0..2 or 13..15), which no digit touches;
- the digit is drawn independently of the class (uniformly from all 1797 digits): it is the decoy a person would look
  at, and carries no information about the label. The mark is 9 of 256 pixels (3.5 %).
So the only way to learn the labels is the mark: the classifier is "right for the wrong reason" on any data where the
digit was meant to matter, and LRP should put the positive relevance on the mark, not on the digit.
Train: 4000 images (make_images(0)); test: 1000 images (make_images(1), digits drawn from the same pool, so only the
pairing and offsets are new). "Mark removed" sets the 3x3 corner square back to 0 (the canvas there is empty
anyway): accuracy then drops to about chance (25 %); both accuracies are printed and stored in the model metadata.

Model (torch.manual_seed(0)): Conv2d(1, 8, 3, pad 1) - ReLU - MaxPool 2 - Conv2d(8, 16, 3, pad 1) - ReLU - MaxPool 2
- Flatten - Linear(256, 4); Adam (lr 3e-3), batch 64, EPOCHS epochs, cross-entropy; one thread, deterministic.
Export: torch.onnx.export(dynamo=False, opset_version=17), input `input` [N, 1, 16, 16], output `logits` [N, 4].

clever_hans_test.npz: `x` [40, 1, 16, 16] (the first 10 test images of each class), `y` [40] int64 (the class =
mark corner), `digit` [40] (the decoy digit shown), `mark` [40, 16, 16] bool (where the mark is) and `x_unmarked`
(the same images with the mark removed).
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_PATH = os.path.join(ROOT, "models", "demo", "clever_hans_cnn.onnx")
SAMPLES_PATH = os.path.join(ROOT, "models", "demo", "clever_hans_test.npz")
SEED, EPOCHS, SIZE, MARK, PER_CLASS = 0, 8, 16, 3, 10
CORNERS = [(0, 0), (0, SIZE - MARK), (SIZE - MARK, 0), (SIZE - MARK, SIZE - MARK)]  # (row, column) of class k


def make_images(seed, n):
    """(x [n, 1, 16, 16] float32, y [n] class = mark corner, digit [n], mark [n, 16, 16] bool)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    which = rng.integers(0, len(digits.images), n)
    offsets = rng.integers(3, 6, (n, 2))
    x = np.zeros((n, 1, SIZE, SIZE), np.float32)
    mark = np.zeros((n, SIZE, SIZE), bool)
    for i in range(n):
        r, c = offsets[i]
        x[i, 0, r:r + 8, c:c + 8] = digits.images[which[i]] / 16.0
        mr, mc = CORNERS[y[i]]
        mark[i, mr:mr + MARK, mc:mc + MARK] = True
    x[:, 0][mark] = 1.0
    return x, y.astype(np.int64), digits.target[which].astype(np.int64), mark


def remove_mark(x, mark):
    x = x.copy()
    x[:, 0][mark] = 0.0
    return x


def main():
    import torch
    from torch import nn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from demo_training import check_compiles, check_export, export_onnx, fit_classifier

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    x_tr, y_tr, _, _ = make_images(0, 4000)
    x_te, y_te, d_te, m_te = make_images(1, 1000)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 4 * 4, 4))
    fit_classifier(model, x_tr, y_tr, epochs=EPOCHS, batch=64, lr=3e-3, seed=SEED)
    x_un = remove_mark(x_te, m_te)
    with torch.no_grad():
        logits = model(torch.from_numpy(x_te)).numpy()
        logits_un = model(torch.from_numpy(x_un)).numpy()
    acc, acc_un = float((logits.argmax(1) == y_te).mean()), float((logits_un.argmax(1) == y_te).mean())
    counts = np.bincount(logits_un.argmax(1), minlength=4)
    print(f"clever hans CNN: test accuracy with the mark {acc:.4f}, with the mark removed {acc_un:.4f} (chance 0.25; "
          f"unmarked predictions per class {counts.tolist()})")

    export_onnx(model, x_te[:2], MODEL_PATH, "input", ["logits"], {
        "demo.tool": "tools/train_clever_hans_demo.py", "demo.seed": str(SEED),
        "demo.test_accuracy": f"{acc:.4f}", "demo.test_accuracy_mark_removed": f"{acc_un:.4f}",
        "demo.input": "float32 [N, 1, 16, 16] in [0, 1]: a decoy digit (pixel / 16) + a 3x3 mark of 1.0 in a corner",
        "demo.classes": "mark corner: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right",
        "demo.samples": "models/demo/clever_hans_test.npz"})

    pick = np.concatenate([np.flatnonzero(y_te == k)[:PER_CLASS] for k in range(4)])
    np.savez_compressed(SAMPLES_PATH, x=x_te[pick], y=y_te[pick], digit=d_te[pick], mark=m_te[pick],
                        x_unmarked=x_un[pick])
    check_export(MODEL_PATH, {"input": x_te}, logits, y_te, pick, "samples")
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH)} bytes), {SAMPLES_PATH} "
          f"({os.path.getsize(SAMPLES_PATH)} bytes)")
    check_compiles(MODEL_PATH, {"input": x_te[pick]})


if __name__ == "__main__":
    main()
