"""The transformer reference files (tools/make_reference_transformers.py): tiny seeded BERT (SDPA and eager attention),
GPT-2, Llama (grouped-query attention, RoPE) and torchvision ViT classifiers in models/transformers/, with LXT 2.1's
relevance (one-hot seed, top class) in tests/data/transformers/. These tests check the files, not onnx-lrp."""
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import DATA, MODELS, relative_error

COMPOSITES = {"bert_sdpa": ["attnlrp"], "bert_eager": ["attnlrp"], "gpt2": ["attnlrp", "cp-lrp"],
              "llama": ["attnlrp", "cp-lrp"], "vit": ["cp-lrp"]}  # the maps LXT 2.1 has
TEXT = ["bert_sdpa", "bert_eager", "gpt2", "llama"]


def load(name):
    path = os.path.join(MODELS, "transformers", f"{name}.onnx")
    with np.load(os.path.join(DATA, "transformers", f"{name}.npz")) as f:
        return path, dict(f)


@pytest.mark.parametrize("name", COMPOSITES)
def test_onnxruntime_reproduces_the_stored_logits_at_any_batch(name):
    path, data = load(name)
    model = onnx.load(path)
    onnx.checker.check_model(model)
    meta = {p.key: p.value for p in model.metadata_props}
    assert (meta["ref.lxt"], meta["ref.transformers"], model.opset_import[0].version) == ("2.1", "4.52.4", 17)
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: data[i.name] for i in session.get_inputs()}
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for batch in (slice(0, 4), slice(1, 2)):
        logits = session.run(None, {k: v[batch] for k, v in feeds.items()})[0]
        assert relative_error(logits, data["logits_f64"][batch]) < 1e-5
    assert (data["logits_f64"].argmax(1) == data["target"]).all() and len(set(data["target"])) > 1


@pytest.mark.parametrize("name", TEXT)
def test_text_inputs_end_in_masked_pads(name):
    _, data = load(name)
    ids, mask = data["input_ids"], data["attention_mask"]
    assert ids.shape == mask.shape == (4, 12) and ids.dtype == mask.dtype == np.int64
    assert ((ids == 0) == (mask == 0)).all() and (mask == 0).any()  # pad id 0 exactly where the mask is 0
    assert (np.diff(mask, axis=1) <= 0).all()  # trailing


@pytest.mark.parametrize("name", COMPOSITES)
def test_lxt_relevance_float32_matches_float64(name):
    _, data = load(name)
    shape = data["x"].shape if name == "vit" else data["input_ids"].shape  # tokens: [N, L]
    assert sorted(k for k in data if k.startswith("relevance_")) == sorted(
        f"relevance_{c}_{t}" for c in COMPOSITES[name] for t in ("f32", "f64"))
    for composite in COMPOSITES[name]:
        r64, r32 = data[f"relevance_{composite}_f64"], data[f"relevance_{composite}_f32"]
        assert r64.shape == r32.shape == shape and r64.dtype == np.float64 and r32.dtype == np.float32
        assert np.isfinite(r64).all() and np.isfinite(r32).all() and np.abs(r64).max() > 0
        assert relative_error(r32, r64) < 1e-4
        if name in TEXT:  # masked (BERT) or after the pooled token (causal): exactly no relevance
            assert (r64[data["attention_mask"] == 0] == 0).all()


def test_cp_lrp_on_llama_is_conservative():
    """Llama has no biases, no position embedding and no beta: with the attention and the gate constant, cp-lrp
    passes the whole one-hot seed down to the tokens (up to LXT's float32 RMSNorm)."""
    _, data = load("llama")
    np.testing.assert_allclose(data["relevance_cp-lrp_f64"].sum(1), 1.0, atol=1e-6)
