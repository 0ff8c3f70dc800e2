"""The sentiment demo (tools/train_sentiment_demo.py, docs/sentiment_demo.md): a tiny BERT trained on a generated
review corpus, shipped as models/demo/sentiment_bert.onnx with its word-level vocabulary, explained with attnlrp.
No torch: sentences are encoded here with the shipped vocabulary ([CLS] words [SEP], then [PAD] = 0 up to 16)."""
import json
import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import MODELS, compiled_once, run

MODEL = os.path.join(MODELS, "demo", "sentiment_bert.onnx")
VOCAB = os.path.join(MODELS, "demo", "sentiment_vocab.json")

# The sentiment lexicon of the corpus generator (its POSITIVE / NEGATIVE adjectives and verbs).
POSITIVE = {"good", "great", "excellent", "wonderful", "amazing", "fantastic", "brilliant", "superb", "enjoyable",
            "delightful", "lovely", "perfect", "charming", "beautiful", "impressive", "outstanding",
            "loved", "enjoyed", "liked", "adored", "appreciated", "like", "love", "enjoy", "recommend"}
NEGATIVE = {"bad", "terrible", "awful", "horrible", "boring", "dull", "poor", "disappointing", "weak", "mediocre",
            "annoying", "ugly", "painful", "bland", "dreadful", "useless",
            "hated", "disliked", "despised", "loathed", "regretted", "hate", "dislike"}

# (sentence, expected class: 1 positive, 0 negative, clear: no negation, so the top token must be a lexicon word)
SENTENCES = [
    ("the movie was really great", 1, True),
    ("this phone is extremely disappointing for the price", 0, True),
    ("honestly i loved this book", 1, True),
    ("what a boring film", 0, True),
    ("the pizza was awful", 0, True),  # "pizza" is not in the vocabulary: [UNK]
    ("to be honest i think it was an absolutely wonderful hotel in my opinion", 1, True),  # 14 words: no pad
    ("the acting was not good", 0, False),
    ("the ending was not bad", 1, False),
    ("i did not enjoy the restaurant", 0, False),
]


def vocabulary():
    with open(VOCAB) as f:
        return json.load(f)


def encode(texts):
    meta = vocabulary()
    index = {w: i for i, w in enumerate(meta["tokens"])}
    ids = np.zeros((len(texts), meta["max_length"]), np.int64)
    for row, text in enumerate(texts):
        seq = [index[meta["cls"]]] + [index.get(w, index[meta["unk"]]) for w in text.split()] + [index[meta["sep"]]]
        ids[row, :len(seq)] = seq
    return ids, (ids != 0).astype(np.int64)


@pytest.fixture(scope="module")
def explained():
    ids, mask = encode([s for s, _, _ in SENTENCES])
    compiled = compiled_once(MODEL, "attnlrp", "logit")
    out = run(compiled, {"input_ids": ids, "attention_mask": mask, "target": np.full(len(ids), -1, np.int64)})
    return ids, mask, out


def test_shipped_files():
    meta = vocabulary()
    assert meta["tokens"][:4] == ["[PAD]", "[CLS]", "[SEP]", "[UNK]"] and meta["max_length"] == 16
    assert len(set(meta["tokens"])) == len(meta["tokens"])
    assert (POSITIVE | NEGATIVE) <= set(meta["tokens"])
    assert os.path.getsize(MODEL) < 1 << 20
    model = onnx.load(MODEL)
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    props = {p.key: p.value for p in model.metadata_props}
    assert float(props["demo.test_accuracy"]) >= 0.95
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert inputs == {"input_ids": ["N", 16], "attention_mask": ["N", 16]}
    assert [o.name for o in model.graph.output] == ["logits"]


def test_attnlrp_compiles_and_keeps_the_logits(explained):
    ids, mask, out = explained
    plain = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
    logits = plain.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    assert logits.shape == (len(SENTENCES), 2)
    np.testing.assert_allclose(out["logits"], logits, rtol=1e-5, atol=1e-5)
    R = out["relevance_input_ids"]
    assert R.shape == ids.shape and R.dtype == np.float32 and np.isfinite(R).all()


def test_predicts_the_expected_classes(explained):
    _, _, out = explained
    assert out["logits"].argmax(1).tolist() == [label for _, label, _ in SENTENCES]


def test_pad_tokens_get_exactly_zero_relevance(explained):
    ids, mask, out = explained
    R = out["relevance_input_ids"]
    assert (mask == 0).any() and (mask == 0).all(1).sum() == 0 and (mask[5] == 1).all()  # row 5: no padding
    assert (R[mask == 0] == 0).all()
    assert (R[mask == 1] != 0).all()


@pytest.mark.parametrize("k", [k for k, (_, _, clear) in enumerate(SENTENCES) if clear])
def test_top_token_is_a_sentiment_word_of_the_predicted_polarity(explained, k):
    ids, _, out = explained
    text, label, _ = SENTENCES[k]
    R = out["relevance_input_ids"][k]
    tokens = ["[CLS]"] + text.split() + ["[SEP]"]
    top = tokens[int(np.argmax(R[:len(tokens)]))]
    assert top in (POSITIVE if label == 1 else NEGATIVE), (text, top)
    assert R.max() > 0.5 * np.abs(R).sum()  # the sentiment word carries most of the relevance


def test_relevance_does_not_depend_on_the_batch(explained):
    ids, mask, out = explained
    compiled = compiled_once(MODEL, "attnlrp", "logit")
    for k in (0, 6):
        one = run(compiled, {"input_ids": ids[k:k + 1], "attention_mask": mask[k:k + 1],
                             "target": np.array([-1], np.int64)})
        np.testing.assert_allclose(one["relevance_input_ids"][0], out["relevance_input_ids"][k], rtol=1e-4,
                                   atol=1e-5)
