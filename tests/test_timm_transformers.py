"""timm transformers and a LayerNorm CNN as torch.onnx (TorchScript, opset 17) writes them, weight-free skeletons in
models/transformers/timm/ (tools/export_timm_transformers.py): ViT-tiny (patch 8, depth 2, torch's fused attention), DeiT-tiny
(patch 16, depth 2, timm's explicit softmax(q·k^T)·v), MobileViT-xxs (unfold/fold as Reshape/Transpose chains, SiLU)
and ConvNeXt-atto (LayerNorm2d between Transposes, GELU, per-channel layer scale). With each transformer composite
each compiles, reproduces the original outputs, and its relevance is finite, of the input's shape and not all zero."""
import functools
import glob
import os

import numpy as np
import onnx
import pytest

import onnx_lrp
from conftest import MODELS, run
from zoo import WEIGHT_SEED, materialize

REAL = os.path.join(MODELS, "transformers", "timm")
FILES = sorted(os.path.basename(p) for family in ("vit", "deit", "mobilevit", "convnext")
               for p in glob.glob(os.path.join(REAL, f"timm_{family}_*.onnx")))
BATCH = 2
X = np.random.default_rng(1).uniform(-1, 1, size=(BATCH, 3, 64, 64)).astype(np.float32)


@functools.lru_cache(maxsize=None)
def original(name):
    return materialize(os.path.join(REAL, name), WEIGHT_SEED)


def test_the_skeletons_are_small_and_say_how_they_were_made():
    assert len(FILES) == 4
    for name in FILES:
        path = os.path.join(REAL, name)
        meta = {p.key: p.value for p in onnx.load(path).metadata_props}
        assert os.path.getsize(path) < 1 << 20 and meta["zoo.source"] == "timm" and meta["zoo.opset"] == "17"
        assert meta["zoo.input"] == "input=[N,3,64,64]" and meta["zoo.source"] == "timm"
        assert "LayerNormalization" in {n.op_type for n in original(name).graph.node}


@pytest.mark.parametrize("composite", ["attnlrp", "cp-lrp"])
@pytest.mark.parametrize("name", FILES)
def test_compiles_and_reproduces_the_original_outputs(name, composite):
    expected = run(original(name), {"input": X})
    compiled = onnx_lrp.compile(original(name), composite, seed="one-hot")
    out = run(compiled, {"input": X, "target": np.array([-1, 3], np.int64)})
    for output, value in expected.items():
        np.testing.assert_allclose(out[output], value, rtol=0, atol=1e-5 * np.abs(value).max())
    r = out["relevance_input"]
    assert r.shape == X.shape and r.dtype == np.float32
    assert np.all(np.isfinite(r)) and all(np.abs(r[i]).max() > 0 for i in range(BATCH))
