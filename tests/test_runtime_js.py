"""Compiled graphs run in JavaScript: examples/node (onnxruntime-node) and examples/web (onnxruntime-web in headless
Chromium) give the relevance onnxruntime gives in Python, to 1e-5 of its largest magnitude.

The tests install the examples' npm packages themselves (`npm ci`, once; node_modules is gitignored) and skip only
when node/npm is missing, the npm registry cannot be reached, or no Chromium is found (set CHROMIUM=/path to choose
one; `apt-get install chromium` gives /usr/bin/chromium).
"""
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import onnx_lrp

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
NODE_EXAMPLE = os.path.join(ROOT, "examples", "node")
WEB_EXAMPLE = os.path.join(ROOT, "examples", "web")
TOLERANCE = 1e-5  # max |R_js - R_py| <= TOLERANCE * max |R_py|


_npm_outcome = {}  # folder -> None (installed) or ("skip" | "fail", message), so each folder is tried once


def npm_ci(folder, package):
    """Install `folder`'s package-lock.json into its node_modules unless `package` is already there."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not on PATH: the JavaScript examples need Node.js and npm")
    if folder not in _npm_outcome:
        _npm_outcome[folder] = _install(folder, os.path.join(folder, "node_modules", package, "package.json"))
    if _npm_outcome[folder] is not None:
        kind, message = _npm_outcome[folder]
        (pytest.skip if kind == "skip" else pytest.fail)(message)


def _install(folder, installed):
    if os.path.isfile(installed):
        return None
    with open(os.path.join(tempfile.gettempdir(), "onnx-lrp-npm-ci.lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers install one at a time
        if os.path.isfile(installed):
            return None
        try:  # no retries: an unreachable registry answers in a second, not after npm's minute of back-off
            ping = subprocess.run(["npm", "ping", "--fetch-retries=0", "--fetch-timeout=20000"], cwd=folder,
                                  capture_output=True, text=True, timeout=60, check=False)
            lines = (ping.stdout + ping.stderr).splitlines()
            reason = None if ping.returncode == 0 else " / ".join(
                [line for line in lines if "PING" in line or "Error:" in line][:2] or lines[-2:])
        except subprocess.TimeoutExpired:
            reason = "no answer in 60 s"
        if reason is not None:
            return "skip", f"the npm registry is unreachable, cannot npm ci in {folder} (npm ping: {reason})"
        done = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=folder, capture_output=True, text=True,
                              timeout=600, check=False)
    if done.returncode != 0:
        return "fail", f"npm ci in {folder} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return None


def python_relevance(path, feeds):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def assert_close(js, py, what):
    assert js.shape == py.shape, f"{what}: shape {js.shape} != {py.shape}"
    assert np.isfinite(js).all(), f"{what}: non-finite relevance from JavaScript"
    scale = float(np.abs(py).max())
    assert scale > 0, f"{what}: onnxruntime's relevance is all zero, nothing to compare"
    diff = float(np.abs(js.astype(np.float64) - py).max())
    assert diff <= TOLERANCE * scale, f"{what}: max|diff| {diff:.3g} > {TOLERANCE} * max|R| {scale:.3g}"


def digits_samples():
    with open(os.path.join(WEB_EXAMPLE, "digits.json")) as f:
        samples = json.load(f)
    return np.asarray(samples["data"], np.float32).reshape(samples["shape"])


def node_inputs(name, rng):
    """(model file, composite, first input, other inputs, target) per case."""
    if name == "digits_cnn":
        return "digits_cnn.onnx", "epsilon-plus-flat", digits_samples()[:4], {}, 3
    if name == "minivgg_cifar10":
        x = rng.normal(size=(2, 3, 32, 32)).astype(np.float32)
        return "minivgg_cifar10.onnx", "epsilon-gamma-box", x, {}, -1
    if name == "mlp_tabular":
        return "mlp_tabular.onnx", "epsilon", rng.normal(size=(5, 13)).astype(np.float32), {}, -1
    if name == "bert_sdpa":
        ids = rng.integers(1, 100, size=(3, 12)).astype(np.int64)
        mask = np.ones((3, 12), np.int64)
        mask[1, 9:] = 0  # a padded sequence
        return "transformers/bert_sdpa.onnx", "attnlrp", ids, {"attention_mask": mask}, -1
    raise KeyError(name)


@pytest.mark.parametrize("name", ["digits_cnn", "minivgg_cifar10", "mlp_tabular", "bert_sdpa"])
def test_node_example_matches_python(name, tmp_path):
    npm_ci(NODE_EXAMPLE, "onnxruntime-node")
    model, composite, x, others, target = node_inputs(name, np.random.default_rng(0))
    options = {"low": -3.0, "high": 3.0} if composite == "epsilon-gamma-box" else {}
    compiled = onnx_lrp.compile(os.path.join(MODELS, model), composite, **options)
    path = str(tmp_path / "model.lrp.onnx")
    onnx.save(compiled, path)
    input_name = compiled.graph.input[0].name
    np.save(tmp_path / "x.npy", x)
    command = ["node", os.path.join(NODE_EXAMPLE, "explain.mjs"), path, str(tmp_path / "x.npy"),
               str(tmp_path / "r.npy"), "--target", str(target)]
    for other, value in others.items():
        np.save(tmp_path / f"{other}.npy", value)
        command += ["--feed", f"{other}={tmp_path / f'{other}.npy'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, f"explain.mjs failed on {name}:\n{done.stdout}\n{done.stderr}"
    js = np.load(tmp_path / "r.npy")
    assert js.dtype == np.float32

    py = python_relevance(path, {input_name: x, **others, "target": np.full(len(x), target, np.int64)})
    assert_close(js, py[f"relevance_{input_name}"], f"{name} ({composite}) in onnxruntime-node")


def find_chromium():
    candidates = [os.environ.get("CHROMIUM")] + [shutil.which(n) for n in
                                                 ("chromium", "chromium-browser", "google-chrome", "chrome")]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict] = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm",
                      ".json": "application/json", ".onnx": "application/octet-stream"}

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web_page():
    """examples/web served on a free local port, with its compiled model built by build.py."""
    npm_ci(WEB_EXAMPLE, "onnxruntime-web")
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (CHROMIUM, chromium, chromium-browser, google-chrome): "
                    "apt-get install chromium")
    subprocess.run([sys.executable, os.path.join(WEB_EXAMPLE, "build.py")], check=True, capture_output=True)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=WEB_EXAMPLE))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.html", chromium
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("target", [-1, 3])
def test_web_example_matches_python(web_page, target, tmp_path):
    url, chromium = web_page
    png = tmp_path / "web_example.png"
    done = subprocess.run(["node", "screenshot.mjs", f"{url}?target={target}", str(png)], cwd=WEB_EXAMPLE,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "CHROMIUM": chromium},
                          check=False)
    assert done.returncode == 0, f"screenshot.mjs failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert "error" not in result, f"the page failed: {result['error']}\n{result['logs']}"
    assert result["target"] == target
    js = np.asarray(result["relevance"], np.float32).reshape(result["shape"])

    x = digits_samples()
    py = python_relevance(os.path.join(WEB_EXAMPLE, "digits.lrp.onnx"),
                          {"input": x, "target": np.full(len(x), target, np.int64)})
    assert_close(js, py["relevance_input"], f"digits_cnn in onnxruntime-web (Chromium {result['browser']})")
    logits = np.asarray(result["logits"], np.float32).reshape(py["logits"].shape)
    assert_close(logits, py["logits"], "digits_cnn logits in onnxruntime-web")

    with open(png, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert width >= 600 and height >= 200, f"screenshot is {width}x{height}: the page did not render its grid"
