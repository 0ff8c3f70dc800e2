"""Make the README's demo pictures (docs/images/demo_*.png) from the output of the README's own commands.

    python tools/make_demo_pictures.py               # docs/images/demo_{digits,clever_hans,tabular,text,othello}.png
    python tools/make_demo_pictures.py --images DIR  # elsewhere (tests/test_readme_commands.py does this)

Needs only what `onnx-lrp explain` needs, plus Pillow and matplotlib (for the fonts and the bar charts); no torch.

Every `onnx-lrp explain ...` string in COMMANDS is shown verbatim in README.md's Demos section (the README test
checks that). The commands run unchanged, as a user would type them in the repository root, but in a scratch folder
that holds a link `models` -> the repository's models/, so their `--out explained/...` folders land in the scratch
folder. The figures are composed with Pillow from what the commands wrote: the `.relevance.npy` of every input, the
`.input.png` / `.heatmap.png` pictures (digits, Clever Hans) and the `.features.png` bar charts (tabular). Labels use
matplotlib's DejaVu Sans font. The figures are quantized to a palette to stay well under 200 kB each.

The inputs are the shipped held-out samples of models/demo/ (see tools/train_*_demo.py), explained in full: the
figures show a fixed, hand-picked subset of them (the indices below), picked after looking at all of them so
that each kind of behaviour shows once (the text demo's "did" shortcut included), all correctly classified. clever_hans_test.npz holds two arrays that fit the model (`x` and `x_unmarked`);
`onnx-lrp explain` reads `x`.
"""
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from onnx_lrp.images import to_rgb, upscale

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "models", "demo")

COMMANDS = {
    "digits": "onnx-lrp explain models/demo/digits_cnn.onnx models/demo/digits_test.npz --composite epsilon-plus "
              "--out explained/digits",
    "clever_hans": "onnx-lrp explain models/demo/clever_hans_cnn.onnx models/demo/clever_hans_test.npz "
                   "--composite epsilon-plus --out explained/clever_hans",
    "tabular": "onnx-lrp explain models/demo/breast_cancer_mlp.onnx models/demo/breast_cancer_test.npz --composite "
               "epsilon --feature-names models/demo/breast_cancer_features.json --out explained/breast_cancer",
    "text": "onnx-lrp explain models/demo/review_classifier.onnx models/demo/review_test.npz --composite epsilon "
            "--vocab models/demo/review_vocab.json --out explained/reviews",
    "othello_policy": "onnx-lrp explain models/demo/othello_net.onnx models/demo/othello_boards.npz --output policy "
                      "--composite epsilon --out explained/othello_policy",
    "othello_value": "onnx-lrp explain models/demo/othello_net.onnx models/demo/othello_boards.npz --output value "
                     "--composite epsilon --out explained/othello_value",
}

DIGITS = [0, 10, 15, 25, 35, 45]  # the first test digit of classes 0, 2, 3, 5, 7, 9
CLEVER_HANS = [0, 10, 20, 30]  # the first test image of each class (mark corner)
TABULAR = [0, 10]  # the first malignant and the first benign test row
TEXT = [10, 8, 18, 23, 17]  # two plain sentences, three with a negation
OTHELLO = [6, 13]  # ply 22 with a good value, ply 43 with a bad one

CORNERS = ["top-left", "top-right", "bottom-left", "bottom-right"]
WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (110, 110, 110)


# -- running the commands ----------------------------------------------------------------------------------------------
def onnx_lrp_argv():
    """How to start `onnx-lrp`: the console script beside this Python, on PATH, or `python -m onnx_lrp.cli`."""
    beside = os.path.join(os.path.dirname(sys.executable), "onnx-lrp")
    if os.path.isfile(beside):
        return [beside]
    found = shutil.which("onnx-lrp")
    return [found] if found else [sys.executable, "-m", "onnx_lrp.cli"]


def run_command(command, cwd):
    """Run a README command line (starting with `onnx-lrp `) in cwd; returns its stdout, or exits with its stderr."""
    argv = shlex.split(command)
    assert argv[0] == "onnx-lrp", command
    result = subprocess.run(onnx_lrp_argv() + argv[1:], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        sys.exit(f"failed ({result.returncode}): {command}\n{result.stdout}{result.stderr}")
    return result.stdout


def out_dir(scratch, name):
    argv = shlex.split(COMMANDS[name])
    return os.path.join(scratch, argv[argv.index("--out") + 1])


def run_all(scratch):
    os.symlink(os.path.join(ROOT, "models"), os.path.join(scratch, "models"), target_is_directory=True)
    printed = {}
    for name, command in COMMANDS.items():
        print(f"$ {command}", flush=True)
        printed[name] = run_command(command, scratch)
        with open(os.path.join(scratch, f"{name}.txt"), "w") as f:
            f.write(printed[name])
    return printed


# -- drawing helpers ---------------------------------------------------------------------------------------------------
def font(size, bold=False):
    try:
        from matplotlib import font_manager
        path = font_manager.findfont(font_manager.FontProperties(family="DejaVu Sans",
                                                                 weight="bold" if bold else "normal"))
        return ImageFont.truetype(path, size)
    except Exception:  # noqa: BLE001 - no matplotlib or no FreeType: Pillow's own font
        return ImageFont.load_default(size)


def text_size(draw, text, f):
    left, top, right, bottom = draw.textbbox((0, 0), text, font=f)
    return right - left, bottom - top


def canvas(width, height):
    image = Image.new("RGB", (width, height), WHITE)
    return image, ImageDraw.Draw(image)


def centred(draw, x_mid, y, text, f, fill=BLACK):
    w, _ = text_size(draw, text, f)
    draw.text((x_mid - w / 2, y), text, font=f, fill=fill)


def paste_framed(image, picture, xy):
    """Paste a picture with a thin grey frame, so white pixels (zero relevance, a white mark) keep their edge."""
    picture = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    x, y = xy
    image.paste(picture, (x, y))
    ImageDraw.Draw(image).rectangle([x - 1, y - 1, x + picture.width, y + picture.height], outline=(150, 150, 150))


def read_png(path, step=1):
    return np.asarray(Image.open(path).convert("RGB"))[::step, ::step]


def save(image, path):
    """A palette PNG (the figures have few colours): small files, no visible change."""
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    return os.path.getsize(path)


def legend(draw, x, y, f):
    """The colour key of every heatmap: red for, blue against, white none."""
    for k, (colour, label) in enumerate([((214, 39, 40), "evidence for the explained output"),
                                         ((31, 119, 180), "evidence against")]):
        draw.rectangle([x, y + k * 22, x + 14, y + k * 22 + 14], fill=colour)
        draw.text((x + 20, y + k * 22 - 1), label, font=f, fill=BLACK)


# -- the figures -------------------------------------------------------------------------------------------------------
def figure_digits(scratch, path):
    d = np.load(os.path.join(DEMO, "digits_test.npz"))
    folder = out_dir(scratch, "digits")
    cell, gap, left, top = 128, 10, 110, 56
    width = left + len(DIGITS) * (cell + gap)
    image, draw = canvas(width, top + 2 * (cell + gap) + 52)
    f, small = font(17), font(15)
    for row, label in enumerate(["input", "relevance"]):
        draw.text((8, top + row * (cell + gap) + cell / 2 - 10), label, font=f, fill=BLACK)
    for col, k in enumerate(DIGITS):
        x0 = left + col * (cell + gap)
        pred = _predicted(scratch, "digits", f"digits_test_{k}")
        centred(draw, x0 + cell / 2, 8, f"digit {int(d['y'][k])}", f)
        centred(draw, x0 + cell / 2, 30, f"predicted {pred}", small, GREY)
        for row, kind in enumerate(["input", "heatmap"]):
            picture = read_png(os.path.join(folder, f"digits_test_{k}.{kind}.png"), 2)
            paste_framed(image, picture, (x0, top + row * (cell + gap)))
    legend(draw, left, top + 2 * (cell + gap) + 6, small)
    return save(image, path)


_PREDICTIONS = {}


def _predicted(scratch, name, stem):
    """The predicted class the command printed for an input (`STEM: predicted K, explained ...`)."""
    if name not in _PREDICTIONS:
        with open(os.path.join(scratch, f"{name}.txt")) as f:
            _PREDICTIONS[name] = {line.split(":")[0]: int(line.split("predicted ")[1].split(",")[0])
                                  for line in f if ": predicted " in line}
    return _PREDICTIONS[name][stem]


def figure_clever_hans(scratch, path):
    d = np.load(os.path.join(DEMO, "clever_hans_test.npz"))
    folder = out_dir(scratch, "clever_hans")
    cell, gap, vgap, left, top = 176, 64, 16, 110, 60
    image, draw = canvas(left + len(CLEVER_HANS) * (cell + gap), top + 2 * (cell + vgap) + 104)
    f, small = font(17), font(15)
    for row, label in enumerate(["input", "relevance"]):
        draw.text((8, top + row * (cell + vgap) + cell / 2 - 10), label, font=f, fill=BLACK)
    for col, k in enumerate(CLEVER_HANS):
        stem = f"clever_hans_test_{k}"
        x0 = left + col * (cell + gap)
        R = np.load(os.path.join(folder, f"{stem}.relevance.npy"))[0]
        positive = np.maximum(R, 0)
        share = positive[d["mark"][k]].sum() / positive.sum()
        label = int(d["y"][k])
        centred(draw, x0 + cell / 2, 6, f"class {label}: mark {CORNERS[label]}", f)
        centred(draw, x0 + cell / 2, 30, f"predicted {_predicted(scratch, 'clever_hans', stem)}, "
                f"decoy digit {int(d['digit'][k])}", small, GREY)
        for row, kind in enumerate(["input", "heatmap"]):
            picture = Image.fromarray(read_png(os.path.join(folder, f"{stem}.{kind}.png")))
            paste_framed(image, picture.resize((cell, cell), Image.NEAREST), (x0, top + row * (cell + vgap)))
        y = top + 2 * cell + vgap + 6
        centred(draw, x0 + cell / 2, y, f"{share:.0%} of the + relevance", small)
        centred(draw, x0 + cell / 2, y + 19, "on the 9 mark pixels", small)
    legend(draw, left, top + 2 * (cell + vgap) + 50, small)
    return save(image, path)


def figure_tabular(scratch, path):
    folder = out_dir(scratch, "tabular")
    classes = ["malignant", "benign"]
    y = np.load(os.path.join(DEMO, "breast_cancer_test.npz"))["y"]
    charts = [read_png(os.path.join(folder, f"breast_cancer_test_{k}.features.png")) for k in TABULAR]
    height = max(c.shape[0] for c in charts)
    top, gap = 40, 16
    image, draw = canvas(sum(c.shape[1] for c in charts) + gap * (len(charts) - 1), height + top)
    f = font(18, bold=True)
    x0 = 0
    for k, chart in zip(TABULAR, charts):
        stem = f"breast_cancer_test_{k}"
        pred = _predicted(scratch, "tabular", stem)
        centred(draw, x0 + chart.shape[1] / 2, 10, f"row {k}: true {classes[int(y[k])]}, predicted "
                f"{classes[pred]} (class {pred})", f)
        image.paste(Image.fromarray(chart), (x0, top))
        x0 += chart.shape[1] + gap
    return save(image, path)


def figure_text(scratch, path):
    d = np.load(os.path.join(DEMO, "review_test.npz"))
    with open(os.path.join(DEMO, "review_vocab.json")) as fh:
        vocab = json.load(fh)["tokens"]
    folder = out_dir(scratch, "text")
    sentiment = ["negative", "positive"]
    f, small, label_font = font(20), font(13), font(16)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left, pad, line_height, top = 190, 6, 66, 14
    rows = []
    for k in TEXT:
        ids = d["input_ids"][k]
        R = np.load(os.path.join(folder, f"review_test_{k}.relevance.npy"))
        keep = ids != 0
        rows.append((k, [vocab[t] for t in ids[keep]], R[keep]))

    def box_width(word, r):  # the word with its padding, or the value below it if that is wider
        return max(text_size(probe, word, f)[0] + 2 * pad, text_size(probe, f"{r:+.2f}", small)[0] + 4)

    widths = [left + sum(box_width(w, r) + 6 for w, r in zip(words, R)) for _, words, R in rows]
    image, draw = canvas(max(widths) + 20, top + len(rows) * line_height + 60)
    for row, (k, words, R) in enumerate(rows):
        y = top + row * line_height
        pred = _predicted(scratch, "text", f"review_test_{k}")
        draw.text((8, y + 4), f"predicted {sentiment[pred]}", font=label_font, fill=BLACK)
        draw.text((8, y + 26), f"(true {sentiment[int(d['label'][k])]})", font=small, fill=GREY)
        vmax = float(np.abs(R).max()) or 1.0
        x = left
        for word, r in zip(words, R):
            fade = round(255 * (1 - abs(r) / vmax))
            colour = (255, fade, fade) if r >= 0 else (fade, fade, 255)
            w = box_width(word, r)
            box = [x, y, x + w, y + 32]
            draw.rounded_rectangle(box, radius=5, fill=colour, outline=(200, 200, 200))
            centred(draw, x + w / 2, y + 4, word, f)
            centred(draw, x + w / 2, y + 35, f"{r:+.2f}", small, GREY)
            x = box[2] + 6
    legend(draw, left, top + len(rows) * line_height + 8, small)
    draw.text((left + 280, top + len(rows) * line_height + 8),
              "each sentence is coloured by its own max |relevance|", font=small, fill=GREY)
    return save(image, path)


def board_picture(board, cell, move=None):
    """Own discs black, opponent white, legal moves as small dark dots, the chosen move ringed in red."""
    image, draw = canvas(8 * cell + 1, 8 * cell + 1)
    draw.rectangle([0, 0, 8 * cell, 8 * cell], fill=(46, 139, 87))
    for r in range(8):
        for c in range(8):
            x, y = c * cell, r * cell
            draw.rectangle([x, y, x + cell, y + cell], outline=(20, 80, 40))
            m = cell // 8
            if board[0, r, c]:
                draw.ellipse([x + m, y + m, x + cell - m, y + cell - m], fill=BLACK)
            elif board[1, r, c]:
                draw.ellipse([x + m, y + m, x + cell - m, y + cell - m], fill=WHITE, outline=BLACK)
            elif board[2, r, c]:
                draw.ellipse([x + cell / 2 - 4, y + cell / 2 - 4, x + cell / 2 + 4, y + cell / 2 + 4],
                             fill=(20, 80, 40))
    if move is not None:
        r, c = divmod(move, 8)
        draw.ellipse([c * cell + 4, r * cell + 4, (c + 1) * cell - 4, (r + 1) * cell - 4], outline=(220, 0, 0), width=4)
    return image


def heatmap_picture(R, board, cell, move=None):
    """Relevance summed over the three input planes, one square per board square; the discs as small markers in the
    same colours as on the board, so the colour around them stays readable."""
    image = Image.fromarray(upscale(to_rgb(R.sum(0)), cell))
    image = image.crop((0, 0, 8 * cell + 1, 8 * cell + 1))
    draw = ImageDraw.Draw(image)
    m = cell // 2 - 6
    for r in range(8):
        for c in range(8):
            x, y = c * cell, r * cell
            draw.rectangle([x, y, x + cell, y + cell], outline=(190, 190, 190))
            if board[0, r, c] or board[1, r, c]:
                draw.ellipse([x + m, y + m, x + cell - m, y + cell - m], fill=BLACK if board[0, r, c] else WHITE,
                             outline=BLACK)
    if move is not None:
        r, c = divmod(move, 8)
        draw.rectangle([c * cell + 1, r * cell + 1, (c + 1) * cell - 1, (r + 1) * cell - 1], outline=(0, 150, 0),
                       width=4)
    return image


def figure_othello(scratch, path):
    d = np.load(os.path.join(DEMO, "othello_boards.npz"))
    policy_dir, value_dir = out_dir(scratch, "othello_policy"), out_dir(scratch, "othello_value")
    cell, gap, top, row_gap, left = 32, 48, 64, 56, 16
    size = 8 * cell + 1
    small, bold = font(14), font(17, bold=True)
    image, draw = canvas(2 * left + 3 * size + 2 * gap, top + len(OTHELLO) * (size + row_gap) + 44)
    values = {}
    with open(os.path.join(scratch, "othello_value.txt")) as fh:
        for line in fh:
            if ": score " in line:  # a one-score output: `STEM: score S, relevance sum R`
                values[line.split(":")[0]] = float(line.split(": score ")[1].split(",")[0])

    def mid(col):
        return left + col * (size + gap) + size / 2

    for col, (title, subtitle) in enumerate([("board", "black to move; dots: legal moves"),
                                             ("policy head", "relevance of the chosen move's logit"),
                                             ("value head", "relevance of the value")]):
        centred(draw, mid(col), 6, title, bold)
        centred(draw, mid(col), 30, subtitle, small, GREY)
    for row, k in enumerate(OTHELLO):
        stem = f"othello_boards_{k}"
        move = _predicted(scratch, "othello_policy", stem)
        board = d["board"][k]
        y0 = top + row * (size + row_gap)
        pictures = [board_picture(board, cell, move),
                    heatmap_picture(np.load(os.path.join(policy_dir, f"{stem}.relevance.npy")), board, cell, move),
                    heatmap_picture(np.load(os.path.join(value_dir, f"{stem}.relevance.npy")), board, cell)]
        for col, picture in enumerate(pictures):
            paste_framed(image, picture, (int(mid(col) - size / 2), y0))
        r, c = divmod(move, 8)
        captions = [f"board {k} (ply {int(d['ply'][k])})",
                    f"chosen move {'abcdefgh'[c]}{r + 1} (red ring, green square)",
                    f"value {values[stem]:+.2f} (target {float(d['value'][k]):+.2f})"]
        for col, caption in enumerate(captions):
            centred(draw, mid(col), y0 + size + 6, caption, small)
    y = top + len(OTHELLO) * (size + row_gap) - 20
    legend(draw, int(mid(1) - size / 2), y, small)
    draw.text((left, y), "discs on the heatmaps:", font=small, fill=GREY)
    draw.text((left, y + 20), "black = own, white = opponent", font=small, fill=GREY)
    return save(image, path)


FIGURES = {"demo_digits.png": figure_digits, "demo_clever_hans.png": figure_clever_hans,
           "demo_tabular.png": figure_tabular, "demo_text.png": figure_text, "demo_othello.png": figure_othello}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", default=os.path.join(ROOT, "docs", "images"), help="folder for the figures")
    p.add_argument("--keep", metavar="DIR", help="run the commands in DIR (kept) instead of a temporary folder")
    args = p.parse_args(argv)
    scratch = args.keep or tempfile.mkdtemp(prefix="onnx-lrp-demos-")
    if args.keep:
        os.makedirs(scratch, exist_ok=True)
        if os.path.lexists(os.path.join(scratch, "models")):
            os.remove(os.path.join(scratch, "models"))
    try:
        run_all(scratch)
        os.makedirs(args.images, exist_ok=True)
        for name, make in FIGURES.items():
            size = make(scratch, os.path.join(args.images, name))
            print(f"wrote {os.path.join(args.images, name)} ({size / 1000:.0f} kB)")
            if size >= 200_000:
                sys.exit(f"{name} is {size} bytes; keep the README's pictures under 200 kB")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
