"""Train a small CNN on scikit-learn's 8x8 digits, export it to models/digits_cnn.onnx, compile it with onnx-lrp
and render the relevance of a few test digits as docs/heatmaps_digits.png (rows: digits; columns: the input, then
one heatmap per composite; red = evidence for the predicted class, blue = against).

    pip install -e ".[reference]" && python tools/render_heatmaps.py
"""
import os

import numpy as np
import onnxruntime as ort
import torch
from sklearn.datasets import load_digits
from torch import nn

import onnx_lrp
from onnx_lrp.images import gray_to_rgb, save_png, to_rgb, upscale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSITES = ["epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1", "epsilon"]


def train():
    digits = load_digits()
    x = torch.tensor(digits.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(digits.target)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    train_idx, test_idx = np.arange(0, 1500), np.arange(1500, len(x))
    for epoch in range(15):
        perm = torch.randperm(len(train_idx))
        for i in range(0, len(perm), 64):
            idx = train_idx[perm[i:i + 64].numpy()]
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        accuracy = (model(x[test_idx]).argmax(1) == y[test_idx]).float().mean().item()
    print(f"digits CNN test accuracy: {accuracy:.3f}", flush=True)
    return model, x[test_idx].numpy(), y[test_idx].numpy()


def tile_grid(rows, gap=4):
    """rows of equally sized RGB tiles -> one image with white gaps."""
    h, w, _ = rows[0][0].shape
    grid = np.full((len(rows) * (h + gap) - gap, len(rows[0]) * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, tile in enumerate(row):
            grid[i * (h + gap):i * (h + gap) + h, j * (w + gap):j * (w + gap) + w] = tile
    return grid


def main():
    model, x_test, y_test = train()
    path = os.path.join(ROOT, "models", "digits_cnn.onnx")
    torch.onnx.export(model, (torch.tensor(x_test[:1]),), path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}}, opset_version=17, dynamo=False)
    samples = x_test[[list(y_test).index(d) for d in range(10)]]
    columns = [[upscale(gray_to_rgb(img[0]), 8) for img in samples]]
    for composite in COMPOSITES:
        compiled = onnx_lrp.compile(path, composite, low=0.0, high=1.0)
        session = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
        logits, relevance = session.run(None, {"input": samples, "target": np.full(10, -1, np.int64)})
        print(f"{composite:24s} predicted {logits.argmax(1).tolist()}", flush=True)
        columns.append([upscale(to_rgb(r[0]), 8) for r in relevance])
    out = os.path.join(ROOT, "docs", "heatmaps_digits.png")
    save_png(out, tile_grid(list(zip(*columns))))  # one digit per row, one composite per column
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
