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
