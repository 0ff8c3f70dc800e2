"""The `onnx-lrp` command line. Every failure is one short message on stderr and a non-zero exit."""
import argparse
import os
import sys

from . import __version__
from .composites import DEFAULT_COMPOSITE, TRANSFORMER_COMPOSITES, ZENNIT_COMPOSITES
from .errors import OnnxLrpError
from .rules import RULES
from .save import check_output_folder, write_model


def _rule_options(c):
    """The options that choose what is explained and with which rules: shared by compile, explain and inspect."""
    c.add_argument("--composite", metavar="NAME",
                   help=f"rule composite: Zennit's {', '.join(ZENNIT_COMPOSITES)} (default {DEFAULT_COMPOSITE}), or "
                        f"LXT's for transformers: {', '.join(TRANSFORMER_COMPOSITES)} (the default for a model with "
                        "attention or LayerNorm/RMSNorm)")
    c.add_argument("--epsilon", type=float, default=1e-6, help="epsilon of the Epsilon rule (default 1e-6)")
    c.add_argument("--gamma", type=float, default=0.25, help="gamma of the Gamma rule (default 0.25)")
    c.add_argument("--alpha", type=float, default=2.0, help="alpha of the alpha-beta rule (default 2)")
    c.add_argument("--beta", type=float, default=1.0, help="beta of the alpha-beta rule (default 1)")
    c.add_argument("--stabilizer", type=float, default=1e-6,
                   help="stabilizer of every other rule and of the Norm of pooling and sums (default 1e-6)")
    c.add_argument("--low", type=float, help="lowest input value, for z-box (epsilon-gamma-box)")
    c.add_argument("--high", type=float, help="highest input value, for z-box (epsilon-gamma-box)")
    c.add_argument("--output", help="the model output to explain (default: the first float output)")
    c.add_argument("--rule", action="append", default=[], metavar="PATTERN=RULE[:key=value,...]",
                   help=f"give matching linear nodes (op type or node-name glob) a rule: {', '.join(RULES)}; "
                        "the first matching --rule wins")
    c.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="fix an input's dims (repeatable); a non-integer entry keeps that dim symbolic, "
                        "e.g. x=N,3,48,192")


def _graph_options(c):
    c.add_argument("--seed", choices=["logit", "one-hot"], default="logit",
                   help="start from one_hot(target) x logit (default) or from one_hot(target)")
    c.add_argument("--opset", type=int, metavar="N",
                   help="write the compiled model at opset N (16 up to the newest onnxruntime loads; default: the "
                        "model's own, at least 16)")
    c.add_argument("--layer-relevance", action="append", default=[], metavar="NODE",
                   help="also output the relevance at this node's output, as relevance_at_NODE (a node name or "
                        "glob; repeatable)")


def _floats(text):
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a comma-separated list of numbers") from None


def _size(text):
    values = text.lower().replace("x", ",").split(",")
    if len(values) != 2 or not all(v.strip().isdigit() for v in values):
        raise argparse.ArgumentTypeError(f"'{text}' is not HEIGHT,WIDTH (e.g. 224,224)")
    return [int(v) for v in values]


def _parser():
    p = argparse.ArgumentParser(prog="onnx-lrp", description="Compile ONNX classifiers into LRP relevance graphs.")
    p.add_argument("--version", action="version", version=f"onnx-lrp {__version__}")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of a failure")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="write MODEL.lrp.onnx: the prediction and its relevance in one graph")
    c.add_argument("model", help="the ONNX classifier")
    c.add_argument("-o", "--out", help="output file (default: MODEL.lrp.onnx beside the input)")
    _rule_options(c)
    _graph_options(c)
    _setting_options(c)
    c.add_argument("--layer-sums", action="store_true",
                   help="also output relevance_layer_sums [N, layers, 2]: per linear layer the relevance summed over "
                        "its input and its output (bias relevance)")

    e = sub.add_parser("explain", help="explain inputs (.npy, .npz, images, folders): relevance, heatmaps, rankings")
    e.add_argument("model", help="the ONNX classifier, or a model compiled by onnx-lrp")
    e.add_argument("inputs", nargs="+", metavar="INPUT", help=".npy/.npz arrays (one sample or a batch; FILE.npz:KEY picks one array), images, "
                   "or folders of them")
    e.add_argument("--out", required=True, metavar="DIR", help="folder for the results")
    e.add_argument("--target", type=int, help="the class to explain (default: each input's top class)")
    e.add_argument("--skip-existing", action="store_true",
                   help="do not explain again the inputs whose results are complete in DIR (its index.jsonl: same "
                        "input file, model and options), e.g. after an interrupted run")
    e.add_argument("--batch-size", type=int, default=32, help="inputs per run (default 32)")
    e.add_argument("--providers", default="auto", choices=["auto", "cpu", "cuda"],
                   help="onnxruntime device: auto (CUDA if it attaches, else CPU), cpu, or cuda (fails without it)")
    _rule_options(e)
    _graph_options(e)
    g = e.add_argument_group("images")
    g.add_argument("--size", type=_size, metavar="H,W", help="resize images to H,W (default: the model's input size)")
    g.add_argument("--mean", type=_floats, metavar="M1,M2,M3", help="per-channel mean, subtracted after --scale")
    g.add_argument("--std", type=_floats, metavar="S1,S2,S3", help="per-channel std, divided by after --mean")
    g.add_argument("--scale", type=float, default=1 / 255, help="pixel value multiplier (default 1/255)")
    g.add_argument("--channel-order", choices=["rgb", "bgr"], default="rgb", help="channel order (default rgb)")
    g.add_argument("--layout", choices=["nchw", "nhwc"], help="input layout (default: from the model's input shape)")
    t = e.add_argument_group("tables and text")
    t.add_argument("--feature-names", metavar="FILE|A,B,...",
                   help="names of a 2-D input's features: a comma list, a text file (one per line) or a JSON list "
                        "(or {\"features\": [...]})")
    t.add_argument("--vocab", metavar="FILE", help="token ids to words: a JSON list, {\"tokens\": [...]}, "
                   "{token: id}, or a text file with one token per line")

    i = sub.add_parser("inspect", help="show the rule of every node on the explained path, and what is unsupported")
    i.add_argument("model", help="the ONNX classifier")
    _rule_options(i)
    i.add_argument("--opset", type=int, metavar="N", help="inspect the model converted to opset N")
    _setting_options(i)
    return p


def _setting_options(c):
    """compile's and inspect's: a setting input pinned, and the relevance of the explained output as an input."""
    c.add_argument("--input-value", action="append", default=[], metavar="NAME=VALUE",
                   help="pin a setting input (e.g. sr=16000; a list as 1,2,3): it becomes a constant, leaves the "
                        "compiled model's inputs, and the Ifs it decides are inlined (repeatable)")
    c.add_argument("--output-relevance", action="store_true",
                   help="take the explained output's relevance as the input output_relevance (its shape) instead "
                        "of target: explain one step, box, region, several classes or a contrast "
                        "(onnx_lrp.selection builds it)")


def parse_input_values(specs):
    """['sr=16000', 'w=1,2'] -> {'sr': 16000, 'w': [1, 2]} (numbers; the input's dtype decides the type)."""
    values = {}
    for spec in specs:
        name, eq, text = spec.partition("=")
        try:
            numbers = [float(v) if any(c in v for c in ".eE") or v.strip().lower() in ("nan", "inf") else int(v)
                       for v in text.split(",")]
        except ValueError:
            numbers = None
        if not eq or not name or not numbers:
            raise OnnxLrpError(f"--input-value '{spec}' is not of the form NAME=NUMBER[,NUMBER...] (e.g. sr=16000)")
        values[name] = numbers[0] if len(numbers) == 1 else numbers
    return values


def _rule_params(args):
    return dict(epsilon=args.epsilon, gamma=args.gamma, alpha=args.alpha, beta=args.beta, low=args.low,
                high=args.high, stabilizer=args.stabilizer)


def parse_input_shapes(specs):
    """['x=N,3,48,192', ...] -> {'x': ['N', 3, 48, 192]}; digits are sizes, other entries symbolic names."""
    shapes = {}
    for spec in specs:
        name, eq, dims = spec.partition("=")
        entries = dims.split(",")
        if not eq or not name or any(not e.strip() for e in entries):
            raise OnnxLrpError(f"--input-shape '{spec}' is not of the form NAME=D1,D2,... (e.g. x=N,3,224,224)")
        shapes[name] = [int(e) if e.strip().isdigit() else e.strip() for e in entries]
    return shapes


def _compile(args):
    from .compiler import compile as compile_model
    src = args.model
    out = args.out or (os.path.splitext(src)[0] + ".lrp.onnx")
    if os.path.exists(src) and os.path.exists(out) and os.path.samefile(src, out):
        raise OnnxLrpError("the output file is the input model; onnx-lrp never overwrites its input. "
                           "Choose another -o.", path=src)
    check_output_folder(out)
    notes = []
    model = compile_model(src, args.composite, **_rule_params(args), seed=args.seed, output=args.output,
                          rules=args.rule, input_shapes=parse_input_shapes(args.input_shape), opset=args.opset,
                          layer_relevance=args.layer_relevance, layer_sums=args.layer_sums,
                          input_values=parse_input_values(args.input_value), output_relevance=args.output_relevance,
                          notes=notes)
    for note in notes:
        print(note, file=sys.stderr)
    written = write_model(model, out)
    composite = next(p.value for p in model.metadata_props if p.key == "onnx_lrp.composite")
    print(f"wrote {' and '.join(written)} ({composite}, seed {args.seed}; outputs: "
          f"{', '.join(o.name for o in model.graph.output)})")
    return 0


def _explain(args):
    from .explain import Explainer, is_compiled, peek_model
    from .explain_files import explain_files
    if args.batch_size < 1:
        raise OnnxLrpError(f"--batch-size must be at least 1 (got {args.batch_size})")
    if args.target is not None and not -2 ** 63 <= args.target < 2 ** 63:
        raise OnnxLrpError(f"--target {args.target} is beyond int64, the type of the model's target input; give a "
                           "class index (or leave --target out: each input's top class)", path=args.model)
    compiled = is_compiled(peek_model(args.model))
    chosen = [flag for flag, value in (("--composite", args.composite), ("--rule", args.rule),
                                        ("--layer-relevance", args.layer_relevance), ("--opset", args.opset),
                                        ("--input-shape", args.input_shape), ("--output", args.output))
              if value not in (None, [])]
    if compiled and chosen:
        raise OnnxLrpError(f"the model is compiled already; {', '.join(chosen)} apply only to a plain model (give "
                           "the original model instead)", path=args.model)
    notes = []
    options = {} if compiled else dict(
        _rule_params(args), seed=args.seed, output=args.output, rules=args.rule,
        input_shapes=parse_input_shapes(args.input_shape), opset=args.opset, layer_relevance=args.layer_relevance,
        notes=notes)
    explainer = Explainer(args.model, None if compiled else args.composite, providers=args.providers,
                          batch_size=args.batch_size, **options)
    for note in notes:
        print(note, file=sys.stderr)
    count = explain_files(args, explainer, args.out)
    print(f"wrote the results of {count} input(s) to {args.out} ({explainer.composite}, on "
          f"{explainer.providers[0]})")
    return 0


def _inspect(args):
    from .inspection import format_inspection, inspect
    notes = []
    result = inspect(args.model, args.composite, rules=args.rule, output=args.output,
                     input_shapes=parse_input_shapes(args.input_shape), opset=args.opset,
                     input_values=parse_input_values(args.input_value), output_relevance=args.output_relevance,
                     **_rule_params(args))
    for note in result.notes + notes:
        print(note, file=sys.stderr)
    print(format_inspection(result))
    return 1 if result.unsupported else 0


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return {"compile": _compile, "explain": _explain, "inspect": _inspect}[args.command](args)
    except OnnxLrpError as exc:
        if args.debug:
            raise
        print(f"onnx-lrp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("onnx-lrp: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug in onnx-lrp itself: still no traceback unless --debug
        if args.debug:
            raise
        if isinstance(exc, OSError):
            print(f"onnx-lrp: error: {exc.strerror or exc}: {exc.filename or ''}. Check the path and its "
                  "permissions.", file=sys.stderr)
            return 2
        print(f"onnx-lrp: internal error: {type(exc).__name__}: {exc}. Run again with --debug and report it.",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
