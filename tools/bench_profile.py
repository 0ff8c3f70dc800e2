"""Where a compiled graph spends its time: onnxruntime's per-op kernel time (enable_profiling), summed by op type.

    python tools/bench_profile.py MODEL.onnx [--composite epsilon-plus-flat] [--batch 1] [--runs 3] [--nodes 10]

MODEL is a plain model (compiled here with --composite, or profiled as it is with --composite inference) or one
compiled already. Compiled graphs run with onnx_lrp.session_options() and the plain model with onnxruntime's
defaults, 2 threads, as tools/bench.py does. Prints the median wall time, the kernel time per run, the op types by
share and the slowest nodes. The input is seeded random [batch, 3, 224, 224] unless the model says otherwise.
A profile slows the run a little; ratios are claimed from tools/bench.py, this says where the time goes.
"""
import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import onnx_lrp  # noqa: E402

THREADS = 2


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("model")
    p.add_argument("--composite", default="epsilon-plus-flat", help="'inference': profile the model as it is")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--nodes", type=int, default=10, help="how many of the slowest nodes to list")
    args = p.parse_args()
    model = onnx.load(args.model, load_external_data=False)
    compiled = onnx_lrp.explain.is_compiled(model)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if not compiled and args.composite != "inference":
            path = os.path.join(tmp, "compiled.onnx")
            onnx_lrp.write_model(onnx_lrp.compile(args.model, args.composite), path)
            compiled = True
        options = onnx_lrp.session_options() if compiled else ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(tmp, "profile")
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        first = session.get_inputs()[0]
        shape = [args.batch] + [d if isinstance(d, int) else 224 for d in first.shape[1:]]
        feeds = {first.name: np.random.default_rng(0).standard_normal(shape).astype(np.float32)}
        if "target" in [i.name for i in session.get_inputs()]:
            feeds["target"] = np.full(args.batch, -1, np.int64)
        session.run(None, feeds)  # warm-up (left out of the sums below)
        seconds = []
        for _ in range(args.runs):
            start = time.perf_counter()
            session.run(None, feeds)
            seconds.append(time.perf_counter() - start)
        with open(session.end_profiling()) as f:
            events = json.load(f)
    runs = sorted((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    after_warm_up = runs[0]["ts"] + runs[0]["dur"]
    by_op, count, by_node = collections.Counter(), collections.Counter(), collections.Counter()
    kind = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= after_warm_up:
            op = e["args"]["op_name"]
            by_op[op] += e["dur"]
            count[op] += 1
            by_node[e["name"][:-len("_kernel_time")]] += e["dur"]
            kind[e["name"][:-len("_kernel_time")]] = op
    per_run = args.runs
    total = sum(by_op.values())
    print(f"{os.path.basename(args.model)}, {args.composite if compiled else 'inference'}, batch {args.batch}: "
          f"median {statistics.median(seconds) * 1e3:.1f} ms per run, kernels {total / per_run / 1e3:.1f} ms")
    for op, us in by_op.most_common():
        print(f"  {op:22s} {100 * us / total:5.1f} %  {us / per_run / 1e3:8.2f} ms  {count[op] // per_run:4d} nodes")
    print(f"slowest {args.nodes} nodes:")
    for name, us in by_node.most_common(args.nodes):
        print(f"  {us / per_run / 1e3:8.2f} ms  {kind[name]:14s} {name}")


if __name__ == "__main__":
    main()
