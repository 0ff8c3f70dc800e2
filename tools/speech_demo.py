"""The speech demo's picture: spoken command words (WAV files of models/demo/speech_wav/, synthesized by espeak-ng
in tools/train_speech_demo.py) explained by the GRU and the CNN of models/demo/, as a time-frequency heatmap and the
relevance per 20 ms frame.

    python tools/speech_demo.py                  # docs/images/demo_speech.png
    python tools/speech_demo.py --images DIR     # elsewhere (tests/test_readme_commands.py does this)

No torch: the WAV is read and turned into the models' log-mel spectrogram by onnx_lrp.audio (numpy), both models
are compiled by onnx_lrp (the GRU op unrolled into its cells: gates take no relevance, LRP for LSTMs/GRUs after
Arras et al.) and run with onnxruntime. Each row: the spectrogram (40 mel bands by 51 frames), the relevance of the
predicted word for the GRU and for the CNN (red for, blue against), and the relevance summed per frame.
"""
import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from onnx_lrp import audio, compile as compile_model  # noqa: E402

DEMO = os.path.join(ROOT, "models", "demo")
WORDS = ("yes", "left", "stop")
MODELS = {"GRU": "speech_gru.onnx", "CNN": "speech_cnn.onnx"}
COMPOSITE = "epsilon"  # the GRU's cells and the CNN's convs alike: Arras et al.'s rules use epsilon throughout


def explain_words(words=WORDS):
    """{word: (spectrogram [40, 51], {model: (predicted word, relevance [40, 51])})}."""
    import onnxruntime as ort
    classes = json.load(open(os.path.join(DEMO, "speech_labels.json")))["classes"]
    sessions = {}
    for label, file in MODELS.items():
        compiled = compile_model(os.path.join(DEMO, file), COMPOSITE)
        sessions[label] = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
    results = {}
    for word in words:
        wave, rate = audio.read_wav(os.path.join(DEMO, "speech_wav", f"{word}.wav"))
        x = audio.log_mel_spectrogram(audio.fit_duration(wave, rate), rate)[None].astype(np.float32)
        per_model = {}
        for label, session in sessions.items():
            logits, relevance = session.run(None, {"spectrogram": x, "target": np.array([-1], np.int64)})
            per_model[label] = (classes[int(logits[0].argmax())], relevance[0])
        results[word] = (x[0], per_model)
    return results


def draw(results, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    columns = 1 + 2 * len(MODELS)
    fig, axes = plt.subplots(len(results), columns, figsize=(2.6 * columns, 2.3 * len(results)), squeeze=False)
    seconds = np.arange(audio.FRAMES) * audio.HOP / audio.SAMPLE_RATE
    for row, (word, (spectrogram, per_model)) in enumerate(results.items()):
        ax = axes[row, 0]
        ax.imshow(spectrogram, origin="lower", aspect="auto", cmap="magma",
                  extent=[0, seconds[-1], 0, spectrogram.shape[0]])
        ax.set_title(f'"{word}": log-mel spectrogram', fontsize=9)
        ax.set_ylabel("mel band")
        for k, (label, (predicted, relevance)) in enumerate(per_model.items()):
            vmax = np.abs(relevance).max() or 1.0
            ax = axes[row, 1 + 2 * k]
            ax.imshow(relevance, origin="lower", aspect="auto", cmap="bwr", vmin=-vmax, vmax=vmax,
                      extent=[0, seconds[-1], 0, relevance.shape[0]])
            ax.set_title(f"{label} says \"{predicted}\": relevance", fontsize=9)
            ax = axes[row, 2 + 2 * k]
            per_frame = relevance.sum(axis=0)
            ax.bar(seconds, per_frame, width=audio.HOP / audio.SAMPLE_RATE,
                   color=np.where(per_frame >= 0, "#c0392b", "#2e6fba"))
            ax.set_xlim(0, seconds[-1])
            ax.set_title(f"{label}: relevance per frame", fontsize=9)
        for ax in axes[row]:
            ax.tick_params(labelsize=7)
        axes[row, columns // 2].set_xlabel("time (s)", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    from PIL import Image
    Image.open(path).convert("RGB").quantize(colors=128).save(path, optimize=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=os.path.join(ROOT, "docs", "images"), help="where the PNG goes")
    args = parser.parse_args(argv)
    results = explain_words()
    path = os.path.join(args.images, "demo_speech.png")
    draw(results, path)
    for word, (_, per_model) in results.items():
        print(f"{word}.wav: " + ", ".join(f"{label} -> {predicted}" for label, (predicted, _) in per_model.items()))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
