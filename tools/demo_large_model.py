"""Show the real 2 GB case: a 1 GiB classifier whose compiled graph (epsilon-plus-flat adds a 1 GiB all-ones
weight for the Flat first layer) passes protobuf's 2 GB limit, is written with external data, and runs.

    python tools/demo_large_model.py [folder]     # needs ~10 GB of memory and ~4 GB of disk
"""
import os
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

import onnx_lrp

FEATURES = 16384  # W1 is FEATURES x FEATURES float32 = 1 GiB


def main(folder):
    rng = np.random.default_rng(0)
    t0 = time.time()
    w1 = (rng.standard_normal((FEATURES, FEATURES), dtype=np.float32) / np.sqrt(FEATURES)).astype(np.float32)
    w2 = (rng.standard_normal((10, FEATURES), dtype=np.float32) / np.sqrt(FEATURES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w1"], ["h"], name="fc1", transB=1),
         helper.make_node("Relu", ["h"], ["a"], name="relu"),
         helper.make_node("Gemm", ["a", "w2"], ["logits"], name="fc2", transB=1)],
        "large", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", FEATURES])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    del w1
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    source = os.path.join(folder, "large.onnx")
    onnx.save(model, source)
    del model, graph
    print(f"wrote {source}: {os.path.getsize(source) / 2**30:.2f} GiB ({time.time() - t0:.0f} s)", flush=True)

    t0 = time.time()
    compiled = onnx_lrp.compile(source, "epsilon-plus-flat")
    weights = sum(len(t.raw_data) for t in compiled.graph.initializer)
    print(f"compiled (and verified) in {time.time() - t0:.0f} s; weights {weights / 2**30:.2f} GiB, over protobuf's "
          f"2 GiB limit", flush=True)
    out = os.path.join(folder, "large.lrp.onnx")
    files = onnx_lrp.write_model(compiled, out)
    del compiled
    for f in files:
        print(f"  {f}: {os.path.getsize(f) / 2**30:.3f} GiB", flush=True)

    t0 = time.time()
    session = ort.InferenceSession(out, providers=["CPUExecutionProvider"])
    x = rng.standard_normal((2, FEATURES), dtype=np.float32)
    logits, relevance = session.run(None, {"x": x, "target": np.array([-1, 3], np.int64)})
    chosen = logits[np.arange(2), [logits[0].argmax(), 3]]
    print(f"onnxruntime loaded and ran it in {time.time() - t0:.0f} s: relevance finite: "
          f"{bool(np.isfinite(relevance).all())}, sums {relevance.sum(1)} vs logits {chosen}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
