"""The speech demo (tools/speech_demo.py, issue 17): the GRU (its GRU op unrolled into cells) and the CNN read the
shipped WAV files right, and their relevance lies on the spoken word, not on the silence around it."""
import importlib.util
import os

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def _demo():
    spec = importlib.util.spec_from_file_location("speech_demo", os.path.join(ROOT, "tools", "speech_demo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_relevance_lies_on_the_spoken_word(tmp_path):
    demo = _demo()
    results = demo.explain_words()
    for word, (spectrogram, per_model) in results.items():
        energy = spectrogram.sum(axis=0)
        speech = energy > 0.25 * energy.max()  # the frames where the word is spoken
        assert 0.1 < speech.mean() < 0.8
        for label, (predicted, relevance) in per_model.items():
            assert predicted == word, (label, word, predicted)
            assert np.all(np.isfinite(relevance))
            positive = np.maximum(relevance, 0).sum(axis=0)
            share = positive[speech].sum() / positive.sum()  # measured 0.69-0.92 (speech frames: 25-37 %)
            assert share > max(0.6, 1.5 * speech.mean()), (label, word, share, speech.mean())
    demo.draw(results, str(tmp_path / "demo_speech.png"))
    assert (tmp_path / "demo_speech.png").stat().st_size > 10_000


def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "onnx_lrp.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_explain_reads_wav_files(tmp_path):
    """`onnx-lrp explain MODEL word.wav`: the spectrogram, its time-frequency heatmap and the relevance per frame."""
    out = tmp_path / "out"
    run = _cli("explain", os.path.join(ROOT, "models", "demo", "speech_gru.onnx"),
               os.path.join(ROOT, "models", "demo", "speech_wav"), "--composite", "epsilon", "--out", out)
    assert run.returncode == 0, run.stderr
    for word, label in (("left", 4), ("stop", 6), ("yes", 0)):
        assert f"{word}: predicted {label}" in run.stdout
        assert np.load(out / f"{word}.relevance.npy").shape == (40, 51)
        for picture in ("heatmap", "input", "frames"):
            assert (out / f"{word}.{picture}.png").stat().st_size > 500
    assert "most relevant frames" in run.stdout


def test_wav_for_a_model_that_reads_no_spectrogram(tmp_path):
    wav = os.path.join(ROOT, "models", "demo", "speech_wav", "yes.wav")
    run = _cli("explain", os.path.join(ROOT, "models", "digits_cnn.onnx"), wav, "--out", tmp_path / "o")
    assert run.returncode == 2 and "log-mel spectrogram" in run.stderr and "Traceback" not in run.stderr
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF not really")
    run = _cli("explain", os.path.join(ROOT, "models", "demo", "speech_gru.onnx"), bad, "--out", tmp_path / "p")
    assert run.returncode == 2 and "bad.wav" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "p").exists() or not any((tmp_path / "p").iterdir())
