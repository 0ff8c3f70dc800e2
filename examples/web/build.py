"""Compile the repo's digits CNN for the web example: writes examples/web/digits.lrp.onnx.

    python examples/web/build.py [--composite NAME]

digits.json beside it holds one scikit-learn test digit per class (pixels / 16, the model's input scale), so the
z-box bounds of the default composite are the pixel range 0..1.
"""
import argparse
import os

import onnx_lrp

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = os.path.join(HERE, "..", "..", "models", "digits_cnn.onnx")
OUT = os.path.join(HERE, "digits.lrp.onnx")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--composite", default="epsilon-gamma-box")
    args = parser.parse_args(argv)
    bounds = {"low": 0.0, "high": 1.0} if args.composite == "epsilon-gamma-box" else {}
    onnx_lrp.write_model(onnx_lrp.compile(MODEL, args.composite, **bounds), OUT)
    print(f"wrote {os.path.relpath(OUT)} ({args.composite})")


if __name__ == "__main__":
    main()
