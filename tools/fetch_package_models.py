"""Fetch classifiers that their authors ship inside packages on the Python package index, as a user would get them.

    python tools/fetch_package_models.py

- models/real/ppocr_mobile_v2_cls.onnx: PP-OCR's mobile v2.0 text-direction classifier (0 or 180 degrees; a
  MobileNetV3 exported from PaddlePaddle by paddle2onnx at opset 11, input [-1, 3, ?, ?], used at 3 x 48 x 192),
  shipped in the `rapidocr-onnxruntime` 1.4.4 wheel (Apache-2.0) as
  rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx. Copied byte for byte; the sha256 below is
  checked here and in tests/test_real_models.py.
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = [("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
             "models/real/ppocr_mobile_v2_cls.onnx",
             "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c")]


def main():
    for requirement, member, target, sha256 in PACKAGES:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, requirement],
                           check=True)
            (wheel,) = [os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl")]
            data = zipfile.ZipFile(wheel).read(member)
        digest = hashlib.sha256(data).hexdigest()
        if digest != sha256:
            raise SystemExit(f"{requirement}: {member} has sha256 {digest}, expected {sha256}")
        with open(os.path.join(ROOT, target), "wb") as f:
            f.write(data)
        print(f"{target}: {len(data)} bytes from {requirement} ({member})")


if __name__ == "__main__":
    main()
