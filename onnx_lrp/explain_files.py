"""`onnx-lrp explain`: inputs from files (arrays, images, folders of them) to relevance files, heatmaps, feature
rankings, coloured tokens and a per-layer bias-relevance report.

Every input file is planned from its header first (the arrays an .npz holds, their shapes and dtypes; an image's
size), so a file that cannot work fails before anything runs and only the arrays used are read; the per-sample
files go through sample_writer (names, collisions, all-or-nothing completion, resuming)."""
import html
import json
import math
import os
import sys
import zipfile
from typing import NamedTuple, Optional

import numpy as np

from .errors import OnnxLrpError
from .images import (IMAGE_SUFFIXES, check_image, fit_scale, gray_to_rgb, load_image, overlay, relevance_map,
                     save_png, side_by_side, to_rgb, upscale)
from .sample_writer import SampleWriter, source_identity

ARRAY_SUFFIXES = (".npy", ".npz")
AUDIO_SUFFIXES = (".wav",)  # read as onnx_lrp.audio's log-mel spectrogram of 1 s (the speech demo's models)
NUMERIC_KINDS = "biuf"  # bool, integers, floats: what a model input is cast from


def collect_files(paths):
    """The input files in order: files as given, folders expanded to their array and image files (sorted)."""
    files = []
    for path in paths:
        if split_key(path)[1] is not None and os.path.isfile(split_key(path)[0]):
            files.append(path)
        elif os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(ARRAY_SUFFIXES + IMAGE_SUFFIXES + AUDIO_SUFFIXES)
                           and os.path.isfile(os.path.join(path, f)))
            if not found:
                raise OnnxLrpError(f"folder holds no .npy, .npz or image files ({', '.join(IMAGE_SUFFIXES)})",
                                   path=path)
            files += found
        elif not os.path.isfile(path):
            raise OnnxLrpError("input not found. Check the path.", path=path)
        elif not path.lower().endswith(ARRAY_SUFFIXES + IMAGE_SUFFIXES + AUDIO_SUFFIXES):
            raise OnnxLrpError(f"unknown input type: give .npy, .npz, .wav or an image ({', '.join(IMAGE_SUFFIXES)})",
                               path=path)
        else:
            files.append(path)
    return files


def split_key(path):
    """'data.npz:images' -> ('data.npz', 'images'): one array of an .npz, chosen by name."""
    base, sep, key = path.rpartition(":")
    if sep and base.lower().endswith(".npz") and key and os.sep not in key:
        return base, key
    return path, None


class Array(NamedTuple):
    """An array of a file, known from its header: the .npz member (None for an .npy), shape and dtype."""
    key: Optional[str]
    shape: tuple
    dtype: np.dtype


class Source(NamedTuple):
    """One input file, planned from its header."""
    path: str  # the file (FILE.npz:KEY without :KEY)
    label: str  # as given (with :KEY), for messages and the index
    kind: str  # "image", "audio", "npy" or "npz"
    arrays: dict  # input name -> Array (an image: {})
    batched: dict  # input name -> whether its array holds a batch
    count: Optional[int]  # samples in the batch; None: one sample without the batch dim
    stem: str
    identity: list  # sample_writer.source_identity: what resuming compares

    def positions(self):
        return [None] if self.count is None else list(range(self.count))

    def name(self, k):
        return self.stem if k is None or self.count == 1 else f"{self.stem}_{k}"

    def where(self, k):
        return self.label if k is None or self.count == 1 else f"{self.label}[{k}]"

    def key(self, k):
        """What identifies sample k of this file for resuming."""
        return {"file": self.identity, "arrays": {n: a.key for n, a in self.arrays.items()}, "sample": k}


def _dims_text(dims):
    return "[" + ", ".join(str(d) if isinstance(d, int) else str(d or "?") for d in dims) + "]"


def _read_header(f):
    """(shape, dtype) of the .npy at f's position, leaving f after the header; reads a few hundred bytes."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise ValueError(f".npy format version {version[0]}.{version[1]} (structured arrays) is not read")
    return tuple(int(d) for d in shape), dtype


def _nbytes(shape, dtype):
    return math.prod(shape) * dtype.itemsize


def _npy_arrays(path):
    try:
        with open(path, "rb") as f:
            shape, dtype = _read_header(f)
            offset = f.tell()
    except OnnxLrpError:
        raise
    except Exception as exc:
        raise OnnxLrpError(f"cannot be read as a numpy file ({type(exc).__name__}: {exc})", path=path) from None
    have, need = os.path.getsize(path) - offset, _nbytes(shape, dtype)
    if not dtype.hasobject and have < need:
        raise OnnxLrpError(f"is truncated: its header declares an array of shape {list(shape)} ({dtype}, {need} bytes)"
                           f" and the file holds {have} bytes of data. Save it again.", path=path)
    return {None: Array(None, shape, dtype)}


def _npz_arrays(path):
    """{key: Array} from the zip's directory and each member's .npy header; no array data is decompressed."""
    arrays = {}
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                key = info.filename[:-len(".npy")]
                with zf.open(info) as f:
                    shape, dtype = _read_header(f)
                    header = f.tell()
                need = _nbytes(shape, dtype)
                if not dtype.hasobject and info.file_size < header + need:
                    raise OnnxLrpError(f"array '{key}' is truncated: its header declares shape {list(shape)} "
                                       f"({dtype}, {need} bytes) and the zip holds {info.file_size - header} bytes "
                                       "of it. Save the .npz again.", path=path)
                arrays[key] = Array(key, shape, dtype)
    except OnnxLrpError:
        raise
    except Exception as exc:  # BadZipFile, a bad member header, an encrypted member, ...
        raise OnnxLrpError(f"cannot be read as an .npz, a zip of .npy files ({type(exc).__name__}: {exc})",
                           path=path) from None
    return arrays


def _check_dtype(array, model_input, path):
    where = f" '{array.key}'" if array.key is not None else ""
    if array.dtype.hasobject:
        raise OnnxLrpError(f"array{where} holds Python objects (dtype object): reading it would run pickle, which "
                           "onnx-lrp never does. Save it as a numeric array (e.g. np.asarray(x, np.float32)).",
                           path=path)
    if array.dtype.kind not in NUMERIC_KINDS:
        raise OnnxLrpError(f"array{where} holds {'strings' if array.dtype.kind in 'US' else 'no plain numbers'} "
                           f"(dtype {array.dtype}); input '{model_input.name}' takes {model_input.type}. Save it as "
                           "a numeric array.", path=path)
    if array.dtype.kind == "f" and "int" in model_input.type:
        raise OnnxLrpError(f"array{where} holds floats (dtype {array.dtype}); input '{model_input.name}' takes "
                           f"{model_input.type} (e.g. token ids). Save it as integers.", path=path)


def _fitting(arrays, model_input):
    """The arrays that could feed `model_input`: its rank (a batch) or one less (a sample), its static dims."""
    dims = list(model_input.shape)
    fits = []
    for key, a in arrays.items():
        ndim = len(a.shape)
        tail = dims[1:] if ndim == len(dims) - 1 else dims if ndim == len(dims) else None
        if tail is not None and all(not isinstance(d, int) or d == n for d, n in zip(tail[-ndim:] if ndim else [],
                                                                                    a.shape)):
            fits.append(key)
    return fits


def _choose(arrays, key, inputs, path):
    """{input name: Array} of an .npz: FILE.npz:KEY, an array per input name, or the one array that fits."""
    names = [i.name for i in inputs]
    if key is not None:
        if key not in arrays:
            raise OnnxLrpError(f"the .npz holds {', '.join(arrays) or 'nothing'}; ':{key}' names none of them",
                               path=path)
        if len(names) != 1:
            raise OnnxLrpError("FILE.npz:KEY needs a model with one input", path=path)
        return {names[0]: arrays[key]}
    if all(n in arrays for n in names):
        return {n: arrays[n] for n in names}
    fitting = _fitting(arrays, inputs[0]) if len(names) == 1 else []
    if len(fitting) > 1:  # plain numbers before what cannot be read
        fitting = [k for k in fitting if arrays[k].dtype.kind in NUMERIC_KINDS and not arrays[k].dtype.hasobject] \
            or fitting
    if len(fitting) > 1 and "x" in fitting:  # the usual name of the inputs beside labels and extras
        fitting = ["x"]
    if len(fitting) != 1:
        found = f"; {', '.join(fitting)} fit the input: choose one with FILE.npz:KEY" if fitting else ""
        unread = [k for k, a in arrays.items() if a.dtype.hasobject or a.dtype.kind not in NUMERIC_KINDS]
        if unread and not fitting:
            pickled = any(arrays[k].dtype.hasobject for k in unread)
            what = "Python objects, which onnx-lrp never unpickles" if pickled else "no numbers"
            found = f" ({', '.join(unread)}: {what})"
        raise OnnxLrpError(f"the .npz holds {', '.join(arrays) or 'nothing'}; it needs an array for each model "
                           f"input ({', '.join(names)}){found}", path=path)
    return {names[0]: arrays[fitting[0]]}


def _batch(chosen, inputs, path):
    """({input name: holds a batch}, the number of samples or None) after checking each array's dims."""
    by_name = {i.name: i for i in inputs}
    batched = {}
    for name, a in chosen.items():
        dims = list(by_name[name].shape)
        ndim = len(a.shape)
        where = f"array '{a.key}'" if a.key is not None else "the array"
        tail = dims[1:] if ndim == len(dims) - 1 else dims[1:] if ndim == len(dims) else None
        shape = a.shape if ndim == len(dims) - 1 else a.shape[1:]
        if tail is None or any(isinstance(d, int) and d != n for d, n in zip(tail, shape)):
            raise OnnxLrpError(f"{where} for input '{name}' has shape {list(a.shape)}; the model reads "
                               f"{_dims_text(dims)} (one sample without the batch dim, or a batch)", path=path)
        batched[name] = ndim == len(dims)
    counts = {chosen[n].shape[0] for n, b in batched.items() if b}
    if len(counts) > 1:
        counted = ", ".join(f"{n}: {chosen[n].shape[0]}" for n, b in batched.items() if b)
        raise OnnxLrpError(f"its arrays hold different numbers of samples ({counted})", path=path)
    if counts and not min(counts):
        raise OnnxLrpError(f"holds no samples (shape {list(next(chosen[n].shape for n, b in batched.items() if b))}). "
                           "Give a file with at least one.", path=path)
    return batched, (counts.pop() if counts else None)


def plan_source(label, inputs, image_options):
    """A Source from the file's header (nothing but headers is read); refuses what cannot be explained."""
    path, key = split_key(label)
    stem = os.path.splitext(os.path.basename(path))[0]
    identity = source_identity(path)
    lower = path.lower()
    if lower.endswith(IMAGE_SUFFIXES):
        if len(inputs) != 1:
            raise OnnxLrpError("an image input needs a model with one input", path=path)
        if len(inputs[0].shape) != 4:
            raise OnnxLrpError(f"an image needs a model that reads images [N, C, H, W] or [N, H, W, C]; this one "
                               f"reads {_dims_text(inputs[0].shape)}", path=path)
        check_image(path)
        return Source(path, label, "image", {}, {}, None, stem, identity)
    if lower.endswith(AUDIO_SUFFIXES):
        from . import audio
        want = [audio.N_MELS, audio.FRAMES]
        if len(inputs) != 1 or len(inputs[0].shape) != 3 or any(isinstance(d, int) and d != w for d, w in
                                                                 zip(inputs[0].shape[1:], want)):
            raise OnnxLrpError(f"a .wav is read as a log-mel spectrogram [N, {want[0]}, {want[1]}] (onnx_lrp.audio: "
                               f"1 s, 16 kHz); this model reads {', '.join(_dims_text(i.shape) for i in inputs)}. "
                               "Give the model's own features as .npy instead", path=path)
        return Source(path, label, "audio", {}, {}, None, stem, identity)
    if lower.endswith(".npy"):
        if len(inputs) != 1:
            raise OnnxLrpError(f"the model reads {len(inputs)} inputs ({', '.join(i.name for i in inputs)}): give an "
                               ".npz with one array per input name", path=path)
        chosen = {inputs[0].name: _npy_arrays(path)[None]}
        kind = "npy"
    else:
        chosen = _choose(_npz_arrays(path), key, inputs, path)
        kind = "npz"
    by_name = {i.name: i for i in inputs}
    for name, a in chosen.items():
        _check_dtype(a, by_name[name], path)
    batched, count = _batch(chosen, inputs, path)
    return Source(path, label, kind, chosen, batched, count, stem, identity)


def read_source(source, inputs, image_options):
    """({input name: array}, picture or None): the arrays the plan chose and nothing else (an .npy is mapped, so
    only the samples used are read; an .npz member is read alone)."""
    if source.kind == "image":
        x, picture = load_image(source.path, **image_options)
        want = list(inputs[0].shape)[1:]
        if any(isinstance(d, int) and d != n for d, n in zip(want, x.shape)):
            raise OnnxLrpError(f"the image reads as {list(x.shape)} and the model takes {_dims_text(want)}: set "
                               "--size or --layout to match", path=source.path)
        return {inputs[0].name: x}, picture
    if source.kind == "audio":
        from . import audio
        try:
            wave, rate = audio.read_wav(source.path)
        except ValueError as exc:
            raise OnnxLrpError(str(exc), path=source.path) from None
        x = audio.log_mel_spectrogram(audio.fit_duration(wave, rate), rate).astype(np.float32)
        return {inputs[0].name: x}, None
    try:
        if source.kind == "npy":
            return {n: np.load(source.path, mmap_mode="r", allow_pickle=False) for n in source.arrays}, None
        with np.load(source.path, allow_pickle=False) as npz:
            return {n: npz[a.key] for n, a in source.arrays.items()}, None
    except Exception as exc:  # changed since planned, a CRC error, ...
        raise OnnxLrpError(f"cannot be read ({type(exc).__name__}: {exc})", path=source.path) from None


def image_options(args, inputs):
    """Image reading options from the command line and the model's input shape [N, C, H, W] or [N, H, W, C]."""
    shape = inputs[0].shape if len(inputs) == 1 else []
    layout = args.layout
    if layout is None:
        layout = "nhwc" if len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3) else "nchw"
    spatial = (shape[2:4] if layout == "nchw" else shape[1:3]) if len(shape) == 4 else []
    channels = (shape[1] if layout == "nchw" else shape[3]) if len(shape) == 4 else 3
    channels = channels if isinstance(channels, int) else 3
    for flag, values in (("--mean", args.mean), ("--std", args.std)):
        if values is not None and len(values) not in (1, channels):
            raise OnnxLrpError(f"{flag} gives {len(values)} values; the model's images have {channels} channel(s)")
    size = args.size or ([int(d) for d in spatial] if all(isinstance(d, int) for d in spatial) and spatial else None)
    return dict(size=size, channels=channels, mean=args.mean, std=args.std,
                scale=args.scale, order=args.channel_order, layout=layout)


def read_feature_names(spec, count):
    if spec is None:
        return [f"feature {k}" for k in range(count)]
    if os.path.isfile(spec):
        with open(spec) as f:
            text = f.read()
        if spec.endswith(".json"):
            data = json.loads(text)
            names = data.get("features", data.get("feature_names")) if isinstance(data, dict) else data
        else:
            names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [n.strip() for n in spec.split(",")]
    if not isinstance(names, list) or len(names) != count:
        raise OnnxLrpError(f"--feature-names gives {len(names) if isinstance(names, list) else 'no list of'} names "
                           f"for {count} features", path=spec if os.path.isfile(spec) else None)
    return [str(n) for n in names]


def read_vocab(path):
    """id -> token, from a JSON list, {"tokens": [...]}, {token: id}, or a text file with one token per line."""
    with open(path) as f:
        text = f.read()
    if not path.endswith(".json"):
        return [line.rstrip("\n") for line in text.splitlines()]
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("tokens"), list):
        return data["tokens"]
    if isinstance(data, dict):
        tokens = [""] * (max(data.values()) + 1)
        for token, index in data.items():
            tokens[index] = token
        return tokens
    return list(data)


def write_bar_chart(path, names, values, title):
    """Features ranked by relevance as a horizontal bar chart (matplotlib: pip install onnx-lrp[plots])."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("onnx-lrp: note: bar charts need matplotlib (pip install 'onnx-lrp[plots]'); skipped", file=sys.stderr)
        return False
    order = np.argsort(values)
    fig, ax = plt.subplots(figsize=(7, max(2.5, 0.28 * len(names) + 1)))
    ax.barh([names[k] for k in order], values[order],
            color=["#d62728" if values[k] > 0 else "#1f77b4" for k in order])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel("relevance")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write_frame_chart(path, values, title):
    """Relevance per time frame as bars in time order (matplotlib)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("onnx-lrp: note: bar charts need matplotlib (pip install 'onnx-lrp[plots]'); skipped", file=sys.stderr)
        return False
    fig, ax = plt.subplots(figsize=(7, 2.5))
    seconds = np.arange(len(values)) * 0.02
    ax.bar(seconds, values, width=0.02, color=np.where(values >= 0, "#d62728", "#1f77b4"))
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("relevance")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def tokens_html(words, relevance, title):
    """Tokens on a white background tinted red (positive) or blue (negative) by their relevance."""
    vmax = float(np.abs(relevance).max()) or 1.0
    spans = []
    for word, r in zip(words, relevance):
        fade = int(round(255 * (1 - abs(r) / vmax)))
        colour = f"rgb(255,{fade},{fade})" if r >= 0 else f"rgb({fade},{fade},255)"
        spans.append(f'<span title="{r:+.4g}" style="background:{colour};padding:2px 3px;margin:1px;'
                     f'border-radius:3px">{html.escape(word)}</span>')
    return (f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<body style='font-family:sans-serif;line-height:2'><p>{html.escape(title)}</p><p>{' '.join(spans)}</p>"
            "<p style='color:#666'>red: evidence for the explained class, blue: against</p></body>\n")


def _ranked_text(names, values, limit=5):
    order = np.argsort(-values)
    picks = list(order) if len(order) <= 2 * limit else list(order[:limit]) + [None] + list(order[-limit:])
    return "\n".join("    ..." if k is None else f"    {values[k]:+.4g}  {names[k]}" for k in picks)


def _note(text):
    print(f"onnx-lrp: note: {text}", file=sys.stderr)


def _settings(args):
    """What decides the results (the model file and every option but where and how fast): resuming redoes a
    sample written with other settings."""
    skip = {"inputs", "out", "batch_size", "providers", "skip_existing", "debug", "command", "model"}
    model = args.model
    return {"model": source_identity(model) if isinstance(model, str) and os.path.isfile(model) else str(model),
            "options": {k: v for k, v in sorted(vars(args).items()) if k not in skip}}


def _report_renamed(renamed, planned, out_dir, note, limit=10):
    for r in renamed[:limit]:
        source, k = planned[r.position]
        holder, j = planned[r.holder]
        note(f"{source.where(k)} is written as {r.name}: {r.natural} is the name of {holder.where(j)}")
    if len(renamed) > limit:
        note(f"... and {len(renamed) - limit} more renamed; {os.path.join(out_dir, 'index.jsonl')} lists the input of "
             "every result")


def explain_files(args, explainer, out_dir, print_line=print, note=_note):
    """Run the explainer over the files of args.inputs, one batch of samples at a time (a folder of any size fits
    in memory), and write the results into out_dir through a SampleWriter; returns the number of samples explained
    in this run (with args.skip_existing, those complete in out_dir already are not explained again)."""
    inputs = explainer.inputs
    files = collect_files(args.inputs)
    options = image_options(args, inputs)
    sources = [plan_source(f, inputs, options) for f in files]  # every header checked before anything runs
    planned = [(s, k) for s in sources for k in s.positions()]
    vocab = read_vocab(args.vocab) if args.vocab else None
    writer = SampleWriter(out_dir, settings=_settings(args), skip_existing=getattr(args, "skip_existing", False))
    try:
        with writer:
            names, renamed = writer.name_samples([s.name(k) for s, k in planned])
            _report_renamed(renamed, planned, out_dir, note)
            todo = [(s, k, name) for (s, k), name in zip(planned, names) if not writer.done(name, s.key(k))]
            if len(todo) < len(planned):
                note(f"{len(planned) - len(todo)} of {len(planned)} sample(s) are complete in {out_dir} already "
                     "(--skip-existing): not explained again")
            return _explain_todo(args, explainer, todo, options, vocab, writer, print_line,
                                 skipped=len(planned) - len(todo))
    except KeyboardInterrupt:  # (also one held off while the writer finished)
        note(f"interrupted: {len(writer.written)} sample(s) of this run are complete in {out_dir}, the others "
             "absent (none is half written). Run the same command with --skip-existing to finish.")
        raise


def _explain_todo(args, explainer, todo, options, vocab, writer, print_line, skipped):
    inputs = explainer.inputs
    progress = None
    if len(todo) > 1 and sys.stderr.isatty():
        from tqdm import tqdm
        progress = tqdm(total=len(todo), unit="sample", desc="explaining")
    shapes, done, layer_totals, chunk = None, 0, None, []
    current, arrays, picture = None, None, None

    def run(chunk):
        nonlocal shapes, layer_totals
        own = {(name, a.shape) for _, _, _, feeds, _ in chunk for name, a in feeds.items()}
        shapes = own if shapes is None else shapes
        if own != shapes or len(own) != len(inputs):
            raise OnnxLrpError(f"the inputs do not share one shape per model input ({sorted(shapes | own)}); give "
                               "images a fixed --size or explain them separately", path=chunk[0][0].path)
        batch = {i.name: np.stack([c[3][i.name] for c in chunk]).astype(_dtype(i.type)) for i in inputs}
        explanation = explainer.explain(batch, target=args.target)
        relevances = explanation.relevance if isinstance(explanation.relevance, dict) else \
            {explainer.relevance_outputs[0][len("relevance_"):]: explanation.relevance}
        for j, (source, k, name, feeds, picture) in enumerate(chunk):
            _write_sample(args, j, source, k, name, feeds, picture, explanation, relevances, vocab, writer,
                          print_line)
            if progress is not None:
                progress.update(1)
        if explanation.layer_sums:
            sums = {name: v.sum(axis=0) for name, v in explanation.layer_sums.items()}
            layer_totals = sums if layer_totals is None else {n: layer_totals[n] + sums[n] for n in sums}

    for source, k, name in todo:
        if source is not current:
            current, (arrays, picture) = source, read_source(source, inputs, options)
        feeds = {n: a[k] if source.batched.get(n) else a for n, a in arrays.items()}
        chunk.append((source, k, name, feeds, picture))
        if len(chunk) == explainer.batch_size:
            run(chunk)
            done, chunk = done + len(chunk), []
    if chunk:
        run(chunk)
        done += len(chunk)
    if progress is not None:
        progress.close()
    if layer_totals:
        print_line(bias_report({name: total / done for name, total in layer_totals.items()},
                               f"mean over the {done} inputs explained in this run" if skipped else None))
    return done


def _dtype(onnx_type):
    return {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
            "tensor(float16)": np.float16, "tensor(double)": np.float64}.get(onnx_type, np.float32)


def _write_sample(args, j, source, k, name, feeds, picture, explanation, relevances, vocab, writer, print_line):
    """Sample j of the explained batch: its files through the writer (all or none), then its lines."""
    own = {n: r[j] for n, r in relevances.items()}
    total = sum(float(r.sum()) for r in own.values())
    target = int(explanation.target[j])
    record = {"input": source.label, "sample": k, "target": target, "relevance_sum": total}
    if explanation.output is not None and explanation.output.shape[1] == 1:  # one score (a value head): no classes
        score = float(explanation.output[j, 0])
        record["score"] = score
        line = f"{name}: score {score:.4g}, relevance sum {total:.4g}"
    elif explanation.output is not None:
        scores = explanation.output[j]
        record["predicted"] = int(scores.argmax())
        record["score"] = float(scores[target]) if 0 <= target < len(scores) else None
        score = f"{scores[target]:.4g}" if 0 <= target < len(scores) else "n/a"
        line = (f"{name}: predicted {int(scores.argmax())}, explained {target} (score {score}), relevance sum "
                f"{total:.4g}")
    else:
        line = f"{name}: explained {target}, relevance sum {total:.4g}"
    lines = [line]
    with writer.sample(name, source.key(k), record) as files:
        if len(own) == 1:
            np.save(files.path(".relevance.npy"), next(iter(own.values())))
        else:
            np.savez(files.path(".relevance.npz"), **own)
        input_name, r = next(iter(own.items()))
        x = feeds[input_name]
        if np.issubdtype(x.dtype, np.integer):  # token ids
            tokens = _token_relevance(r, x.ndim)
            words = [vocab[t] if vocab is not None and 0 <= t < len(vocab) else str(t) for t in x.reshape(-1)]
            keep = [i for i, w in enumerate(words) if w not in ("[PAD]", "<pad>", "<PAD>")]
            words, tokens = [words[i] for i in keep], tokens[keep]
            lines.append("  tokens: " + " ".join(f"{w}({v:+.3g})" for w, v in zip(words, tokens)))
            order = np.argsort(-tokens)
            lines.append("  most positive: " + ", ".join(f"{words[i]} {tokens[i]:+.3g}" for i in order[:3]
                                                         if tokens[i] > 0))
            lines.append("  most negative: " + ", ".join(f"{words[i]} {tokens[i]:+.3g}" for i in order[::-1][:3]
                                                         if tokens[i] < 0))
            with open(files.path(".tokens.html"), "w") as f:
                f.write(tokens_html(words, tokens, f"{name}: explained class {target}"))
        elif r.ndim == 1:  # tabular features
            feature_names = read_feature_names(args.feature_names, r.shape[0])
            lines.append("  features ranked by relevance:\n" + _ranked_text(feature_names, r))
            write_bar_chart(files.path(".features.png"), feature_names, r, f"{name}: relevance for class {target}")
        elif source.kind == "audio":  # mel bands low to high, drawn bottom to top; time left to right
            heat = to_rgb(relevance_map(r[::-1]))
            factor = fit_scale(heat.shape)
            save_png(files.path(".heatmap.png"), upscale(heat, factor))
            save_png(files.path(".input.png"), upscale(gray_to_rgb(np.asarray(x)[::-1]), factor))
            per_frame = np.asarray(r, np.float64).sum(axis=0)
            frames = [f"{k * 20} ms" for k in range(per_frame.shape[0])]
            top = np.argsort(-per_frame)[:3]
            lines.append("  most relevant frames: " + ", ".join(f"{frames[k]} {per_frame[k]:+.3g}" for k in top))
            write_frame_chart(files.path(".frames.png"), per_frame, f"{name}: relevance per 20 ms frame, class "
                                                                    f"{target}")
        else:
            heat = to_rgb(relevance_map(r))
            factor = fit_scale(heat.shape)
            save_png(files.path(".heatmap.png"), upscale(heat, factor))
            if picture is not None:
                blended = overlay(picture, relevance_map(r))
                factor = fit_scale(picture.shape)
                save_png(files.path(".overlay.png"), side_by_side(upscale(picture, factor), upscale(blended, factor)))
            elif r.ndim == 3:
                x = np.asarray(x)
                factor = fit_scale(heat.shape)
                shown = gray_to_rgb(x[0]) if x.shape[0] == 1 else np.stack(
                    [gray_to_rgb(c)[..., 0] for c in x[:3]], axis=-1) if x.shape[0] == 3 else gray_to_rgb(x.sum(0))
                save_png(files.path(".input.png"), upscale(shown, factor))
    for line in lines:
        print_line(line)


def _token_relevance(r, id_rank):
    """Per-token relevance: the compiled graph already sums over the embedding for token-id inputs."""
    return np.asarray(r, np.float64).reshape(-1) if r.ndim == id_rank else np.asarray(r).reshape(r.shape[0], -1).sum(1)


def bias_report(mean_sums, over=None):
    """Per linear layer ({name: [input sum, output sum]} averaged over the samples): relevance at its output and
    input, and what the bias (and stabilizer) absorbed."""
    rows = [(name, float(v[1]), float(v[0])) for name, v in mean_sums.items()]
    width = min(max(len(n) for n, _, _ in rows), 60)
    lines = [f"bias relevance per linear layer ({over or 'mean over the inputs'}; absorbed = output - input):",
             f"  {'layer'.ljust(width)}  {'output':>10}  {'input':>10}  {'absorbed':>10}"]
    lines += [f"  {n.ljust(width)}  {o:>10.4g}  {i:>10.4g}  {o - i:>10.4g}" for n, o, i in rows]
    return "\n".join(lines)
