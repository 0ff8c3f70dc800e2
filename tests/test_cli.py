"""`onnx-lrp compile` on the command line: writes the compiled model, or fails with one clean message."""
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest

from conftest import MODELS, run


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "onnx_lrp.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


@pytest.fixture
def mlp_copy(tmp_path):
    path = tmp_path / "mlp.onnx"
    shutil.copy(f"{MODELS}/mlp_tabular.onnx", path)
    return path


def test_compile_writes_model_lrp_onnx_beside_the_input(mlp_copy):
    before = mlp_copy.read_bytes()
    result = cli("compile", str(mlp_copy), "--composite", "epsilon", "--seed", "one-hot")
    assert result.returncode == 0, result.stderr
    out = mlp_copy.with_name("mlp.lrp.onnx")
    assert out.exists() and "wrote" in result.stdout
    assert mlp_copy.read_bytes() == before  # the input model is never modified
    compiled = onnx.load(out)
    x = np.load(f"{MODELS}/../tests/data/mlp_tabular.npz")["x"]
    rel = run(compiled, {"input": x, "target": np.zeros(len(x), np.int64)})["relevance_input"]
    assert rel.shape == x.shape and np.isfinite(rel).all()
    assert sorted(os.listdir(mlp_copy.parent)) == ["mlp.lrp.onnx", "mlp.onnx"]  # no temporary file left


def test_rule_overrides_and_output_option(mlp_copy, tmp_path):
    out = tmp_path / "custom.onnx"
    result = cli("compile", str(mlp_copy), "-o", str(out), "--rule", "Gemm=z-plus", "--output", "logits")
    assert result.returncode == 0, result.stderr
    meta = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert meta["onnx_lrp.plan"].count("z-plus") == 3


@pytest.mark.parametrize("args, expected", [
    (["compile", "{missing}"], "file not found"),
    (["compile", "{model}", "-o", "{model}"], "never overwrites its input"),
    (["compile", "{model}", "-o", "{tmp}/no/such/folder/out.onnx"], "does not exist"),
    (["compile", "{model}", "--rule", "nothing*=epsilon"], "matches no linear node"),
    (["compile", "{model}", "--rule", "Gemm=banana"], "unknown rule 'banana'"),
    (["compile", "{model}", "--rule", "Gemm=alpha-beta:alpha=3,beta=1"], "alpha - beta must equal 1"),
    (["compile", "{model}", "--epsilon", "-1", "--composite", "epsilon"], "epsilon must be positive"),
    (["compile", "{model}", "--output", "nope"], "matches no model output"),
    (["compile", "{garbage}"], "cannot be parsed as an ONNX model"),
    (["compile", "{empty}"], "file is empty"),
])
def test_failures_are_one_clean_message(mlp_copy, tmp_path, args, expected):
    (tmp_path / "garbage.onnx").write_bytes(np.random.default_rng(0).bytes(200))  # fails to parse
    (tmp_path / "empty.onnx").write_bytes(b"")
    fill = dict(model=mlp_copy, missing=tmp_path / "missing.onnx", tmp=tmp_path, garbage=tmp_path / "garbage.onnx",
                empty=tmp_path / "empty.onnx")
    before = set(os.listdir(tmp_path))
    result = cli(*[a.format(**fill) for a in args])
    assert result.returncode == 2
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("onnx-lrp: error:")
    assert set(os.listdir(tmp_path)) == before  # nothing written


def test_console_script_is_installed():
    exe = shutil.which("onnx-lrp")
    assert exe, "pip install . should put the onnx-lrp command on PATH"
    result = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "onnx-lrp" in result.stdout
