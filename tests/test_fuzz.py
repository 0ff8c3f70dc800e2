"""Fuzzing: mutated bytes of valid models either compile or fail with OnnxLrpError; never another exception,
never a traceback on the command line, never a hang (every run is bounded by an alarm / a subprocess timeout)."""
import os
import signal
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

import onnx_lrp
from conftest import MODELS

CASES_PER_MODEL = 150
SECONDS_PER_CASE = 60


def mutate(data, rng):
    data = bytearray(data)
    kind = rng.integers(5)
    if kind == 0:  # flip a few bytes
        for i in rng.integers(len(data), size=rng.integers(1, 8)):
            data[i] = rng.integers(256)
    elif kind == 1:  # truncate
        data = data[: rng.integers(1, len(data))]
    elif kind == 2:  # delete a span
        i = rng.integers(len(data))
        del data[i:i + rng.integers(1, 64)]
    elif kind == 3:  # duplicate a span
        i = rng.integers(len(data))
        data[i:i] = data[i:i + rng.integers(1, 64)]
    else:  # insert random bytes
        i = rng.integers(len(data))
        data[i:i] = rng.bytes(int(rng.integers(1, 32)))
    return bytes(data)


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang()


@pytest.mark.parametrize("name", ["mlp_tabular", "conv1d_sequence", "bn_avgpool_cnn"])
def test_mutated_models_compile_or_fail_cleanly(name, tmp_path):
    original = open(f"{MODELS}/{name}.onnx", "rb").read()
    rng = np.random.default_rng(sum(map(ord, name)))
    outcomes = Counter()
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(CASES_PER_MODEL):
            path = tmp_path / f"mutant_{case}.onnx"
            path.write_bytes(mutate(original, rng))
            signal.alarm(SECONDS_PER_CASE)
            try:
                onnx_lrp.compile(str(path), low=-3, high=3, verify=True)
                outcomes["compiled"] += 1
            except onnx_lrp.OnnxLrpError as exc:
                assert "internal error" not in str(exc), f"case {case}: {exc}"
                outcomes["refused"] += 1
            except Hang:
                pytest.fail(f"case {case} ran over {SECONDS_PER_CASE} s")
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    print(name, dict(outcomes))
    assert outcomes["refused"] > 0 and sum(outcomes.values()) == CASES_PER_MODEL


def test_mutated_models_on_the_command_line(tmp_path):
    original = open(f"{MODELS}/conv1d_sequence.onnx", "rb").read()
    rng = np.random.default_rng(7)
    for case in range(12):
        path = tmp_path / f"mutant_{case}.onnx"
        path.write_bytes(mutate(original, rng))
        result = subprocess.run([sys.executable, "-m", "onnx_lrp.cli", "compile", str(path)], capture_output=True,
                                text=True, timeout=120)
        assert result.returncode in (0, 2), result.stderr
        assert "Traceback" not in result.stderr
        if result.returncode == 2:
            assert result.stderr.startswith("onnx-lrp: error: ") and str(path) in result.stderr
            assert not os.path.exists(str(path)[:-5] + ".lrp.onnx")
