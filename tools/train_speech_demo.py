"""Speech demo: spoken command words synthesized here, a GRU over spectrogram frames and a CNN over the spectrogram.

    apt-get install -y espeak-ng sox                      # the synthesizer and the resampler / channel filters
    /work/venv/bin/python tools/train_speech_demo.py      # torch (the `reference` extra), onnxruntime, matplotlib
    /work/venv/bin/python tools/train_speech_demo.py --cache /tmp/speech_waves.npz   # keep the synthesized waves

Writes models/demo/speech_gru.onnx, models/demo/speech_cnn.onnx, models/demo/speech_test.npz,
models/demo/speech_labels.json, models/demo/speech_wav/*.wav and docs/images/speech_spectrogram_example.png.

Data (synthesize(), about 5400 one-second clips; no download): the 8 command words WORDS, each spoken by every voice
= espeak-ng accent (ACCENTS, 7) + voice variant (VARIANTS, 24), RENDERS times with a speed (110..210 words per
minute) and pitch (15..85) drawn per render; sox (-R -D: repeatable, no dither) resamples espeak's 22.05 kHz to
16 kHz mono and band-limits it with a random highpass (60..300 Hz) and lowpass (3..7.5 kHz), a crude "microphone".
Each render is then augmented AUGMENT times in numpy: leading/trailing silence trimmed, peak gain 0.05..0.9
(log-uniform), placed at a random offset in a 1 s window (16000 samples), white or pink noise at 5..30 dB SNR.
Every random draw comes from numpy.random.default_rng([SEED, ...]) keyed by the clip, so the data are the same on
every run (espeak-ng 1.51 and sox 14.4 gave byte-identical output on repeated calls).
Split by voice: a seeded 20 % of the 168 (accent, variant) voices are held out as the test set; no test voice is
heard in training.

Input: onnx_lrp.audio.log_mel_spectrogram (numpy; 512-sample Hann frames every 20 ms, 40 mel bands 50 Hz..8 kHz,
log(1 + power / 1e-6)), float32 [N, 40, 51] (mel bands low to high, 51 frames of 20 ms). Both models take exactly
this as `spectrogram` [N, 40, 51] and give `logits` [N, 8] (no Softmax); dynamic batch N, fixed 51 frames.

Models (torch.manual_seed(SEED), one thread, deterministic algorithms, Adam, cross-entropy, batch 64):
- speech_gru.onnx: the spectrogram transposed to [N, 51 frames, 40], nn.GRU(40, 64, batch_first=True) (1 layer),
  nn.Linear(64, 8) on the last hidden state; exported as the ONNX GRU op.
- speech_cnn.onnx: the spectrogram as an image [N, 1, 40, 51]; Conv2d(1, 16, 3, pad 1) - ReLU - MaxPool 2 -
  Conv2d(16, 32, 3, pad 1) - ReLU - MaxPool 2 - Conv2d(32, 32, 3, pad 1) - ReLU - MaxPool 2 - Flatten -
  Linear(960, 64) - ReLU - Linear(64, 8).
Export: torch.onnx.export(dynamo=False, opset_version=17); onnxruntime's logits are checked against torch's on the
whole test set (max |diff| < 1e-4).

speech_test.npz: `x` float32 [40, 40, 51] (PER_CLASS test clips of each class, evenly spaced over the test split so
they come from different voices, chosen before looking at predictions), `y` int64 [40], `voice` (espeak voice name),
`speed`, `pitch`, `snr_db`.
speech_wav/: WAV_WORDS, one test clip each (1 s, 16 kHz, 16-bit PCM mono, about 32 KB): of the shipped clips of that
word, the clearest (largest max - median of its spectrogram); read back with onnx_lrp.audio.read_wav, both models
classify them here. The picture shows the same clearest shipped clip of every word.
"""
import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from onnx_lrp import audio  # noqa: E402

DEMO = os.path.join(ROOT, "models", "demo")
GRU_PATH = os.path.join(DEMO, "speech_gru.onnx")
CNN_PATH = os.path.join(DEMO, "speech_cnn.onnx")
SAMPLES_PATH = os.path.join(DEMO, "speech_test.npz")
LABELS_PATH = os.path.join(DEMO, "speech_labels.json")
WAV_DIR = os.path.join(DEMO, "speech_wav")
PICTURE_PATH = os.path.join(ROOT, "docs", "images", "speech_spectrogram_example.png")

SEED = 0
WORDS = ["yes", "no", "up", "down", "left", "right", "stop", "go"]
ACCENTS = ["en-gb", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029"]
VARIANTS = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2", "klatt3",
            "adam", "belinda", "john", "linda", "david", "steph", "robert", "grandma", "shelby"]
RENDERS, AUGMENT, TEST_VOICES = 2, 2, 0.2
PER_CLASS = 5
WAV_WORDS = ["yes", "left", "stop"]
GRU_EPOCHS, CNN_EPOCHS = 20, 15
SR, LENGTH = audio.SAMPLE_RATE, int(audio.SAMPLE_RATE * audio.DURATION)


def voices():
    return [f"{a}+{v}" for a in ACCENTS for v in VARIANTS]


def render(word, voice, speed, pitch, highpass, lowpass):
    """espeak-ng's wave of `word` at 16 kHz (float32), band-limited by sox."""
    speech = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", word],
                            check=True, capture_output=True).stdout
    raw = subprocess.run(["sox", "-R", "-D", "-t", "wav", "-", "-t", "raw", "-e", "floating-point", "-b", "32",
                          "-r", str(SR), "-c", "1", "-", "highpass", str(highpass), "lowpass", str(lowpass)],
                         input=speech, check=True, capture_output=True).stdout
    return np.frombuffer(raw, "<f4").copy()


def render_jobs():
    """One (word index, voice, speed, pitch, highpass, lowpass) per render, drawn from rng([SEED, voice, word,
    render])."""
    jobs = []
    for v, voice in enumerate(voices()):
        for w in range(len(WORDS)):
            for r in range(RENDERS):
                rng = np.random.default_rng([SEED, v, w, r])
                jobs.append((w, voice, int(rng.integers(110, 211)), int(rng.integers(15, 86)),
                             int(rng.integers(60, 301)), int(rng.integers(3000, 7501))))
    return jobs


def trim(wave, threshold=0.02):
    loud = np.flatnonzero(np.abs(wave) > threshold * np.abs(wave).max())
    return wave[loud[0]:loud[-1] + 1]


def pink(rng, n):
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def augment(wave, rng):
    """(1 s clip float32, SNR in dB): trimmed, scaled, shifted, with noise."""
    wave = trim(wave).astype(np.float64)
    if len(wave) > LENGTH:
        wave = audio.fit_duration(wave, SR).astype(np.float64)
    wave *= np.exp(rng.uniform(np.log(0.05), np.log(0.9))) / np.abs(wave).max()
    clip = np.zeros(LENGTH)
    start = int(rng.integers(0, LENGTH - len(wave) + 1))
    clip[start:start + len(wave)] = wave
    noise = rng.standard_normal(LENGTH) if rng.random() < 0.5 else pink(rng, LENGTH)
    snr = float(rng.uniform(5, 30))
    noise *= np.sqrt(np.mean(wave ** 2) / np.mean(noise ** 2) / 10 ** (snr / 10))
    return np.clip(clip + noise, -1, 1).astype(np.float32), snr


def synthesize(cache=None):
    """dict: waves float32 [M, 16000], y, voice index, speed, pitch, snr_db, render index."""
    jobs = render_jobs()
    if cache and os.path.exists(cache):
        with np.load(cache) as f:
            rendered = [f[f"r{i}"] for i in range(len(jobs))]
    else:
        with ThreadPoolExecutor(2) as pool:
            rendered = list(pool.map(lambda j: render(WORDS[j[0]], *j[1:]), jobs))
        if cache:
            np.savez(cache, **{f"r{i}": r for i, r in enumerate(rendered)})
    names = voices()
    out = {k: [] for k in ["waves", "y", "voice", "speed", "pitch", "snr_db"]}
    for i, ((w, voice, speed, pitch, _, _), wave) in enumerate(zip(jobs, rendered)):
        for a in range(AUGMENT):
            clip, snr = augment(wave, np.random.default_rng([SEED, 1, i, a]))
            for k, value in zip(out, [clip, w, names.index(voice), speed, pitch, snr]):
                out[k].append(value)
    return {k: np.array(v) for k, v in out.items()}


def models():
    import torch
    from torch import nn

    class SpeechGRU(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(audio.N_MELS, 64, num_layers=1, batch_first=True)
            self.fc = nn.Linear(64, len(WORDS))

        def forward(self, spectrogram):  # [N, mels, frames]
            _, h = self.gru(spectrogram.transpose(1, 2))
            return self.fc(h[-1])

    class SpeechCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Flatten(), nn.Linear(32 * 5 * 6, 64), nn.ReLU(), nn.Linear(64, len(WORDS)))

        def forward(self, spectrogram):  # [N, mels, frames]
            return self.net(spectrogram.unsqueeze(1))

    torch.manual_seed(SEED)
    gru = SpeechGRU()
    torch.manual_seed(SEED)
    return gru, SpeechCNN()


def check_onnx(path, x, torch_logits):
    import onnxruntime as ort
    got = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"spectrogram": x})[0]
    diff = float(np.abs(got - torch_logits).max())
    assert diff < 1e-4, (path, diff)
    return got, diff


def try_compile(sessions):
    """Compile both models with onnx-lrp from this checkout and report what happens (the recurrent one needs the
    GRU rule of issue 17, so a refusal is printed, not raised)."""
    import onnxruntime as ort
    with np.load(SAMPLES_PATH) as f:
        x = f["x"]
    for name, path in [("GRU", GRU_PATH), ("CNN", CNN_PATH)]:
        try:
            import onnx_lrp
            compiled = onnx_lrp.compile(path)
            s = ort.InferenceSession(compiled.SerializeToString(), providers=["CPUExecutionProvider"])
            out = dict(zip([o.name for o in s.get_outputs()],
                           s.run(None, {"spectrogram": x, "target": np.full(len(x), -1, np.int64)})))
            r = next(v for k, v in out.items() if k.startswith("relevance_"))
            print(f"onnx-lrp compiles speech {name}: relevance {list(r.shape)}, finite {bool(np.isfinite(r).all())}")
        except Exception as e:  # noqa: BLE001 - a report, not a check
            print(f"onnx-lrp does not compile speech {name} (yet): {type(e).__name__}: {str(e).splitlines()[0][:200]}")


def draw(x, y, voice_names, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 4, figsize=(12, 5.2), sharex=True, sharey=True, constrained_layout=True)
    edges = audio.mel_band_edges()
    seconds = audio.HOP / SR
    for c, ax in enumerate(axes.flat):
        i = int(np.flatnonzero(y == c)[0])
        im = ax.imshow(x[i], origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=float(x.max()),
                       extent=[-seconds / 2, (x.shape[2] - 0.5) * seconds, -0.5, x.shape[1] - 0.5])
        ax.set_title(f'"{WORDS[c]}"  ({voice_names[i]})', fontsize=10)
        ticks = [0, 10, 20, 30, 39]
        ax.set_yticks(ticks, [f"{edges[t + 1] / 1000:.1f}" for t in ticks])
    for ax in axes[1]:
        ax.set_xlabel("time (s)")
    for ax in axes[:, 0]:
        ax.set_ylabel("mel band centre (kHz)")
    fig.colorbar(im, ax=axes, label="log(1 + mel power / 1e-6)", shrink=0.8)
    fig.suptitle("Speech demo input: log-mel spectrogram [40 bands, 51 frames of 20 ms], one held-out clip per word")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache", help="npz file for the synthesized waves (read if it exists, else written)")
    args = parser.parse_args()

    import onnx
    import torch

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from demo_training import export_onnx, fit_classifier

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    data = synthesize(args.cache)
    x = np.stack([audio.log_mel_spectrogram(w, SR) for w in data["waves"]])
    y = data["y"].astype(np.int64)
    names = voices()
    test_voices = np.random.default_rng(SEED).permutation(len(names))[:int(round(TEST_VOICES * len(names)))]
    test = np.isin(data["voice"], test_voices)
    x_tr, y_tr, x_te, y_te = x[~test], y[~test], x[test], y[test]
    print(f"data: {len(x)} clips of {len(WORDS)} words, {len(names)} voices ({len(test_voices)} held out); "
          f"train {len(x_tr)}, test {len(x_te)}; spectrogram {list(x.shape[1:])}, values {x.min():.2f}..{x.max():.2f}")

    gru, cnn = models()
    results = {}
    for name, model, epochs, lr, path in [("GRU", gru, GRU_EPOCHS, 3e-3, GRU_PATH),
                                          ("CNN", cnn, CNN_EPOCHS, 2e-3, CNN_PATH)]:
        fit_classifier(model, x_tr, y_tr, epochs=epochs, batch=64, lr=lr, seed=SEED)
        with torch.no_grad():
            train_acc = float((model(torch.from_numpy(x_tr)).argmax(1).numpy() == y_tr).mean())
            logits = model(torch.from_numpy(x_te)).numpy()
        test_acc = float((logits.argmax(1) == y_te).mean())
        export_onnx(model, x_te[:2], path, "spectrogram", ["logits"], {
            "demo.tool": "tools/train_speech_demo.py", "demo.seed": str(SEED), "demo.test_accuracy": f"{test_acc:.4f}",
            "demo.input": "float32 [N, 40, 51]: onnx_lrp.audio.log_mel_spectrogram of a 1 s clip at 16 kHz "
                          "(40 mel bands low to high, 51 frames of 20 ms)",
            "demo.classes": ", ".join(WORDS), "demo.samples": "models/demo/speech_test.npz"})
        _, diff = check_onnx(path, x_te, logits)
        ops = sorted({n.op_type for n in onnx.load(path).graph.node})
        results[name] = (train_acc, test_acc, diff, path)
        print(f"speech {name}: train accuracy {train_acc:.4f}, test accuracy {test_acc:.4f} ({len(y_te)} clips of "
              f"unseen voices); ONNX vs torch max|diff| {diff:.1e}; ops {ops}")

    test_index = np.flatnonzero(test)
    spread = [np.flatnonzero(y_te == c) for c in range(len(WORDS))]
    pick = np.concatenate([i[np.linspace(0, len(i) - 1, PER_CLASS).round().astype(int)] for i in spread])
    rows = test_index[pick]
    voice_names = np.array([names[v] for v in data["voice"][rows]])
    np.savez_compressed(SAMPLES_PATH, x=x_te[pick], y=y_te[pick], voice=voice_names,
                        speed=data["speed"][rows].astype(np.int64), pitch=data["pitch"][rows].astype(np.int64),
                        snr_db=data["snr_db"][rows].astype(np.float32))
    with open(LABELS_PATH, "w") as f:
        json.dump({"classes": WORDS}, f, indent=1)
        f.write("\n")

    import onnxruntime as ort
    sessions = {n: ort.InferenceSession(r[3], providers=["CPUExecutionProvider"]) for n, r in results.items()}
    for n, s in sessions.items():
        acc = (s.run(None, {"spectrogram": x_te[pick]})[0].argmax(1) == y_te[pick]).mean()
        print(f"speech {n}: shipped samples {len(pick)}, accuracy {acc:.4f}")
    os.makedirs(WAV_DIR, exist_ok=True)
    contrast = x_te[pick].max((1, 2)) - np.median(x_te[pick], (1, 2))  # how far the word stands out of its noise
    clearest = {c: int(max(np.flatnonzero(y_te[pick] == c), key=lambda j: contrast[j]))
                for c in range(len(WORDS))}
    for word in WAV_WORDS:
        i = rows[clearest[WORDS.index(word)]]
        wav = os.path.join(WAV_DIR, f"{word}.wav")
        audio.write_wav(wav, data["waves"][i], SR)
        wave, rate = audio.read_wav(wav)
        spec = audio.log_mel_spectrogram(audio.fit_duration(wave, rate), rate)[None]
        said = {n: WORDS[int(s.run(None, {"spectrogram": spec})[0].argmax())] for n, s in sessions.items()}
        print(f"{os.path.relpath(wav, ROOT)} ({os.path.getsize(wav)} bytes, voice {names[data['voice'][i]]}): "
              f"GRU says {said['GRU']!r}, CNN says {said['CNN']!r}")

    try_compile(sessions)
    shown = [clearest[c] for c in range(len(WORDS))]
    draw(x_te[pick][shown], y_te[pick][shown], voice_names[shown], PICTURE_PATH)
    for p in [GRU_PATH, CNN_PATH, SAMPLES_PATH, LABELS_PATH, PICTURE_PATH]:
        print(f"wrote {os.path.relpath(p, ROOT)} ({os.path.getsize(p)} bytes)")
    print("test accuracy: " + ", ".join(f"{n} {r[1]:.4f}" for n, r in results.items()))


if __name__ == "__main__":
    main()
