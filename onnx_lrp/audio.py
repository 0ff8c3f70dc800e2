"""Speech input for the demo models: read a WAV file and turn it into the log-mel spectrogram they were trained on.

numpy and the standard library only (no librosa, no torchaudio). The models in models/demo/speech_*.onnx
(tools/train_speech_demo.py) take `spectrogram` float32 [N, MELS, FRAMES] = log_mel_spectrogram of a 1 s clip at
16 kHz: 40 mel bands (rows, low to high frequency) by 51 frames of 20 ms (columns, in time order).

    wave, rate = read_wav("word.wav")               # float32 [-1, 1], any length, 16-bit PCM mono
    wave = fit_duration(wave, rate)                  # 1 s around its loudest part (pads short clips with silence)
    x = log_mel_spectrogram(wave, rate)[None]        # [1, 40, 51]

The spectrogram: frames of N_FFT = 512 samples (32 ms) every HOP = 320 samples (20 ms), the signal padded with
N_FFT // 2 zeros on each side (frame t is centred on sample t * HOP, so a clip of L samples has 1 + L // HOP
frames); Hann window; power |X|^2 / sum(window)^2 (a full-scale sine of amplitude A gives about A^2 / 4 in its
bin); triangular mel filters (HTK mel scale, 2595 log10(1 + f / 700)) between FMIN = 50 Hz and FMAX = 8 kHz, each
peaking at 1; then log(1 + mel_power / FLOOR) with FLOOR = 1e-6, so silence is 0 and every value is >= 0.
"""
import wave as _wave

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 320
N_MELS = 40
FMIN = 50.0
FMAX = 8000.0
FLOOR = 1e-6
DURATION = 1.0  # seconds: the demo models' clip length
FRAMES = 1 + int(SAMPLE_RATE * DURATION) // HOP  # 51


def read_wav(path):
    """(wave float32 [samples] in [-1, 1), sample rate) of a 16-bit PCM mono WAV file. Anything else (stereo,
    8/24/32-bit, compressed, not a WAV file, no samples) raises ValueError saying what it is and how to convert it."""
    fix = "convert it, e.g. `sox IN.wav -r 16000 -c 1 -b 16 -e signed-integer OUT.wav`"
    try:
        with _wave.open(str(path), "rb") as f:
            channels, width, rate, count = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            frames = f.readframes(count)
    except (_wave.Error, EOFError) as e:
        raise ValueError(f"{path}: not a PCM WAV file this reader understands ({e}); {fix}") from None
    if channels != 1:
        raise ValueError(f"{path}: has {channels} channels, expected mono (1); {fix}")
    if width != 2:
        raise ValueError(f"{path}: has {8 * width}-bit samples, expected 16-bit PCM; {fix}")
    data = np.frombuffer(frames, dtype="<i2")
    if data.size == 0:
        raise ValueError(f"{path}: has no samples")
    return (data.astype(np.float32) / 32768.0), rate


def write_wav(path, wave, sample_rate=SAMPLE_RATE):
    """Write float samples in [-1, 1] (clipped) as a 16-bit PCM mono WAV file."""
    data = np.clip(np.round(np.asarray(wave, np.float64) * 32767.0), -32768, 32767).astype("<i2")
    with _wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(int(sample_rate))
        f.writeframes(data.tobytes())


def resample(wave, from_rate, to_rate=SAMPLE_RATE):
    """Band-limited resampling of a whole clip by zero-padding or truncating its spectrum (like
    scipy.signal.resample)."""
    wave = np.asarray(wave, np.float64)
    if from_rate == to_rate:
        return wave
    n = int(round(len(wave) * to_rate / from_rate))
    spectrum = np.fft.rfft(wave)
    out = np.zeros(n // 2 + 1, np.complex128)
    keep = min(len(out), len(spectrum))
    out[:keep] = spectrum[:keep]
    return np.fft.irfft(out, n) * (n / len(wave))


def fit_duration(wave, sample_rate=SAMPLE_RATE, seconds=DURATION):
    """The clip cut or padded to `seconds`: a longer clip keeps the window with the most energy, a shorter one is
    centred between zeros."""
    wave = np.asarray(wave, np.float32)
    n = int(round(seconds * sample_rate))
    if len(wave) >= n:
        energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
        start = int(np.argmax(energy[n:] - energy[:-n]))
        return wave[start:start + n]
    left = (n - len(wave)) // 2
    return np.pad(wave, (left, n - len(wave) - left))


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_band_edges(n_mels=N_MELS, fmin=FMIN, fmax=FMAX):
    """n_mels + 2 frequencies in Hz: band k rises from edges[k], peaks at edges[k + 1] (its centre) and falls to
    edges[k + 2]."""
    return mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))


def mel_filterbank(sample_rate=SAMPLE_RATE, n_fft=N_FFT, n_mels=N_MELS, fmin=FMIN, fmax=FMAX):
    """float64 [n_mels, n_fft // 2 + 1]: triangular filters on the FFT bin frequencies, each peaking at 1 (a filter
    narrower than the bin spacing still gets its nearest bin)."""
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    edges = mel_band_edges(n_mels, fmin, min(fmax, sample_rate / 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    bank = np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))
    for k in np.flatnonzero(bank.max(1) == 0):
        bank[k, np.argmin(np.abs(freqs - mid[k, 0]))] = 1.0
    return bank


def power_spectrogram(wave, n_fft=N_FFT, hop=HOP):
    """float64 [n_fft // 2 + 1, 1 + len(wave) // hop]: |STFT|^2 / sum(window)^2 with a periodic Hann window, frames
    centred on samples 0, hop, 2 hop, ... (the signal padded with n_fft // 2 zeros on both sides)."""
    wave = np.asarray(wave, np.float64)
    if wave.ndim != 1:
        raise ValueError(f"expected a 1-D wave (mono samples), got shape {list(wave.shape)}")
    frames = 1 + len(wave) // hop
    padded = np.pad(wave, (n_fft // 2, n_fft // 2))
    index = np.arange(frames)[:, None] * hop + np.arange(n_fft)[None, :]
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    spectrum = np.fft.rfft(padded[index] * window, axis=1)
    return (np.abs(spectrum) ** 2 / window.sum() ** 2).T


def log_mel_spectrogram(wave, sample_rate=SAMPLE_RATE):
    """float32 [N_MELS, 1 + len(wave) // HOP] (at 16 kHz; other rates are resampled to 16 kHz first):
    log(1 + mel power / FLOOR), rows low to high frequency, columns in time order. A 1 s clip at 16 kHz gives the
    demo models' [40, 51]."""
    if sample_rate != SAMPLE_RATE:
        wave = resample(wave, sample_rate, SAMPLE_RATE)
    mel = mel_filterbank() @ power_spectrogram(wave)
    return np.log1p(mel / FLOOR).astype(np.float32)
