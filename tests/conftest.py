import os
import sys

import numpy as np
import onnxruntime as ort
import pytest

import onnx_lrp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
DATA = os.path.join(ROOT, "tests", "data")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def run(model, feeds):
    """Run a compiled ModelProto on the CPU; returns {output name: array}."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    assert session.get_providers() == ["CPUExecutionProvider"]
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


_cached = {}


def cached(key, make):
    """A session-wide cache that also remembers a failure, so a model that does not compile is tried once and the
    error re-raised in every test that needs it. Keys start with the calling module's own tag."""
    if key not in _cached:
        try:
            _cached[key] = (True, make())
        except Exception as exc:  # noqa: BLE001 - re-raised below
            _cached[key] = (False, exc)
    ok, value = _cached[key]
    if not ok:
        raise value
    return value


_compiled = {}


def compiled_once(path, composite, seed, **options):
    """onnx_lrp.compile, once per session for each (file, composite, seed): parity tests reuse the result."""
    key = (path, composite, seed)
    if key not in _compiled:
        _compiled[key] = onnx_lrp.compile(path, composite, seed=seed, **options)
    return _compiled[key]


def relative_error(ours, ref):
    """max|ours - ref| / max|ref|: the parity measure of the Zennit comparisons."""
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.fixture
def rng():
    return np.random.default_rng(0)
