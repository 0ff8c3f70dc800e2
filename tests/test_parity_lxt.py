"""The transformer composites against LXT 2.1 on the exported BERT (SDPA and eager attention), GPT-2, Llama (grouped-
query attention, RoPE, RMSNorm) and torchvision ViT classifiers of models/transformers/ (tools/
make_reference_transformers.py; opset 17, dynamic batch): relevance equal to LXT's (one-hot seed) to
max(1e-4, 10 x LXT's own float32 error) of max|R| for every map LXT has; the forward unchanged at batch 4 and 1 from one
file; padding tokens exactly 0; cp-lrp conservative without biases, beta and position embeddings."""
import os

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import onnx_lrp
from conftest import DATA, MODELS, relative_error, run

MODELS_WITH_MAPS = {"bert_sdpa": ["attnlrp"], "bert_eager": ["attnlrp"], "gpt2": ["attnlrp", "cp-lrp"],
                    "llama": ["attnlrp", "cp-lrp"], "vit": ["cp-lrp"]}  # LXT 2.1's maps
CASES = [(name, composite) for name, maps in MODELS_WITH_MAPS.items() for composite in maps]
NO_LXT_MAP = [("bert_sdpa", "cp-lrp"), ("bert_eager", "cp-lrp"), ("vit", "attnlrp")]
TEXT = ["bert_sdpa", "bert_eager", "gpt2", "llama"]
_cache = {}


def path(name):
    return os.path.join(MODELS, "transformers", f"{name}.onnx")


def reference(name):
    with np.load(os.path.join(DATA, "transformers", f"{name}.npz")) as f:
        return dict(f)


def feeds(name, batch=slice(None)):
    ref = reference(name)
    return {k: ref[k][batch] for k in ("input_ids", "attention_mask", "x", "target") if k in ref}


def compiled(name, composite, model=None, key="as exported"):
    if (name, composite, key) not in _cache:
        _cache[(name, composite, key)] = onnx_lrp.compile(model or path(name), composite, seed="one-hot")
    return _cache[(name, composite, key)]


def relevance_of(out):
    return next(v for k, v in out.items() if k.startswith("relevance_"))


@pytest.mark.parametrize("name, composite", CASES)
def test_relevance_equals_lxt(name, composite):
    ref = reference(name)
    ours = relevance_of(run(compiled(name, composite), feeds(name)))
    expected = ref[f"relevance_{composite}_f64"]
    lxt_f32_error = relative_error(ref[f"relevance_{composite}_f32"], expected)
    assert ours.shape == expected.shape
    assert relative_error(ours, expected) <= max(1e-4, 10 * lxt_f32_error)


@pytest.mark.parametrize("name, composite", CASES + NO_LXT_MAP)
def test_outputs_unchanged_at_batch_4_and_1_and_padding_gets_zero(name, composite):
    model = compiled(name, composite)
    ref = reference(name)
    for batch in (slice(0, 4), slice(2, 3)):
        out = run(model, feeds(name, batch))
        assert relative_error(out["logits"], ref["logits_f64"][batch]) < 1e-5
        r = relevance_of(out)
        assert np.all(np.isfinite(r)) and np.abs(r).max() > 0
        if name in TEXT:
            assert np.all(r[ref["attention_mask"][batch] == 0] == 0)


_SHIFTS = ("bias", "position", "wpe", "token_type", "class_token", "pos_embedding")


def shift_free(name):
    """The model with every bias, LayerNorm beta, position / token-type embedding and class token zeroed."""
    model = onnx.load(path(name))
    for t in model.graph.initializer:
        if any(s in t.name for s in _SHIFTS) and t.data_type == onnx.TensorProto.FLOAT:
            t.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(t)), t.name))
    return model


@pytest.mark.parametrize("name", list(MODELS_WITH_MAPS))
def test_cp_lrp_is_conservative_without_shifts(name):
    out = run(compiled(name, "cp-lrp", shift_free(name), key="shift-free"), feeds(name))
    sums = relevance_of(out).reshape(len(out["logits"]), -1).sum(1)
    np.testing.assert_allclose(sums, 1.0, atol=1e-3)


def test_attnlrp_is_not_conservative_even_without_shifts():
    """The softmax rule is not conservative (attnlrp.md section 3): the test above could fail."""
    out = run(compiled("gpt2", "attnlrp", shift_free("gpt2"), key="shift-free"), feeds("gpt2"))
    sums = relevance_of(out).reshape(len(out["logits"]), -1).sum(1)
    assert np.abs(sums - 1).max() > 1e-2
