"""Show the real over-2-GB case: a 2 GiB classifier (stored with external data, as exporters write models past
protobuf's 2 GiB limit) compiled by `onnx-lrp compile` in a child process whose peak memory is measured, written
with external data, and run by onnxruntime.

    python tools/demo_large_model.py [folder]     # needs ~12 GB of memory and ~5 GB of disk
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

FEATURES = 16384  # each hidden weight is FEATURES x FEATURES float32 = 1 GiB


def write_source(folder, rng):
    """x -> fc1 -> ReLU -> fc2 -> ReLU -> fc3 (10 classes), 2 GiB of weights in large.onnx.data."""
    scale = np.float32(1 / np.sqrt(FEATURES))
    weights = [numpy_helper.from_array(rng.standard_normal((FEATURES, FEATURES), dtype=np.float32) * scale, name)
               for name in ("w1", "w2")]
    weights.append(numpy_helper.from_array(rng.standard_normal((10, FEATURES), dtype=np.float32) * scale, "w3"))
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["h1"], name="fc1", transB=1),
         helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
         helper.make_node("Gemm", ["a1", "w2"], ["h2"], name="fc2", transB=1),
         helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
         helper.make_node("Gemm", ["a2", "w3"], ["logits"], name="fc3", transB=1)],
        "large", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    source = os.path.join(folder, "large.onnx")
    onnx.save(model, source, save_as_external_data=True, all_tensors_to_one_file=True, location="large.onnx.data")
    return source


def run_measured(argv, log):
    """Run argv as a child (its output appended to `log`); returns (exit status, its own peak RSS in bytes). The
    children start from this lean parent, so that no copy of the weights counts in their peak."""
    with open(log, "a") as out:
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(child.pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024  # Linux: kB


def main(folder):
    log = os.path.join(folder, "log.txt")
    t0 = time.time()
    code, _ = run_measured([sys.executable, os.path.abspath(__file__), "--write", folder], log)
    source = os.path.join(folder, "large.onnx")
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in ("large.onnx", "large.onnx.data"))
    print(f"wrote {source} and its .data: {size / 2**30:.2f} GiB ({time.time() - t0:.0f} s)", flush=True)

    out = os.path.join(folder, "large.lrp.onnx")
    t0 = time.time()
    code, peak = run_measured([sys.executable, "-m", "onnx_lrp.cli", "compile", source, "-o", out,
                               "--composite", "epsilon-plus-flat"], log)
    print(open(log).read().strip(), flush=True)
    if code:
        sys.exit(code)
    print(f"onnx-lrp compile: {time.time() - t0:.0f} s, peak RSS {peak / 2**30:.2f} GiB = "
          f"{peak / size:.2f}x the model's {size / 2**30:.2f} GiB", flush=True)
    for f in sorted(os.listdir(folder)):
        if f.startswith("large.lrp"):
            print(f"  {f}: {os.path.getsize(os.path.join(folder, f)) / 2**30:.3f} GiB", flush=True)

    rng = np.random.default_rng(1)
    t0 = time.time()
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, FEATURES), dtype=np.float32)
    logits, relevance = session.run(None, {"x": x, "target": np.array([-1, 3], np.int64)})
    chosen = logits[np.arange(2), [logits[0].argmax(), 3]]
    print(f"onnxruntime loaded and ran it in {time.time() - t0:.0f} s: relevance finite: "
          f"{bool(np.isfinite(relevance).all())}, sums {relevance.sum(1)} vs logits {chosen}", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--write"]:
        write_source(sys.argv[2], np.random.default_rng(0))
    elif len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as tmp:
            main(tmp)
