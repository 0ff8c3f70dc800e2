"""Tabular demo: an MLP on scikit-learn's breast-cancer data, for the explain workflow (one relevance per feature).

    /work/venv-torch/bin/python tools/train_tabular_demo.py      # torch, scikit-learn (bundled data, no download)

Writes models/demo/breast_cancer_mlp.onnx, models/demo/breast_cancer_features.json and
models/demo/breast_cancer_test.npz, then compiles the ONNX file with onnx-lrp (imported from this checkout,
composite `epsilon`) and checks that the relevance of the shipped rows is finite and non-zero.

Data: sklearn.datasets.load_breast_cancer (569 rows, 30 features, classes 0 malignant, 1 benign). Split:
train_test_split(test_size=0.25, stratified, random_state=0): 426 train, 143 test.

Standardization is BAKED INTO THE MODEL: the ONNX input `features` takes the raw feature values (float32 [N, 30], in
the order of breast_cancer_features.json's "features", the dataset's own order), and the graph's first ops are
(features - mean) / std with the training split's mean and (population) std as constants. onnx-lrp treats that
affine before the first linear layer as input preprocessing and passes relevance through it, so the relevance of a
feature is that of its standardized value: a feature at the training mean gets none. The JSON records the same mean
and std for reference (they must not be applied again before calling the model).

Model (torch.manual_seed(0)): Standardize - Linear(30, 32) - ReLU - Linear(32, 16) - ReLU - Linear(16, 2);
Adam (lr 1e-3, weight decay 1e-4), batch 32, EPOCHS epochs, cross-entropy; one thread, deterministic.
Export: torch.onnx.export(dynamo=False, opset_version=17), input `features` [N, 30], output `logits` [N, 2] (no
Softmax), dynamic batch N.

Explain with a dense-layer composite such as `epsilon` (the default epsilon-plus-flat gives the first dense layer the
flat rule, which spreads relevance evenly over all 30 features whatever their values).

breast_cancer_test.npz: `x` float32 [20, 30] (raw features: the first 10 test rows of each class in split order),
`y` int64 [20], `index` (their rows in load_breast_cancer).
"""
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL_PATH = os.path.join(ROOT, "models", "demo", "breast_cancer_mlp.onnx")
FEATURES_PATH = os.path.join(ROOT, "models", "demo", "breast_cancer_features.json")
SAMPLES_PATH = os.path.join(ROOT, "models", "demo", "breast_cancer_test.npz")
SEED, EPOCHS, PER_CLASS = 0, 30, 10


def main():
    import torch
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from torch import nn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from demo_training import check_compiles, check_export, export_onnx, fit_classifier

    torch.manual_seed(SEED)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = load_breast_cancer()
    x = data.data.astype(np.float32)
    y = data.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te, _, i_te = train_test_split(x, y, np.arange(len(x)), test_size=0.25, stratify=y,
                                                      random_state=SEED)
    mean, std = x_tr.mean(0), x_tr.std(0)

    class Standardize(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", torch.from_numpy(mean))
            self.register_buffer("std", torch.from_numpy(std))

        def forward(self, features):
            return (features - self.mean) / self.std

    model = nn.Sequential(Standardize(), nn.Linear(30, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(),
                          nn.Linear(16, 2))
    fit_classifier(model, x_tr, y_tr, epochs=EPOCHS, batch=32, lr=1e-3, seed=SEED, weight_decay=1e-4)
    with torch.no_grad():
        train_acc = float((model(torch.from_numpy(x_tr)).argmax(1).numpy() == y_tr).mean())
        logits = model(torch.from_numpy(x_te)).numpy()
    test_acc = float((logits.argmax(1) == y_te).mean())
    print(f"breast-cancer MLP: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} ({len(y_te)} held-out "
          "rows)")

    export_onnx(model, x_te[:2], MODEL_PATH, "features", ["logits"], {
        "demo.tool": "tools/train_tabular_demo.py", "demo.seed": str(SEED), "demo.test_accuracy": f"{test_acc:.4f}",
        "demo.input": "float32 [N, 30] raw features (standardization is inside the model)",
        "demo.classes": "0 malignant, 1 benign", "demo.features": "models/demo/breast_cancer_features.json",
        "demo.samples": "models/demo/breast_cancer_test.npz"})
    with open(FEATURES_PATH, "w") as f:
        json.dump({"features": list(data.feature_names), "classes": list(data.target_names),
                   "standardization": "inside the model: its input is the raw features; its first ops compute "
                                      "(features - mean) / std with the values below (do not apply them again)",
                   "mean": [float(v) for v in mean], "std": [float(v) for v in std],
                   "test_accuracy": round(test_acc, 4)}, f, indent=1)
        f.write("\n")

    pick = np.concatenate([np.flatnonzero(y_te == k)[:PER_CLASS] for k in range(2)])
    np.savez_compressed(SAMPLES_PATH, x=x_te[pick], y=y_te[pick], index=i_te[pick].astype(np.int64))
    check_export(MODEL_PATH, {"features": x_te}, logits, y_te, pick, "rows")
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH)} bytes), {FEATURES_PATH}, {SAMPLES_PATH}")
    check_compiles(MODEL_PATH, {"features": x_te[pick]}, composite="epsilon")


if __name__ == "__main__":
    main()
