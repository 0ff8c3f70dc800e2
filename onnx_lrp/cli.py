"""The `onnx-lrp` command line. Every failure is one short message on stderr and a non-zero exit."""
import argparse
import os
import sys

from . import __version__
from .composites import DEFAULT_COMPOSITE, TRANSFORMER_COMPOSITES, ZENNIT_COMPOSITES
from .errors import OnnxLrpError
from .rules import RULES
from .save import check_output_folder, write_model


def _parser():
    p = argparse.ArgumentParser(prog="onnx-lrp", description="Compile ONNX classifiers into LRP relevance graphs.")
    p.add_argument("--version", action="version", version=f"onnx-lrp {__version__}")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of a failure")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compile", help="write MODEL.lrp.onnx: the prediction and its relevance in one graph")
    c.add_argument("model", help="the ONNX classifier")
    c.add_argument("-o", "--out", help="output file (default: MODEL.lrp.onnx beside the input)")
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
    c.add_argument("--seed", choices=["logit", "one-hot"], default="logit",
                   help="start from one_hot(target) x logit (default) or from one_hot(target)")
    c.add_argument("--output", help="the model output to explain (default: the first float output)")
    c.add_argument("--rule", action="append", default=[], metavar="PATTERN=RULE[:key=value,...]",
                   help=f"give matching linear nodes (op type or node-name glob) a rule: {', '.join(RULES)}; "
                        "the first matching --rule wins")
    c.add_argument("--input-shape", action="append", default=[], metavar="NAME=D1,D2,...",
                   help="fix an input's dims (repeatable); a non-integer entry keeps that dim symbolic, "
                        "e.g. x=N,3,48,192")
    return p


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
    model = compile_model(src, args.composite, epsilon=args.epsilon, gamma=args.gamma, alpha=args.alpha,
                          beta=args.beta, low=args.low, high=args.high, stabilizer=args.stabilizer, seed=args.seed,
                          output=args.output, rules=args.rule, input_shapes=parse_input_shapes(args.input_shape),
                          notes=notes)
    for note in notes:
        print(note, file=sys.stderr)
    written = write_model(model, out)
    composite = next(p.value for p in model.metadata_props if p.key == "onnx_lrp.composite")
    print(f"wrote {' and '.join(written)} ({composite}, seed {args.seed}; outputs: "
          f"{', '.join(o.name for o in model.graph.output)})")
    return 0


def main(argv=None):
    args = _parser().parse_args(argv)
    try:
        return {"compile": _compile}[args.command](args)
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
