"""Every command README.md shows in a ```bash block runs and writes what it promises.

From each ```bash block (continuation lines joined, `&&` / `;` chains split) this takes every command that starts
with `onnx-lrp ` or `python tools/` and runs it the way a reader would, from the repository root, but in a temporary
folder that holds a link to each top-level entry of the repository: relative input paths (models/demo/...) resolve as
in the checkout, and relative outputs (`-o minivgg.lrp.onnx`, `--out explained/digits`) land in the temporary folder.
An output that would still reach the checkout (an absolute path, `..`, a path into a linked entry, or compile's
default MODEL.lrp.onnx beside the model) is redirected into the temporary folder. Then:

- `onnx-lrp compile`: exit 0 and the compiled file exists and loads with onnx;
- `onnx-lrp explain`: exit 0, one printed line per input, and per input its `.relevance.npy` (or `.npz`) and its
  picture: `.heatmap.png` plus `.input.png`/`.overlay.png` for image-shaped relevance, `.features.png` or
  `.tokens.html` for one value per feature or token;
- `onnx-lrp inspect`: exit 0 and a table on stdout;
- `python tools/X.py`: only the scripts in TOOLS run (each in well under 20 s, no torch), with arguments that keep
  their outputs in the temporary folder; every other tools script shown must be listed in SKIPPED_TOOLS with a reason.

Usage synopses (`onnx-lrp compile MODEL.onnx [-o OUT.onnx] ...`: a placeholder model or `[...]` options) and the
tools that need torch (SKIPPED_TOOLS, with the reason) are not collected. Other commands (`pip install ...`, `python -m pytest ...`) are not this test's business.
"""
import importlib.util
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import onnx
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")

# tools scripts a README command may run here: script -> extra arguments (TMP is the temporary folder)
TOOLS = {"tools/make_demo_pictures.py": ["--images", "TMP/images"], "tools/speech_demo.py": ["--images", "TMP/images"]}
SKIPPED_TOOLS = {
    "tools/train_sentiment_demo.py": "trains a BERT with torch and transformers (tools-only environment), minutes",
    "tools/train_digits_demo.py": "trains with torch and scikit-learn",
    "tools/train_clever_hans_demo.py": "trains with torch and scikit-learn",
    "tools/train_tabular_demo.py": "trains with torch and scikit-learn",
    "tools/train_text_demo.py": "trains with torch",
    "tools/train_board_demo.py": "trains with torch",
    "tools/render_heatmaps.py": "trains a CNN with torch and scikit-learn",
    "tools/make_reference.py": "needs torch and Zennit (the reference extra)",
    "tools/bench.py": "a benchmark: minutes",
}
PICTURES = ["demo_digits.png", "demo_clever_hans.png", "demo_tabular.png", "demo_text.png", "demo_othello.png"]


def readme():
    with open(README, encoding="utf-8") as f:
        return f.read()


def bash_commands(text):
    """The commands of every ```bash block: continuation lines joined, comments dropped, `&&` and `;` chains split."""
    commands = []
    for block in re.findall(r"^```bash[ \t]*\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
        for line in re.sub(r"\\\n", " ", block).splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            for part in re.split(r"\s*(?:&&|;)\s*", line):
                part = part.split(" #")[0].strip()
                if part:
                    commands.append(part)
    return commands


def is_synopsis(argv):
    """`onnx-lrp compile MODEL.onnx [-o OUT.onnx] ...`: a usage line, not a command to run."""
    placeholder = len(argv) > 2 and re.fullmatch(r"[A-Z][A-Z_]*(\.[a-z]+)?", argv[2])
    return bool(placeholder) or any(a.startswith("[") for a in argv)


def selected():
    out = []
    for command in bash_commands(readme()):
        if command.startswith(("onnx-lrp ", "python tools/")):
            out.append(command)
    return out


ALL_COMMANDS = selected()
# usage synopses (placeholders) and tools that need torch are not run: they are not collected as tests at all
COMMANDS = [c for c in ALL_COMMANDS if not is_synopsis(shlex.split(c))
            and not (shlex.split(c)[0] == "python" and shlex.split(c)[1] in SKIPPED_TOOLS)]


def test_every_readme_tool_command_is_run_or_has_a_reason():
    scripts = [shlex.split(c)[1] for c in ALL_COMMANDS if shlex.split(c)[0] == "python"]
    assert all(s in TOOLS or s in SKIPPED_TOOLS for s in scripts), scripts
    assert len(COMMANDS) >= 8  # the compile and explain commands of README's top and demos


def onnx_lrp_argv():
    """The installed console script beside this Python (what a reader runs), else `python -m onnx_lrp.cli`."""
    beside = os.path.join(os.path.dirname(sys.executable), "onnx-lrp")
    return [beside] if os.path.isfile(beside) else [sys.executable, "-m", "onnx_lrp.cli"]


def workspace(tmp):
    """A folder that looks like the repository root: a link to each top-level entry."""
    linked = set()
    for name in os.listdir(ROOT):
        if name != ".git":
            os.symlink(os.path.join(ROOT, name), os.path.join(tmp, name))
            linked.add(name)
    return linked


def redirect(argv, tmp, linked):
    """argv with every output (-o/--out) that could reach the checkout moved into tmp; returns (argv, outputs)."""
    argv, outputs = list(argv), []
    for k, arg in enumerate(argv[:-1]):
        if arg in ("-o", "--out"):
            value = argv[k + 1]
            parts = [p for p in value.replace("\\", "/").split("/") if p not in ("", ".")]
            if os.path.isabs(value) or ".." in parts or (parts and parts[0] in linked):
                value = os.path.join(tmp, "redirected", *[p for p in parts if p != ".."])
            argv[k + 1] = value
            outputs.append(os.path.join(tmp, value))  # an absolute value stays itself
    if argv[1] == "compile" and not outputs:  # the default MODEL.lrp.onnx beside the model is in the checkout
        model = next(a for a in argv[2:] if not a.startswith("-"))
        value = os.path.join(tmp, os.path.splitext(os.path.basename(model))[0] + ".lrp.onnx")
        argv += ["-o", value]
        outputs.append(value)
    return argv, outputs


def run(argv, cwd):
    result = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, (f"exit {result.returncode}: {' '.join(argv)}\nstdout:\n{result.stdout[-3000:]}"
                                    f"\nstderr:\n{result.stderr[-3000:]}")
    return result.stdout


def check_explain(stdout, folder):
    stems = re.findall(r"^(\S+): (?:predicted|explained|score) ", stdout, flags=re.MULTILINE)
    wrote = re.search(r"^wrote the results of (\d+) input\(s\) to ", stdout, flags=re.MULTILINE)
    assert stems and wrote and int(wrote.group(1)) == len(stems), stdout[-2000:]
    for stem in stems:
        base = os.path.join(folder, stem)
        if os.path.isfile(base + ".relevance.npy"):
            relevance = np.load(base + ".relevance.npy")
        else:
            with np.load(base + ".relevance.npz") as f:
                relevance = f[f.files[0]]
        assert np.isfinite(relevance).all(), stem
        if relevance.ndim >= 2:
            assert os.path.isfile(base + ".heatmap.png"), stem
            assert os.path.isfile(base + ".input.png") or os.path.isfile(base + ".overlay.png"), stem
        else:
            assert os.path.isfile(base + ".features.png") or os.path.isfile(base + ".tokens.html"), stem


def test_readme_has_the_commands():
    """The extraction works (a broken fence would silently run nothing) and the demo commands are in it."""
    runnable = [c for c in COMMANDS if not (c.startswith("onnx-lrp ") and is_synopsis(shlex.split(c)))]
    assert any(c.startswith("onnx-lrp compile ") for c in runnable), COMMANDS
    assert sum(c.startswith("onnx-lrp explain ") for c in runnable) >= 6, COMMANDS
    assert "python tools/make_demo_pictures.py" in COMMANDS


def test_demo_picture_commands_are_the_readme_commands():
    """tools/make_demo_pictures.py runs the very strings the README shows, and the README shows its pictures."""
    spec = importlib.util.spec_from_file_location("make_demo_pictures",
                                                  os.path.join(ROOT, "tools", "make_demo_pictures.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for name, command in tool.COMMANDS.items():
        assert command in COMMANDS, f"{name}: the README does not show `{command}`"
    text = readme()
    for picture in PICTURES:
        assert f"(docs/images/{picture})" in text, picture
    for path in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text):  # every picture the README shows is there, small
        if not re.match(r"https?://", path):
            assert os.path.isfile(os.path.join(ROOT, path)), path
            assert os.path.getsize(os.path.join(ROOT, path)) < 200_000 or not path.startswith("docs/images/demo_")


@pytest.mark.parametrize("command", COMMANDS, ids=[c[:90] for c in COMMANDS])
def test_readme_command_runs(command, tmp_path):
    argv = shlex.split(command)
    tmp = str(tmp_path)
    linked = workspace(tmp)
    if argv[0] == "python":
        script = argv[1]
        assert script in TOOLS, (f"README runs {script}: add it to TOOLS (if it runs in < 20 s without torch) or "
                                 "to SKIPPED_TOOLS with the reason")
        extra = [a.replace("TMP", tmp) for a in TOOLS[script]]
        run([sys.executable, *argv[1:], *extra], tmp)
        if script == "tools/make_demo_pictures.py":
            for picture in PICTURES:
                path = os.path.join(tmp, "images", picture)
                assert os.path.isfile(path) and os.path.getsize(path) < 200_000, picture
        return
    argv, outputs = redirect(argv, tmp, linked)
    stdout = run(onnx_lrp_argv() + argv[1:], tmp)
    if argv[1] == "compile":
        assert os.path.isfile(outputs[-1]), stdout
        onnx.load(outputs[-1], load_external_data=False)
    elif argv[1] == "explain":
        check_explain(stdout, outputs[-1])
    elif argv[1] == "inspect":
        assert stdout.strip(), "inspect printed nothing"


def test_readme_python_snippets_run_in_order(tmp_path):
    """Every ```python block of README.md, run in order in one process, after the top's compile command (the first
    block reads its output), in a folder that sees the repo's models/."""
    text = open(README).read()
    blocks = re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)
    assert len(blocks) >= 2
    tmp = str(tmp_path)
    workspace(tmp)
    run(onnx_lrp_argv() + ["compile", "models/minivgg_cifar10.onnx", "-o", "minivgg.lrp.onnx"], tmp)
    script = "\n".join(blocks) + "\nprint('relevance', relevance.shape, e.relevance.shape, sorted(e.bias_relevance))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "relevance (4, 3, 32, 32) (50, 1, 8, 8)" in done.stdout
