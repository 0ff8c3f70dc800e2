"""Benchmark: the cost of a compiled relevance graph against plain inference, on VGG-16 and ResNet-50.

Two steps, in two environments:

    PYTHON_WITH_TORCH tools/bench.py export [--out DIR]
    python tools/bench.py run [--models DIR] [--batches 1 8] [--repeats 5] [--zennit-python PATH]

`export` (needs torch + torchvision) builds torchvision's vgg16 and resnet50 with weights=None after
torch.manual_seed(0) (torchvision's own random init), sets ResNet-50's BatchNorm statistics from one seeded random
batch (torchvision's init leaves mean 0 / var 1, and the activations would grow with depth), and writes
DIR/<name>.onnx (torch.onnx.export, TorchScript exporter, opset 17, dynamic batch; in eval mode that exporter folds
every BatchNorm into its conv, so no BatchNormalization node is left) and DIR/<name>.pt (the state_dict, for
Zennit). DIR defaults to ~/.cache/onnx-lrp-bench; nothing there is ever committed.

`run` (the project's environment: onnx_lrp, onnxruntime) measures each configuration in its own process,
`python tools/bench.py child KIND ...`, which prints one JSON line:
  - compile: onnx_lrp.compile(model, composite) (its checker and onnxruntime verification included), timed, then
    onnx_lrp.write_model to a temporary folder (external data past 2 GB) for the file size;
  - onnx: an onnxruntime CPU session (intra_op_num_threads=2, inter_op_num_threads=1) on the original (default
    options) or a compiled model (onnx_lrp.session_options(), as onnx_lrp.Explainer runs it; target = -1, the top
    class): one warm-up run, then the median of --repeats runs;
  - zennit (optional, in --zennit-python, which needs torch, torchvision and zennit; onnx-lrp never does):
    zennit.attribution.Gradient with EpsilonPlusFlat and the model's canonizer (VGGCanonizer / ResNetCanonizer),
    torch.set_num_threads(2), the logit seed (the compiled graph's default), timed like onnx.
Each child reports its peak RSS (resource.getrusage(RUSAGE_SELF).ru_maxrss). Ratios are against ORT inference of
the same model and batch in the same run. The input is a seeded random 224x224 image normalized with ImageNet's
mean and std; epsilon-gamma-box gets that normalization's bounds of [0, 1] as low/high. The markdown goes to
--doc (default docs/benchmarks.md), whose hand-written part after NOTES_MARKER is kept.
"""
import argparse
import datetime
import json
import os
import platform
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "onnx-lrp-bench")
MODELS = {"vgg16": "VGG-16", "resnet50": "ResNet-50"}
COMPOSITES = ["epsilon-plus-flat", "epsilon", "epsilon-gamma-box"]
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
LOW = min((0 - m) / s for m, s in zip(MEAN, STD))  # -2.118: the normalized image's bounds, for z-box
HIGH = max((1 - m) / s for m, s in zip(MEAN, STD))  # 2.640
THREADS = 2
SIZE, CLASSES = 224, 1000


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def image_batch(batch):
    """The benchmark input: a seeded uniform [0, 1] image, ImageNet-normalized, float32 [batch, 3, 224, 224]."""
    import numpy as np
    x = np.random.default_rng(0).random((batch, 3, SIZE, SIZE), dtype=np.float32)
    return ((x - np.array(MEAN, np.float32)[:, None, None]) / np.array(STD, np.float32)[:, None, None])


def timed(fn, repeats):
    """fn() once as warm-up, then `repeats` times; (median seconds, the last result)."""
    result = fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


# ---------------------------------------------------------------- export (torch + torchvision)

def build_torch_model(name, state_dict=None):
    import torch
    import torchvision
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None)
    if state_dict is not None:
        model.load_state_dict(state_dict)
    return model.eval()


def export(args):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch
    os.makedirs(args.out, exist_ok=True)
    for name in MODELS:
        model = build_torch_model(name)
        with torch.no_grad():
            batchnorms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
            if batchnorms:  # statistics of one random batch (momentum None: the plain average over it)
                for m in batchnorms:
                    m.reset_running_stats()
                    m.momentum = None
                model.train()
                model(torch.from_numpy(np.random.default_rng(1).standard_normal((16, 3, SIZE, SIZE), np.float32)))
                model.eval()
            x = torch.from_numpy(image_batch(2))
            expected = model(x).numpy()
        torch.save(model.state_dict(), os.path.join(args.out, f"{name}.pt"))
        path = os.path.join(args.out, f"{name}.onnx")
        torch.onnx.export(model, (x,), path, dynamo=False, opset_version=17, input_names=["input"],
                          output_names=["logits"], dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}})
        ops = {node.op_type for node in onnx.load(path, load_external_data=False).graph.node}
        got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
        error = float(np.abs(got - expected).max() / np.abs(expected).max())
        print(f"wrote {path} ({os.path.getsize(path) / 1e6:.0f} MB; ops {', '.join(sorted(ops))}; "
              f"onnxruntime vs torch: {error:.1e} of max|logit|; logits std {expected.std():.3g})")


# ---------------------------------------------------------------- children (one measurement each)

def child_compile(model, composite, out_dir):
    import onnx_lrp
    start = time.perf_counter()
    compiled = onnx_lrp.compile(model, composite, low=LOW, high=HIGH)
    seconds = time.perf_counter() - start
    name = os.path.splitext(os.path.basename(model))[0]
    written = onnx_lrp.write_model(compiled, os.path.join(out_dir, f"{name}.{composite}.lrp.onnx"))
    return {"compile_s": seconds, "files": written, "bytes": sum(os.path.getsize(f) for f in written)}


def child_onnx(model, batch, repeats, explainer_options=False):
    """explainer_options: the session options onnx_lrp.Explainer runs a compiled graph with; else onnxruntime's
    defaults (the inference baseline, whose process imports nothing else)."""
    import numpy as np
    import onnxruntime as ort
    if explainer_options:
        import onnx_lrp
        options = onnx_lrp.session_options()
    else:
        options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image_batch(batch)}
    if "target" in [i.name for i in session.get_inputs()]:
        feed["target"] = np.full(batch, -1, np.int64)
    seconds, outputs = timed(lambda: session.run(None, feed), repeats)
    result = {"seconds": seconds, "logit_sum": float(outputs[0].astype(np.float64).sum())}
    if len(outputs) > 1:
        result["relevance_sum"] = float(outputs[-1].astype(np.float64).sum())
    return result


def child_zennit(state_dict_path, batch, repeats):
    import importlib.metadata

    import torch
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import ResNetCanonizer, VGGCanonizer
    torch.set_num_threads(THREADS)
    name = os.path.splitext(os.path.basename(state_dict_path))[0]
    model = build_torch_model(name, torch.load(state_dict_path))
    canonizer = VGGCanonizer() if name.startswith("vgg") else ResNetCanonizer()
    x = torch.from_numpy(image_batch(batch))

    def seed(logits):  # the logit seed: one_hot(top class) * logit
        return torch.zeros_like(logits).scatter_(1, logits.argmax(1, keepdim=True), 1) * logits

    with Gradient(model, EpsilonPlusFlat(canonizers=[canonizer])) as attributor:
        seconds, (logits, relevance) = timed(lambda: attributor(x, seed), repeats)
    return {"seconds": seconds, "logit_sum": float(logits.detach().double().sum()),
            "relevance_sum": float(relevance.double().sum()),
            "versions": {"torch": torch.__version__, "zennit": importlib.metadata.version("zennit")}}


def child(args):
    if args.kind == "compile":
        result = child_compile(args.target, args.composite, args.out_dir)
    elif args.kind == "onnx":
        result = child_onnx(args.target, args.batch, args.repeats, args.explainer_options)
    else:
        result = child_zennit(args.target, args.batch, args.repeats)
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result))


# ---------------------------------------------------------------- run (the parent)

def spawn(python, kind, target, **options):
    """Run one child; its JSON result, or None (and its stderr shown) if it failed."""
    command = [python, os.path.abspath(__file__), "child", kind, target]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])  # True: a flag
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False)
    if proc.returncode != 0:
        print(f"  FAILED ({proc.returncode}): {' '.join(command)}\n{proc.stderr[-3000:]}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(args):
    args.models = os.path.abspath(args.models)
    needed = [f"{name}.{ext}" for name in MODELS for ext in (["onnx", "pt"] if args.zennit_python else ["onnx"])]
    missing = [f for f in needed if not os.path.exists(os.path.join(args.models, f))]
    if missing:
        sys.exit(f"bench: {args.models} lacks {', '.join(missing)}; write them with "
                 f"`PYTHON_WITH_TORCH tools/bench.py export --out {args.models}`")
    started, load_before, info = datetime.datetime.now(), os.getloadavg(), machine()
    results = {"onnx": {}, "compile": {}, "zennit": {}}  # keys: (model, batch, composite or None)
    tmp = tempfile.mkdtemp(prefix="onnx-lrp-bench-")
    try:
        for name in MODELS:
            original = os.path.join(args.models, f"{name}.onnx")
            for batch in args.batches:
                r = results["onnx"][name, batch, None] = spawn(sys.executable, "onnx", original, batch=batch,
                                                               repeats=args.repeats)
                progress(name, batch, "ORT inference", r)
            for composite in COMPOSITES:
                r = results["compile"][name, composite] = spawn(sys.executable, "compile", original,
                                                                composite=composite, out_dir=tmp)
                if r is None:
                    continue
                print(f"{name}: compiled {composite} in {r['compile_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
                      f"{r['bytes'] / 1e6:.0f} MB", flush=True)
                for batch in args.batches:
                    r2 = results["onnx"][name, batch, composite] = spawn(sys.executable, "onnx", r["files"][0],
                                                                         batch=batch, repeats=args.repeats,
                                                                         explainer_options=True)
                    progress(name, batch, composite, r2)
                for f in r["files"]:  # VGG-16's are 0.5-0.7 GB: keep one at a time
                    os.unlink(f)
            for batch in args.batches:  # inference again: the baseline is the faster of the two measurements
                again = spawn(sys.executable, "onnx", original, batch=batch, repeats=args.repeats)
                progress(name, batch, "ORT inference, again", again)
                first = results["onnx"][name, batch, None]
                if first and again:
                    best = dict(min(first, again, key=lambda r: r["seconds"]))
                    best["both"] = (first["seconds"], again["seconds"])
                    best["peak_rss_mb"] = min(first["peak_rss_mb"], again["peak_rss_mb"])  # (the stricter base)
                    results["onnx"][name, batch, None] = best
            if args.zennit_python:
                for batch in args.batches:
                    r = results["zennit"][name, batch] = spawn(args.zennit_python, "zennit",
                                                               os.path.join(args.models, f"{name}.pt"),
                                                               batch=batch, repeats=args.repeats)
                    progress(name, batch, "Zennit EpsilonPlusFlat", r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    markdown = report(args, results, started, load_before, info)
    if os.path.exists(args.doc):  # the hand-written analysis after the marker stays
        with open(args.doc) as f:
            kept = f.read().partition(NOTES_MARKER)
        if kept[1]:
            markdown += "\n" + kept[1] + kept[2]
    with open(args.doc, "w") as f:
        f.write(markdown)
    print(f"wrote {args.doc}")


NOTES_MARKER = "<!-- written by hand from here on; tools/bench.py run keeps it -->"


def progress(name, batch, what, r):
    if r is None:
        return
    extra = f", relevance sum {r['relevance_sum']:.4g}" if "relevance_sum" in r else ""
    print(f"{name} batch {batch}: {what}: {r['seconds'] * 1e3:.1f} ms, peak RSS {r['peak_rss_mb']:.0f} MB, "
          f"logit sum {r['logit_sum']:.4g}{extra}", flush=True)


# ---------------------------------------------------------------- markdown

def ms(r):
    if r is None:
        return "failed"
    both = f" ({r['both'][0] * 1e3:.0f} / {r['both'][1] * 1e3:.0f})" if "both" in r else ""
    return f"{r['seconds'] * 1e3:.0f} ms{both}"


def ratio(a, b):
    return "–" if a is None or b is None else f"{a['seconds'] / b['seconds']:.2f}×"


def rss(r):
    return "failed" if r is None else f"{r['peak_rss_mb']:.0f}"


def checks(onnx, zen):
    """A sentence: the compiled graphs' logits against ORT's, epsilon-plus-flat's relevance sum against Zennit's."""
    errors = []
    for (name, batch, composite), r in onnx.items():
        base = onnx.get((name, batch, None))
        if composite and r and base:
            errors.append(abs(r["logit_sum"] - base["logit_sum"]) / max(abs(base["logit_sum"]), 1e-12))
    parts = [f"Check: the compiled graphs' logit sums equal ORT's to {max(errors):.0e} (relative)"] if errors else []
    for (name, batch), z in zen.items():
        compiled = onnx.get((name, batch, "epsilon-plus-flat"))
        if z and compiled:
            parts.append(f"{MODELS[name]} batch {batch}: epsilon-plus-flat relevance sum {compiled['relevance_sum']:.5g}"
                         f" compiled, {z['relevance_sum']:.5g} Zennit")
    return "; ".join(parts) + "." if parts else ""


def machine():
    """CPU, cores, memory, versions (onnx-lrp with its git commit), taken before the run."""
    import onnxruntime

    import onnx_lrp
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 ** 30
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT,
                         check=False).stdout.strip()
    if git and subprocess.run(["git", "status", "--porcelain", "onnx_lrp"], capture_output=True, text=True,
                              cwd=ROOT, check=False).stdout.strip():
        git += " with uncommitted changes in onnx_lrp/"
    return (f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__} (CPUExecutionProvider), "
            f"onnx-lrp {onnx_lrp.__version__}" + (f" (git {git})" if git else ""))


def report(args, results, started, load_before, info):
    onnx, comp, zen = results["onnx"], results["compile"], results["zennit"]
    versions = next((r["versions"] for r in zen.values() if r), None)
    if versions:
        info += f"; Zennit {versions['zennit']}, torch {versions['torch']}"
    environment = [f"{k}={os.environ[k]}" for k in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS") if k in os.environ]
    command = " ".join(environment + ["python tools/bench.py run"] + [shlex.quote(a) for a in sys.argv[2:]])
    load = " / ".join(f"{a:.1f}" for a in load_before) + " before, " + " / ".join(
        f"{a:.1f}" for a in os.getloadavg()) + " after"
    lines = ["# Benchmarks: compiled relevance graphs vs inference", ""]
    if args.note:
        lines += [f"**{args.note}**", ""]
    lines += [
        ("torchvision VGG-16 and ResNet-50 with seeded random weights (`tools/bench.py export`: weights=None after "
        "`torch.manual_seed(0)`, ResNet-50's BatchNorm statistics from one random batch), exported by "
        "`torch.onnx.export` (TorchScript, opset 17, dynamic batch; BatchNorm folded into the convs by the exporter), "
        f"input {SIZE}×{SIZE}, {CLASSES} classes. onnxruntime CPU with intra_op_num_threads={THREADS}, default "
        "options for inference and `onnx_lrp.session_options()` (no prepacked weight copies, no planned memory "
        "pattern; what `onnx_lrp.Explainer` uses) for the compiled graphs; Zennit with "
        f"`torch.set_num_threads({THREADS})`. Each configuration runs in its own process: one warm-up run, then the "
        f"median of {args.repeats}. Ratios are against ORT inference of the same model and batch in this run, "
        "measured before and after the compiled graphs; the faster of the two (in parentheses) is the baseline, "
        "which puts the ratios on the high side of the run-to-run spread. "
        "The compiled graphs compute the prediction and the relevance of the top class (`target` = -1, logit seed) "
        "in one run; Zennit's time is its `Gradient` attributor (forward + modified backward) with "
        "EpsilonPlusFlat and VGGCanonizer / ResNetCanonizer. epsilon-gamma-box uses the normalized image's bounds "
        f"(low {LOW:.3f}, high {HIGH:.3f})."),
        "",
        "Reproduce (the export needs torch + torchvision, the run only onnx-lrp and onnxruntime; Zennit is optional):",
        "",
        "```",
        "PYTHON_WITH_TORCH tools/bench.py export --out ~/.cache/onnx-lrp-bench",
        ("python tools/bench.py run --models ~/.cache/onnx-lrp-bench --batches 1 8 --repeats 5 "
         "--zennit-python PYTHON_WITH_ZENNIT"),
        "```",
        "",
        f"This run: `{command}`, {started:%Y-%m-%d %H:%M}.  ",
        f"Machine: {info}. Load average (1/5/15 min): {load}.",
        "",
        "## Time",
        "",
        ("| model, batch | ORT inference | compiled graph | ratio | epsilon ratio | epsilon-gamma-box ratio "
         "| Zennit EpsilonPlusFlat | Zennit / compiled |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, title in MODELS.items():
        for b in args.batches:
            base, epf = onnx.get((name, b, None)), onnx.get((name, b, "epsilon-plus-flat"))
            z = zen.get((name, b))
            lines.append(f"| {title}, {b} | {ms(base)} | {ms(epf)} | {ratio(epf, base)} "
                         f"| {ratio(onnx.get((name, b, 'epsilon')), base)} "
                         f"| {ratio(onnx.get((name, b, 'epsilon-gamma-box')), base)} "
                         f"| {ms(z) if args.zennit_python else '–'} | {ratio(z, epf)} |")
    lines += ["", "\"compiled graph\" is epsilon-plus-flat. " + checks(onnx, zen), "",
              "## Memory, compile time, file size", "",
              ("Peak RSS (MB) of each process (session or model load included), compile time and peak RSS of the "
               "compiling process (`onnx_lrp.compile` with its onnx.checker and onnxruntime verification), and the "
               "compiled file's size against the original's."), "",
              "| model | process | " + " | ".join(f"peak RSS, batch {b}" for b in args.batches)
              + " | compile time | compile peak RSS | file size |",
              "|---|---|" + "---|" * len(args.batches) + "---|---|---|"]
    for name, title in MODELS.items():
        size = os.path.getsize(os.path.join(args.models, f"{name}.onnx"))
        row = [rss(onnx.get((name, b, None))) for b in args.batches]
        lines.append(f"| {title} | ORT inference | {' | '.join(row)} | – | – | {size / 1e6:.0f} MB |")
        for composite in COMPOSITES:
            c = comp.get((name, composite))
            row = [rss(onnx.get((name, b, composite))) for b in args.batches]
            compiled = "failed | failed | failed" if c is None else (
                f"{c['compile_s']:.1f} s | {c['peak_rss_mb']:.0f} MB "
                f"| {c['bytes'] / 1e6:.0f} MB ({c['bytes'] / size:.2f}×)")
            lines.append(f"| {title} | {composite} | {' | '.join(row)} | {compiled} |")
        if args.zennit_python:
            row = [rss(zen.get((name, b))) for b in args.batches]
            lines.append(f"| {title} | Zennit EpsilonPlusFlat | {' | '.join(row)} | – | – | – |")
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write vgg16/resnet50 .onnx and .pt (needs torch + torchvision)")
    p.add_argument("--out", default=DEFAULT_DIR)
    p = sub.add_parser("run", help="measure and write the markdown")
    p.add_argument("--models", default=DEFAULT_DIR, help="the folder `export` wrote")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--zennit-python", help="a python with torch, torchvision and zennit (optional)")
    p.add_argument("--doc", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    p.add_argument("--note", help="a line put at the top of the markdown (e.g. that it is a smoke run)")
    p = sub.add_parser("child", help="one measurement in this process; prints one JSON line")
    p.add_argument("kind", choices=["compile", "onnx", "zennit"])
    p.add_argument("target", help="compile, onnx: an .onnx file; zennit: the .pt state_dict")
    p.add_argument("--composite")
    p.add_argument("--out-dir")
    p.add_argument("--batch", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--explainer-options", action="store_true", help="onnx: onnx_lrp.session_options()")
    args = parser.parse_args()
    {"export": export, "run": run, "child": child}[args.command](args)


if __name__ == "__main__":
    main()
