"""`onnx-lrp explain`: inputs from files (arrays, images, folders of them) to relevance files, heatmaps, feature
rankings, coloured tokens and a per-layer bias-relevance report."""
import html
import json
import os
import sys
from typing import NamedTuple, Optional

import numpy as np

from .errors import OnnxLrpError
from .images import (IMAGE_SUFFIXES, fit_scale, gray_to_rgb, load_image, overlay, relevance_map, save_png,
                     side_by_side, to_rgb, upscale)

ARRAY_SUFFIXES = (".npy", ".npz")


class Sample(NamedTuple):
    stem: str
    feeds: dict  # input name -> one sample (no batch dim)
    picture: Optional[np.ndarray] = None  # [H, W, 3] uint8 when read from an image file


def collect_files(paths):
    """The input files in order: files as given, folders expanded to their array and image files (sorted)."""
    files = []
    for path in paths:
        if split_key(path)[1] is not None and os.path.isfile(split_key(path)[0]):
            files.append(path)
        elif os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(ARRAY_SUFFIXES + IMAGE_SUFFIXES))
            if not found:
                raise OnnxLrpError(f"folder holds no .npy, .npz or image files ({', '.join(IMAGE_SUFFIXES)})",
                                   path=path)
            files += found
        elif not os.path.isfile(path):
            raise OnnxLrpError("input not found. Check the path.", path=path)
        elif not path.lower().endswith(ARRAY_SUFFIXES + IMAGE_SUFFIXES):
            raise OnnxLrpError(f"unknown input type: give .npy, .npz or an image ({', '.join(IMAGE_SUFFIXES)})",
                               path=path)
        else:
            files.append(path)
    return files


def _split(stem, arrays, inputs, path):
    """{input: array} holding one sample or a batch of them -> Samples."""
    ranks = {i.name: len(i.shape) for i in inputs}
    batched = {name: a.ndim == ranks[name] for name, a in arrays.items()}
    for name, a in arrays.items():
        if a.ndim not in (ranks[name], ranks[name] - 1):
            raise OnnxLrpError(f"array for input '{name}' has shape {list(a.shape)}; the model reads "
                               f"{list(next(i.shape for i in inputs if i.name == name))} (one sample without the "
                               "batch dim, or a batch)", path=path)
    if not any(batched.values()):
        return [Sample(stem, arrays)]
    n = len(next(a for name, a in arrays.items() if batched[name]))
    return [Sample(f"{stem}_{k}" if n > 1 else stem, {name: a[k] if batched[name] else a
                                                      for name, a in arrays.items()}) for k in range(n)]


def split_key(path):
    """'data.npz:images' -> ('data.npz', 'images'): one array of an .npz, chosen by name."""
    base, sep, key = path.rpartition(":")
    if sep and base.lower().endswith(".npz") and key and os.sep not in key:
        return base, key
    return path, None


def read_samples(path, inputs, image_options):
    path, key = split_key(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    names = [i.name for i in inputs]
    lower = path.lower()
    if lower.endswith(IMAGE_SUFFIXES):
        if len(inputs) != 1:
            raise OnnxLrpError("an image input needs a model with one input", path=path)
        x, picture = load_image(path, **image_options)
        return [Sample(stem, {names[0]: x}, picture)]
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise OnnxLrpError(f"cannot be read as a numpy file ({exc})", path=path) from None
    if lower.endswith(".npy"):
        if len(inputs) != 1:
            raise OnnxLrpError(f"the model reads {len(inputs)} inputs ({', '.join(names)}): give an .npz with one "
                               "array per input name", path=path)
        return _split(stem, {names[0]: loaded}, inputs, path)
    arrays = dict(loaded.items())
    if key is not None:
        if key not in arrays or len(names) != 1:
            raise OnnxLrpError(f"the .npz holds {', '.join(arrays) or 'nothing'}; ':{key}' names none of them"
                               if key not in arrays else "FILE.npz:KEY needs a model with one input", path=path)
        arrays = {names[0]: arrays[key]}
    elif all(n in arrays for n in names):
        arrays = {n: arrays[n] for n in names}
    else:
        fitting = _fitting(arrays, inputs[0]) if len(names) == 1 else []
        if len(fitting) > 1 and "x" in fitting:  # the usual name of the inputs beside labels and extras
            fitting = ["x"]
        if len(fitting) != 1:
            found = f"; {', '.join(fitting)} fit the input: choose one with FILE.npz:KEY" if fitting else ""
            raise OnnxLrpError(f"the .npz holds {', '.join(arrays) or 'nothing'}; it needs an array for each model "
                               f"input ({', '.join(names)}){found}", path=path)
        arrays = {names[0]: arrays[fitting[0]]}
    return _split(stem, arrays, inputs, path)


def _fitting(arrays, model_input):
    """The arrays that could feed `model_input`: its rank (a batch) or one less (a sample), its static dims."""
    dims = list(model_input.shape)
    fits = []
    for key, a in arrays.items():
        tail = dims[1:] if a.ndim == len(dims) - 1 else dims if a.ndim == len(dims) else None
        if tail is not None and all(not isinstance(d, int) or d == n for d, n in zip(tail[-a.ndim:], a.shape)):
            fits.append(key)
    return fits


def image_options(args, inputs):
    """Image reading options from the command line and the model's input shape [N, C, H, W] or [N, H, W, C]."""
    shape = inputs[0].shape if len(inputs) == 1 else []
    layout = args.layout
    if layout is None:
        layout = "nhwc" if len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3) else "nchw"
    spatial = (shape[2:4] if layout == "nchw" else shape[1:3]) if len(shape) == 4 else []
    channels = (shape[1] if layout == "nchw" else shape[3]) if len(shape) == 4 else 3
    size = args.size or ([int(d) for d in spatial] if all(isinstance(d, int) for d in spatial) and spatial else None)
    return dict(size=size, channels=channels if isinstance(channels, int) else 3, mean=args.mean, std=args.std,
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


def _samples(files, inputs, options):
    """The samples of the files, in order, read one file at a time; a stem seen before gets a suffix (a.npy and
    a.png give a and a-1)."""
    stems = {}
    for path in files:
        for sample in read_samples(path, inputs, options):
            count = stems.get(sample.stem, 0)
            stems[sample.stem] = count + 1
            yield path, sample._replace(stem=f"{sample.stem}-{count}") if count else sample


def explain_files(args, explainer, out_dir, print_line=print):
    """Run the explainer over the files of args.inputs, one batch of samples at a time (a folder of any size fits
    in memory), and write the results into out_dir; returns the number of samples explained."""
    inputs = explainer.inputs
    files = collect_files(args.inputs)
    options = image_options(args, inputs)
    vocab = read_vocab(args.vocab) if args.vocab else None
    progress = None
    if len(files) > 1 and sys.stderr.isatty():
        from tqdm import tqdm
        progress = tqdm(total=len(files), unit="file", desc="explaining")
    shapes, done, layer_totals, chunk, read = None, 0, None, [], set()

    def run(chunk):
        nonlocal shapes, layer_totals
        own = {(name, a.shape) for _, s in chunk for name, a in s.feeds.items()}
        shapes = own if shapes is None else shapes
        if own != shapes or len(own) != len(inputs):
            raise OnnxLrpError(f"the inputs do not share one shape per model input ({sorted(shapes | own)}); give "
                               "images a fixed --size or explain them separately", path=chunk[0][0])
        batch = {i.name: np.stack([s.feeds[i.name] for _, s in chunk]).astype(_dtype(i.type)) for i in inputs}
        explanation = explainer.explain(batch, target=args.target)
        os.makedirs(out_dir, exist_ok=True)  # (only once a batch is explained: a bad first input writes nothing)
        relevances = explanation.relevance if isinstance(explanation.relevance, dict) else \
            {explainer.relevance_outputs[0][len("relevance_"):]: explanation.relevance}
        for k, (_, sample) in enumerate(chunk):
            _write_sample(args, k, sample, explanation, relevances, vocab, out_dir, print_line)
        if explanation.layer_sums:
            sums = {name: v.sum(axis=0) for name, v in explanation.layer_sums.items()}
            layer_totals = sums if layer_totals is None else {n: layer_totals[n] + sums[n] for n in sums}

    for path, sample in _samples(files, inputs, options):
        chunk.append((path, sample))
        if progress is not None and path not in read:
            read.add(path)
            progress.update(1)
        if len(chunk) == explainer.batch_size:
            run(chunk)
            done, chunk = done + len(chunk), []
    if chunk:
        run(chunk)
        done += len(chunk)
    if progress is not None:
        progress.close()
    if layer_totals:
        print_line(bias_report({name: total / done for name, total in layer_totals.items()}))
    return done


def _dtype(onnx_type):
    return {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32,
            "tensor(float16)": np.float16, "tensor(double)": np.float64}.get(onnx_type, np.float32)


def _write_sample(args, k, sample, explanation, relevances, vocab, out_dir, print_line):
    base = os.path.join(out_dir, sample.stem)
    own = {name: r[k] for name, r in relevances.items()}
    if len(own) == 1:
        np.save(base + ".relevance.npy", next(iter(own.values())))
    else:
        np.savez(base + ".relevance.npz", **own)
    total = sum(float(r.sum()) for r in own.values())
    target = int(explanation.target[k])
    if explanation.output is not None and explanation.output.shape[1] == 1:  # one score (a value head): no classes
        line = f"{sample.stem}: score {explanation.output[k, 0]:.4g}, relevance sum {total:.4g}"
    elif explanation.output is not None:
        scores = explanation.output[k]
        score = f"{scores[target]:.4g}" if 0 <= target < len(scores) else "n/a"
        line = (f"{sample.stem}: predicted {int(scores.argmax())}, explained {target} (score {score}), relevance sum "
                f"{total:.4g}")
    else:
        line = f"{sample.stem}: explained {target}, relevance sum {total:.4g}"
    print_line(line)
    name, r = next(iter(own.items()))
    x = sample.feeds[name]
    if np.issubdtype(x.dtype, np.integer):  # token ids
        tokens = _token_relevance(r, x.ndim)
        words = [vocab[t] if vocab is not None and 0 <= t < len(vocab) else str(t) for t in x.reshape(-1)]
        keep = [j for j, w in enumerate(words) if w not in ("[PAD]", "<pad>", "<PAD>")]
        words, tokens = [words[j] for j in keep], tokens[keep]
        print_line("  tokens: " + " ".join(f"{w}({v:+.3g})" for w, v in zip(words, tokens)))
        order = np.argsort(-tokens)
        print_line("  most positive: " + ", ".join(f"{words[j]} {tokens[j]:+.3g}" for j in order[:3] if tokens[j] > 0))
        print_line("  most negative: " + ", ".join(f"{words[j]} {tokens[j]:+.3g}" for j in order[::-1][:3]
                                                   if tokens[j] < 0))
        with open(base + ".tokens.html", "w") as f:
            f.write(tokens_html(words, tokens, f"{sample.stem}: explained class {target}"))
    elif r.ndim == 1:  # tabular features
        names = read_feature_names(args.feature_names, r.shape[0])
        print_line("  features ranked by relevance:\n" + _ranked_text(names, r))
        write_bar_chart(base + ".features.png", names, r, f"{sample.stem}: relevance for class {target}")
    else:
        heat = to_rgb(relevance_map(r))
        factor = fit_scale(heat.shape)
        save_png(base + ".heatmap.png", upscale(heat, factor))
        if sample.picture is not None:
            picture = sample.picture
            blended = overlay(picture, relevance_map(r))
            factor = fit_scale(picture.shape)
            save_png(base + ".overlay.png", side_by_side(upscale(picture, factor), upscale(blended, factor)))
        elif r.ndim == 3:
            factor = fit_scale(heat.shape)
            picture = gray_to_rgb(x[0]) if x.shape[0] == 1 else np.stack(
                [gray_to_rgb(c)[..., 0] for c in x[:3]], axis=-1) if x.shape[0] == 3 else gray_to_rgb(x.sum(0))
            save_png(base + ".input.png", upscale(picture, factor))


def _token_relevance(r, id_rank):
    """Per-token relevance: the compiled graph already sums over the embedding for token-id inputs."""
    return np.asarray(r, np.float64).reshape(-1) if r.ndim == id_rank else np.asarray(r).reshape(r.shape[0], -1).sum(1)


def bias_report(mean_sums):
    """Per linear layer ({name: [input sum, output sum]} averaged over the samples): relevance at its output and
    input, and what the bias (and stabilizer) absorbed."""
    rows = [(name, float(v[1]), float(v[0])) for name, v in mean_sums.items()]
    width = min(max(len(n) for n, _, _ in rows), 60)
    lines = ["bias relevance per linear layer (mean over the inputs; absorbed = output - input):",
             f"  {'layer'.ljust(width)}  {'output':>10}  {'input':>10}  {'absorbed':>10}"]
    lines += [f"  {n.ljust(width)}  {o:>10.4g}  {i:>10.4g}  {o - i:>10.4g}" for n, o, i in rows]
    return "\n".join(lines)
