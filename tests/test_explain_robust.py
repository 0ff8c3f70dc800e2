"""Issue 22: `onnx-lrp explain` loses nothing (colliding names, interrupted runs, resuming), the Python API fails
as the CLI does (OnnxLrpError naming the file), bad input files end in one clean line, and an input file costs the
memory of the arrays actually read.

Every command that writes per-sample files goes through onnx_lrp.sample_writer and is listed in PER_SAMPLE: the
checks below run for each (test_every_per_sample_command_is_checked fails when a new `--out DIR` command is not)."""
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import zipfile
import zlib

import numpy as np
import onnx
import pytest
from PIL import Image

import onnx_lrp
from conftest import MODELS
from onnx_lrp.cli import _parser, main
from onnx_lrp.explain import Explainer
from onnx_lrp.sample_writer import INDEX, SampleWriter, unique_names

DIGITS = os.path.join(MODELS, "demo", "digits_cnn.onnx")  # input [N, 1, 8, 8], 10 classes
MLP = os.path.join(MODELS, "mlp_tabular.onnx")


def explain_argv(model, inputs, out, *extra):
    return ["explain", model, *inputs, "--out", out, "--providers", "cpu", *extra]


# command -> argv for (model, inputs, out, extra options); concepts, spray, evaluate join here when they come
PER_SAMPLE = {"explain": explain_argv}
ARRAY_FILES = (".relevance.npy", ".heatmap.png", ".input.png")  # what explain writes for an [1, 8, 8] array
IMAGE_FILES = (".relevance.npy", ".heatmap.png", ".overlay.png")


def test_every_per_sample_command_is_checked():
    """A subcommand that writes into a folder (`--out DIR`) writes per-sample files: it must use SampleWriter and be
    in PER_SAMPLE, so that the collision, interruption and resume checks run for it."""
    sub = next(a for a in _parser()._actions if a.dest == "command")
    folder_commands = {name for name, p in sub.choices.items()
                       if any(a.dest == "out" and a.metavar == "DIR" for a in p._actions)}
    assert folder_commands == set(PER_SAMPLE)
    import onnx_lrp.explain_files as explain_files
    assert explain_files.SampleWriter is SampleWriter


def digit(seed):
    return np.random.default_rng(seed).normal(size=(1, 8, 8)).astype(np.float32)


def grey_png(path, seed):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8), dtype=np.uint8)).save(path)


def index(out):
    with open(os.path.join(out, INDEX)) as f:
        return [json.loads(line) for line in f]


# -- names ---------------------------------------------------------------------------------------------------------


def test_unique_names_keep_real_names_and_number_the_others():
    assert unique_names(["a-1", "a", "a"]) == (["a-1", "a", "a-2"], [(2, "a", "a-2", 1)])
    names, renamed = unique_names(["A", "a-1", "a-2", "a", "a", "a"])  # case-insensitive, real a-2 keeps its name
    assert names == ["A", "a-1", "a-2", "a-3", "a-4", "a-5"]
    assert [r.holder for r in renamed] == [0, 0, 0]
    assert unique_names(["x_1", "x_0", "x_1"])[0] == ["x_1", "x_0", "x_1-2"]
    assert unique_names(["b", "c"]) == (["b", "c"], [])


@pytest.mark.parametrize("command", PER_SAMPLE)
def test_six_colliding_names_give_six_complete_result_sets(tmp_path, capsys, command):
    folder = tmp_path / "in"
    folder.mkdir()
    arrays = {"a-1.npy": digit(1), "a-2.npy": digit(2), "a.npy": digit(3)}
    for name, x in arrays.items():
        np.save(folder / name, x)
    np.savez(folder / "a.npz", x=digit(4)[None])  # a batch of one: the name a
    grey_png(folder / "A.png", 5)
    grey_png(folder / "a.png", 6)
    out = str(tmp_path / "out")
    assert main(PER_SAMPLE[command](DIGITS, [str(folder)], out)) == 0
    captured = capsys.readouterr()
    # input order (sorted): A.png a-1.npy a-2.npy a.npy a.npz a.png; A.png keeps "A" (names compare case-blind)
    expected = {"A": "A.png", "a-1": "a-1.npy", "a-2": "a-2.npy", "a-3": "a.npy", "a-4": "a.npz", "a-5": "a.png"}
    entries = index(out)
    assert {e["name"]: os.path.basename(e["input"]) for e in entries} == expected
    own = {name: IMAGE_FILES if source.endswith(".png") else ARRAY_FILES for name, source in expected.items()}
    for name, source in expected.items():
        assert all(os.path.isfile(os.path.join(out, name + s)) for s in own[name]), name
        kept = name in ("A", "a-1", "a-2")
        assert kept or f"{os.path.join(str(folder), source)} is written as {name}: " in captured.err
    assert sorted(os.listdir(out)) == sorted([INDEX] + [n + s for n, suffixes in own.items() for s in suffixes])
    explainer = Explainer(DIGITS, providers="cpu")
    for name, source in expected.items():  # each result is its own input's, none overwritten
        if source.endswith(".npy"):
            want = explainer.explain(arrays[source][None]).relevance[0]
        elif source == "a.npz":
            want = explainer.explain(digit(4)[None]).relevance[0]
        else:
            continue
        np.testing.assert_allclose(np.load(os.path.join(out, name + ".relevance.npy")), want, rtol=1e-5, atol=1e-7)
    assert captured.err.count("is written as") == 3
    # the three files: a-1.npy, a.npy, a.png -> a-1, a, a-2; a rerun gives the same names
    small = tmp_path / "small"
    small.mkdir()
    for name in ("a-1.npy", "a.npy"):
        shutil.copy(folder / name, small / name)
    shutil.copy(folder / "a.png", small / "a.png")
    for run in range(2):
        assert main(PER_SAMPLE[command](DIGITS, [str(small)], str(tmp_path / "o3"))) == 0
        assert [e["name"] for e in index(str(tmp_path / "o3"))] == ["a-1", "a", "a-2"]
    assert f"{small / 'a.png'} is written as a-2: a is the name of {small / 'a.npy'}" in capsys.readouterr().err


@pytest.mark.parametrize("command", PER_SAMPLE)
def test_same_names_in_two_folders_and_a_batch_beside_a_file(tmp_path, capsys, command):
    for sub in ("one", "two"):
        (tmp_path / sub).mkdir()
        np.save(tmp_path / sub / "x.npy", digit(len(sub)))
    np.save(tmp_path / "d.npy", np.stack([digit(7), digit(8)]))  # samples d_0, d_1
    np.save(tmp_path / "d_1.npy", digit(9))
    out = str(tmp_path / "out")
    inputs = [str(tmp_path / "one"), str(tmp_path / "two"), str(tmp_path / "d.npy"), str(tmp_path / "d_1.npy")]
    assert main(PER_SAMPLE[command](DIGITS, inputs, out)) == 0
    err = capsys.readouterr().err
    assert [(e["name"], os.path.relpath(e["input"], tmp_path), e["sample"]) for e in index(out)] == [
        ("x", "one/x.npy", None), ("x-2", "two/x.npy", None), ("d_0", "d.npy", 0), ("d_1", "d.npy", 1),
        ("d_1-2", "d_1.npy", None)]
    assert f"{tmp_path / 'd_1.npy'} is written as d_1-2: d_1 is the name of {tmp_path / 'd.npy'}[1]" in err
    np.testing.assert_allclose(np.load(os.path.join(out, "d_1-2.relevance.npy")),
                               Explainer(DIGITS, providers="cpu").explain(digit(9)[None]).relevance[0], rtol=1e-5)


# -- interruption and resuming -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def many_inputs(tmp_path_factory):
    """A compiled digits model (a child starts faster) and a folder of 24 samples: 16 .npy, 4 PNGs, a batch of 4."""
    root = tmp_path_factory.mktemp("many")
    model = str(root / "digits.lrp.onnx")
    onnx_lrp.write_model(onnx_lrp.compile(DIGITS), model)
    folder = root / "in"
    folder.mkdir()
    for k in range(16):
        np.save(folder / f"s{k:02d}.npy", digit(100 + k))
    for k in range(4):
        grey_png(folder / f"p{k}.png", 200 + k)
    np.save(folder / "batch.npy", np.stack([digit(300 + k) for k in range(4)]))
    reference = str(root / "reference")
    done = subprocess.run([sys.executable, "-m", "onnx_lrp.cli", *explain_argv(model, [str(folder)], reference,
                                                                                "--batch-size", "4")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    files = {}
    for entry in index(reference):
        files[entry["name"]] = entry["files"]
    assert len(files) == 24
    return model, str(folder), reference, files


def same_file(path, reference):
    """The file is whole and holds the reference's result (PNG decoded, arrays to float tolerance)."""
    if path.endswith(".npy"):
        np.testing.assert_allclose(np.load(path), np.load(reference), rtol=1e-5, atol=1e-7)
        return
    with Image.open(path) as image:
        image.load()  # a partial PNG fails here
        got = np.asarray(image, np.int16)
    want = np.asarray(Image.open(reference), np.int16)
    assert got.shape == want.shape and np.abs(got - want).max() <= 2, path


def check_complete_or_absent(out, reference, files):
    """Every sample: all its files, each whole, or none of them; nothing else in the folder (no temporary file)."""
    if not os.path.exists(out):
        return 0
    present = set(os.listdir(out))
    expected = {f for names in files.values() for f in names}
    assert present - expected <= {INDEX}, sorted(present - expected)
    complete = 0
    for name, own in files.items():
        have = [f for f in own if f in present]
        assert len(have) in (0, len(own)), (name, have)
        for f in have:
            same_file(os.path.join(out, f), os.path.join(reference, f))
        complete += bool(have)
    if INDEX in present:
        listed = [e["name"] for e in index(out)]
        assert len(listed) == len(set(listed)) and all(set(files[n]) <= present for n in listed)
        assert len(listed) == complete  # a complete sample is recorded (the record comes with the renames)
    else:
        assert complete == 0
    return complete


def interrupt(argv, out, sig, wait_lines, delay, timeout=60):
    """Start the command, wait until its index has `wait_lines` lines (0: until the folder appears), `delay` more
    seconds, then send `sig`; returns the finished process' (returncode, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "onnx_lrp.cli", *argv], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    path, start = os.path.join(out, INDEX), time.monotonic()
    while proc.poll() is None and time.monotonic() - start < timeout:
        if wait_lines == 0 and os.path.isdir(out):
            break
        if wait_lines and os.path.isfile(path):
            with open(path) as f:
                if f.read().count("\n") >= wait_lines:
                    break
        time.sleep(0.002)
    time.sleep(delay)
    if proc.poll() is None:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


@pytest.mark.parametrize("command", PER_SAMPLE)
def test_sigint_and_sigterm_at_random_moments_leave_every_sample_complete_or_absent(tmp_path, many_inputs,
                                                                                     command):
    model, folder, reference, files = many_inputs
    rng = np.random.default_rng(22)
    interrupted, last = 0, None
    for attempt in range(20):
        sig = (signal.SIGINT, signal.SIGTERM)[attempt % 2]
        out = str(tmp_path / f"run{attempt}")
        argv = PER_SAMPLE[command](model, [folder], out, "--batch-size", "4")
        rc, err = interrupt(argv, out, sig, int(rng.integers(0, len(files))), float(rng.uniform(0, 0.03)))
        complete = check_complete_or_absent(out, reference, files)
        if complete < len(files):  # (else the signal came after the last sample: the exit code is the signal's)
            interrupted += 1
            assert rc == 130 and "Traceback" not in err, (rc, err)
            assert "onnx-lrp: interrupted" in err and "--skip-existing to finish" in err, err
            last = out
    assert interrupted >= 15  # the signals really hit running commands
    # a rerun with --skip-existing explains only the absent samples and completes the folder
    before = check_complete_or_absent(last, reference, files)
    done = subprocess.run([sys.executable, "-m", "onnx_lrp.cli",
                           *PER_SAMPLE[command](model, [folder], last, "--batch-size", "4", "--skip-existing")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"wrote the results of {len(files) - before} input(s)" in done.stdout
    assert check_complete_or_absent(last, reference, files) == len(files)
    assert [e["name"] for e in index(last)] == [e["name"] for e in index(reference)]  # compacted, in input order


@pytest.mark.parametrize("command", PER_SAMPLE)
def test_skip_existing_redoes_what_is_missing_or_changed(tmp_path, capsys, command):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(4):
        np.save(folder / f"s{k}.npy", digit(k))
    out = str(tmp_path / "out")
    argv = PER_SAMPLE[command](DIGITS, [str(folder)], out)
    assert main(argv) == 0
    os.remove(os.path.join(out, "s1.heatmap.png"))  # s1 incomplete
    np.save(folder / "s2.npy", digit(22))  # s2's input changed
    capsys.readouterr()
    assert main(argv + ["--skip-existing"]) == 0
    captured = capsys.readouterr()
    assert "wrote the results of 2 input(s)" in captured.out and "2 of 4 sample(s) are complete" in captured.err
    assert [line.split(":")[0] for line in captured.out.splitlines() if line.startswith("s")] == ["s1", "s2"]
    np.testing.assert_allclose(np.load(os.path.join(out, "s2.relevance.npy")),
                               Explainer(DIGITS, providers="cpu").explain(digit(22)[None]).relevance[0], rtol=1e-5)
    assert main(argv + ["--skip-existing"]) == 0
    assert "wrote the results of 0 input(s)" in capsys.readouterr().out
    assert main(argv + ["--skip-existing", "--composite", "epsilon"]) == 0  # other rules: everything again
    assert "wrote the results of 4 input(s)" in capsys.readouterr().out
    assert len(index(out)) == 4


def test_a_failing_sample_leaves_no_file_and_the_writer_goes_on(tmp_path):
    out = str(tmp_path / "out")
    handler = signal.getsignal(signal.SIGINT)
    with SampleWriter(out) as writer:
        with pytest.raises(RuntimeError):
            with writer.sample("a", {"k": 1}) as files:
                np.save(files.path(".relevance.npy"), np.zeros(3))
                raise RuntimeError("drawing failed")
        with writer.sample("b", {"k": 2}, {"extra": 5}) as files:
            np.save(files.path(".relevance.npy"), np.ones(3))
    assert sorted(os.listdir(out)) == ["b.relevance.npy", INDEX]
    assert [(e["name"], e["extra"], e["files"]) for e in index(out)] == [("b", 5, ["b.relevance.npy"])]
    assert SampleWriter(out, skip_existing=True).done("b", {"k": 2})
    assert not SampleWriter(out, skip_existing=True).done("b", {"k": 3})
    assert not SampleWriter(out, settings={"other": 1}, skip_existing=True).done("b", {"k": 2})
    assert signal.getsignal(signal.SIGINT) is handler  # the handlers are given back


# -- the Python API ------------------------------------------------------------------------------------------------


def external_model(folder, location, data_at):
    """A compiled MLP whose weights live in external data at `location` (relative to its folder), really stored at
    `data_at`."""
    model = onnx_lrp.compile(MLP, "epsilon")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "m.lrp.onnx")
    onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
                    size_threshold=0)
    model = onnx.load(path, load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(model, path)
    os.makedirs(os.path.dirname(data_at), exist_ok=True)
    os.replace(os.path.join(folder, "w.bin"), data_at)
    return path


def api_case(case, tmp):
    """(callable that must raise, the file its message must name, words of what to do)."""
    if case == "garbage":
        path = os.path.join(tmp, "garbage.onnx")
        open(path, "wb").write(np.random.default_rng(0).bytes(200))
        return lambda: Explainer(path), path, "cannot be parsed as an ONNX model"
    if case == "folder":
        return lambda: Explainer(tmp), tmp, "is a folder"
    if case == "missing":
        path = os.path.join(tmp, "missing.onnx")
        return lambda: Explainer(path), path, "file not found. Check the path"
    if case == "empty":
        path = os.path.join(tmp, "empty.onnx")
        open(path, "wb").close()
        return lambda: Explainer(path), path, "file is empty"
    if case == "external outside":
        path = external_model(os.path.join(tmp, "m"), "../w.bin", os.path.join(tmp, "w.bin"))
        return lambda: Explainer(path), path, "outside the model's folder"
    if case == "external link outside":
        path = external_model(os.path.join(tmp, "m"), "link.bin", os.path.join(tmp, "elsewhere", "w.bin"))
        os.symlink(os.path.join(tmp, "elsewhere", "w.bin"), os.path.join(tmp, "m", "link.bin"))
        return lambda: Explainer(path), path, "outside the model's folder"
    if case == "external missing":
        path = external_model(os.path.join(tmp, "m"), "gone.bin", os.path.join(tmp, "m", "w.bin"))
        return lambda: Explainer(path), path, "does not exist"
    explainer = Explainer(DIGITS, providers="cpu")
    x = np.stack([digit(1), digit(2), digit(3)])
    calls = {
        "zero samples": (lambda: explainer.explain(np.zeros((0, 1, 8, 8), np.float32)), "give at least one"),
        "one sample without the batch dim": (lambda: explainer.explain(digit(1)), "add the batch dim"),
        "wrong dims": (lambda: explainer.explain(np.zeros((2, 1, 9, 9), np.float32)), "the model reads a batch"),
        "wrong rank": (lambda: explainer.explain(np.zeros((2, 64), np.float32)), "[N, 1, 8, 8]"),
        "strings": (lambda: explainer.explain(np.array([["a"]])), "not numbers"),
        "ragged": (lambda: explainer.explain([[1.0], [1.0, 2.0]]), "not an array"),
        "wrong number of targets": (lambda: explainer.explain(x, target=[1, 2]), "one per sample"),
        "target beyond int64": (lambda: explainer.explain(x, target=2 ** 70), "beyond int64"),
        "targets beyond int64": (lambda: explainer.explain(x, target=[1, 2, -2 ** 70]), "beyond int64"),
        "fractional target": (lambda: explainer.explain(x, target=1.5), "not a class index"),
        "unknown input name": (lambda: explainer.explain({"input": x, "typo": x}), "not an input of the model"),
        "missing input name": (lambda: explainer.explain({"typo": x}), "are missing"),
    }
    call, words = calls[case]
    return call, DIGITS, words


API_CASES = ["garbage", "folder", "missing", "empty", "external outside", "external link outside",
             "external missing", "zero samples", "one sample without the batch dim", "wrong dims", "wrong rank",
             "strings", "ragged", "wrong number of targets", "target beyond int64", "targets beyond int64",
             "fractional target", "unknown input name", "missing input name"]


@pytest.mark.parametrize("case", API_CASES)
def test_the_python_api_raises_onnx_lrp_error_naming_the_file(case, tmp_path):
    call, path, words = api_case(case, str(tmp_path))
    with pytest.raises(onnx_lrp.OnnxLrpError) as raised:
        call()
    message = str(raised.value)
    assert message.startswith(f"{path}: ") and words in message, message
    assert raised.value.path == path and "\n" not in message


def test_the_api_casts_numbers_and_still_explains(tmp_path):
    explainer = Explainer(DIGITS, providers="cpu")
    x = np.stack([digit(1), digit(2)])
    want = explainer.explain(x, target=[3, 4]).relevance
    np.testing.assert_allclose(explainer.explain(x.astype(np.float64), target=np.array([3.0, 4.0])).relevance, want,
                               rtol=1e-6)
    np.testing.assert_array_equal(explainer.explain(x, target=-1).target, explainer.explain(x).target)


# -- the command line ----------------------------------------------------------------------------------------------


def png_declaring(path, width, height):
    """A PNG header that declares width x height pixels (and holds none)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def npy_bytes(a):
    buffer = io.BytesIO()
    np.save(buffer, a)
    return buffer.getvalue()


def cli_case(case, tmp):
    """(the input file, extra options, words of the message, the file the message names)."""
    path = os.path.join(tmp, {"30000x30000 image": "bomb.png", "garbage image": "g.png", "npy of strings": "s.npy",
                              "npy of wrong dims": "d.npy", "npy of wrong rank": "r.npy", "npy of 0 samples": "z.npy",
                              "truncated npy": "t.npy", "npz with a pickled object array": "o.npz",
                              "npz with only a pickled array": "p.npz", "truncated npz member": "t.npz",
                              "npz that is no zip": "n.npz", "target beyond int64": "x.npy",
                              "negative target beyond int64": "x.npy"}[case])
    if case == "30000x30000 image":
        png_declaring(path, 30000, 30000)
        return path, [], "more pixels than Pillow decodes safely", path
    if case == "garbage image":
        open(path, "wb").write(b"no picture here " * 8)
        return path, [], "cannot be read as an image", path
    if case == "npy of strings":
        np.save(path, np.array([["1", "2"]]))
        return path, [], "holds strings", path
    if case == "npy of wrong dims":
        np.save(path, np.zeros((3, 1, 9, 9), np.float32))
        return path, [], "has shape [3, 1, 9, 9]; the model reads [N, 1, 8, 8]", path
    if case == "npy of wrong rank":
        np.save(path, np.zeros((8, 8), np.float32))
        return path, [], "has shape [8, 8]", path
    if case == "npy of 0 samples":
        np.save(path, np.zeros((0, 1, 8, 8), np.float32))
        return path, [], "holds no samples", path
    if case == "truncated npy":
        open(path, "wb").write(npy_bytes(np.zeros((4, 1, 8, 8), np.float32))[:-100])
        return path, [], "is truncated", path
    if case == "npz with a pickled object array":
        objects = np.empty((2, 1, 8, 8), dtype=object)
        objects[...] = 0.0
        np.savez(path, x=objects, labels=np.arange(2))
        return path, [], "Python objects", path
    if case == "npz with only a pickled array":
        np.savez(path, data=np.array([{"a": 1}, None], dtype=object))
        return path, [], "never unpickles", path
    if case == "truncated npz member":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("x.npy", npy_bytes(np.zeros((4, 1, 8, 8), np.float32))[:-100])
        return path, [], "array 'x' is truncated", path
    if case == "npz that is no zip":
        open(path, "wb").write(b"PK not really")
        return path, [], "cannot be read as an .npz", path
    np.save(path, digit(0))
    target = str(2 ** 70) if case == "target beyond int64" else str(-2 ** 70)
    return path, ["--target", target], "is beyond int64", DIGITS


CLI_CASES = ["30000x30000 image", "garbage image", "npy of strings", "npy of wrong dims", "npy of wrong rank",
             "npy of 0 samples", "truncated npy", "npz with a pickled object array", "npz with only a pickled array",
             "truncated npz member", "npz that is no zip", "target beyond int64", "negative target beyond int64"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_bad_inputs_exit_2_with_one_error_line_naming_the_file(case, tmp_path, capsys):
    path, extra, words, named = cli_case(case, str(tmp_path))
    out = str(tmp_path / "out")
    assert main(explain_argv(DIGITS, [path], out, *extra)) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"onnx-lrp: error: {named}: ") and words in err, err
    assert not os.path.exists(out)  # nothing written


def test_a_bad_file_in_a_folder_fails_before_anything_is_written(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        np.save(folder / f"a{k}.npy", digit(k))
    np.save(folder / "z.npy", np.array(["oops"]))
    assert main(explain_argv(DIGITS, [str(folder)], str(tmp_path / "out"))) == 2
    assert f"{folder / 'z.npy'}: array holds strings" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- memory --------------------------------------------------------------------------------------------------------


def peak_rss_mb(argv):
    """The peak resident memory of a child process that runs the command (its own ru_maxrss)."""
    code = ("import resource, sys\nfrom onnx_lrp.cli import main\nrc = main(sys.argv[1:])\n"
            "print('PEAK', rc, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    done = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    line = next(line for line in done.stdout.splitlines() if line.startswith("PEAK"))
    _, rc, kib = line.split()
    assert rc == "0", done.stderr
    return int(kib) / 1024 * (1 / 1024 if sys.platform == "darwin" else 1)  # macOS reports bytes


def test_an_unused_array_in_an_npz_is_never_decompressed(tmp_path):
    """A 300 MB array beside the sample, compressed to well under 1 MB: the run's peak memory is that of the same
    sample from a plain .npy (before: +300 MB, 2.2 GB for the issue's file)."""
    x = digit(1)[None]
    np.save(tmp_path / "plain.npy", x)
    np.savez_compressed(tmp_path / "big.npz", x=x, unused=np.zeros(75_000_000, np.float32))
    assert os.path.getsize(tmp_path / "big.npz") < 1_000_000
    base = peak_rss_mb(explain_argv(DIGITS, [str(tmp_path / "plain.npy")], str(tmp_path / "a")))
    peak = peak_rss_mb(explain_argv(DIGITS, [str(tmp_path / "big.npz")], str(tmp_path / "b")))
    print(f"peak RSS: plain .npy {base:.0f} MB, .npz with a 300 MB unused array {peak:.0f} MB")
    assert peak - base < 60, (base, peak)
    np.testing.assert_array_equal(np.load(tmp_path / "a" / "plain.relevance.npy"),
                                  np.load(tmp_path / "b" / "big.relevance.npy"))
